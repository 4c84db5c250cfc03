"""The ``causal_llm`` router's training loop: battles in, label-reading adapters out.

1. Battles become one soft target per distinct prompt (:func:`~lmroute.training.labels.outcome_targets`).
2. Each prompt, inside the instruction template, runs once through the frozen lower layers; the
   states are cached (:mod:`lmroute.training.prefix_cache`) for every epoch and later fit.
3. LoRA adapters on the top layers and the label rows train with AdamW (linear warm-up and
   decay) on the language-model loss of the next token, the target being the prompt's outcome
   distribution over the three label tokens: the rest of the vocabulary is pushed down, so a
   trained model's answer parses.

Randomness comes from ``config.seed`` and does not touch the caller's global RNG state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lmroute.data.battles import Battle
from lmroute.routers._base_models import BaseModel, resolve_causal_lm
from lmroute.routers._batching import use_bfloat16
from lmroute.routers._causal_torch import LabelReader, Template, build_reader, pad_right
from lmroute.routers.causal_llm import make_template
from lmroute.training._loop import (
    epoch_batches,
    fit_summary,
    frozen_features,
    pad_states,
    progress_bar,
    warmup_then_decay,
)
from lmroute.training.labels import outcome_targets
from lmroute.training.prefix_cache import PrefixCache, shared_cache


@dataclass
class TrainResult:
    reader: LabelReader
    template: Template
    base: BaseModel
    #: JSON-ready facts about the fit, for the checkpoint's metadata.
    summary: dict[str, Any]


def train(
    config: Any,
    battles: Sequence[Battle],
    *,
    prefix_cache: PrefixCache | None = None,
    progress: bool = False,
) -> TrainResult:
    """Fine-tune adapters as ``config`` (a ``CausalLLMConfig``) says, on ``battles``."""
    import hashlib

    started = time.perf_counter()
    targets = outcome_targets(
        battles,
        strong_model=config.strong_model,
        weak_model=config.weak_model,
        min_rating_gap=config.min_rating_gap,
    )
    prompts, probs = targets.prompts, targets.probabilities()
    rng = np.random.default_rng(config.seed)
    if config.max_train_prompts is not None and len(prompts) > config.max_train_prompts:
        keep = np.sort(rng.choice(len(prompts), size=config.max_train_prompts, replace=False))
        prompts, probs = [prompts[i] for i in keep], probs[keep]

    base = resolve_causal_lm(config.base_model)
    template = make_template(config, base)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        reader = build_reader(
            base,
            template.label_ids,
            num_layers=config.num_layers,
            trainable_layers=config.trainable_layers,
            rank=config.lora_rank,
            alpha=config.lora_alpha,
        )
        feature_seconds = train_seconds = 0.0
        steps = 0
        bf16 = use_bfloat16(config.precision)
        if config.epochs > 0:
            cache = prefix_cache if prefix_cache is not None else shared_cache()
            layout = f"{config.template}\0{config.instruction}\0{config.max_prompt_tokens}\0{bf16}"
            namespace = (
                f"causal_llm:{base.sha256}:{reader.frozen}:{hashlib.sha256(layout.encode()).hexdigest()}"
            )
            feature_start = time.perf_counter()
            # The frozen layers run in the scoring precision; training always runs in float32.
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                features = cache.lookup(
                    namespace,
                    prompts,
                    lambda ps: _frozen_features(
                        reader, template, ps, config.score_batch_size, progress=progress
                    ),
                )
            feature_seconds = time.perf_counter() - feature_start
            train_start = time.perf_counter()
            target = torch.tensor(probs, dtype=torch.float32)
            steps = _optimise(reader, features, target, config, rng, progress=progress)
            train_seconds = time.perf_counter() - train_start
    reader.eval()
    summary = fit_summary(
        targets,
        config,
        prompts=len(prompts),
        bf16=bf16,
        steps=steps,
        feature_seconds=feature_seconds,
        train_seconds=train_seconds,
        started=started,
    )
    return TrainResult(reader, template, base, summary)


def _frozen_features(
    reader: LabelReader, template: Template, prompts: list[str], batch_size: int, *, progress: bool
) -> list[np.ndarray]:
    reader.eval()
    return frozen_features(
        template(prompts),
        batch_size,
        lambda batch: reader.prefix(*pad_right(batch, template.pad_id)),
        progress="causal_llm frozen layers" if progress else None,
    )


def _optimise(
    reader: LabelReader,
    features: list[np.ndarray],
    target: torch.Tensor,
    config: Any,
    rng: np.random.Generator,
    *,
    progress: bool,
) -> int:
    """Train the label rows alone on the final states (computed once), then, when there are
    adapters, the adapters and rows together: linear probing before fine-tuning, so the adapters
    start from a head that already reads the labels (with few steps they otherwise only add noise)."""
    if features[0].ndim == 1:
        last = torch.from_numpy(np.stack(features)).float()
        return _train_rows(reader, last, target, config, rng, epochs=config.epochs, progress=progress)
    batches = np.array_split(np.arange(len(features)), math.ceil(len(features) / config.batch_size))
    with torch.no_grad():
        last = torch.cat([reader.final_state(*pad_states([features[i] for i in b])).float() for b in batches])
    steps = _train_rows(reader, last, target, config, rng, epochs=config.probe_epochs, progress=progress)
    return steps + _train_jointly(reader, features, target, config, rng, progress=progress)


def _train_rows(
    reader: LabelReader,
    last: torch.Tensor,
    target: torch.Tensor,
    config: Any,
    rng: np.random.Generator,
    *,
    epochs: int,
    progress: bool,
) -> int:
    """Label rows only: the rest of the vocabulary's normaliser is fixed, so it is computed once."""
    if epochs == 0:
        return 0
    others = torch.cat([reader.other_logsumexp(chunk) for chunk in last.split(1024)])
    head, _ = reader.trainable_parameters()
    optimizer = torch.optim.AdamW(head, lr=config.head_learning_rate, weight_decay=config.weight_decay)
    batch_size = max(config.batch_size, 128)  # a linear head on fixed features: large batches are fine
    total = math.ceil(len(last) / batch_size) * epochs
    scheduler = warmup_then_decay(optimizer, total=total, warmup=config.warmup)
    bar = progress_bar(total, progress, "causal_llm label rows")
    for _ in range(epochs):
        for batch in epoch_batches([1] * len(last), batch_size, rng, by_length=False):
            labels = reader.label_logits(last[batch])
            logp = labels - torch.logaddexp(torch.logsumexp(labels, dim=1), others[batch])[:, None]
            _step(-(target[batch] * logp).sum(dim=1).mean(), optimizer, scheduler, head, bar)
    if bar is not None:
        bar.close()
    return total


def _train_jointly(
    reader: LabelReader,
    features: list[np.ndarray],
    target: torch.Tensor,
    config: Any,
    rng: np.random.Generator,
    *,
    progress: bool,
) -> int:
    head, adapters = reader.trainable_parameters()
    optimizer = torch.optim.AdamW(head + adapters, lr=config.learning_rate, weight_decay=config.weight_decay)
    total = math.ceil(len(features) / config.batch_size) * config.epochs
    scheduler = warmup_then_decay(optimizer, total=total, warmup=config.warmup)
    lengths = [len(f) for f in features]
    bar = progress_bar(total, progress, "causal_llm adapters")
    reader.train()
    for _ in range(config.epochs):
        for batch in epoch_batches(lengths, config.batch_size, rng, by_length=True):
            hidden, batch_lengths = pad_states([features[i] for i in batch])
            logp = torch.log_softmax(reader.suffix(hidden, batch_lengths), dim=1)[:, reader.label_ids]
            _step(-(target[batch] * logp).sum(dim=1).mean(), optimizer, scheduler, head + adapters, bar)
    reader.eval()
    if bar is not None:
        bar.close()
    return total


def _step(loss: torch.Tensor, optimizer, scheduler, params: list[torch.nn.Parameter], bar) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    scheduler.step()
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
