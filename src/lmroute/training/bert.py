"""The ``bert`` router's training loop: battles in, a fine-tuned outcome classifier out.

1. Battles become one soft target per distinct prompt (:func:`~lmroute.training.labels.outcome_targets`).
2. The frozen part of the encoder runs once per prompt; its outputs are cached
   (:mod:`lmroute.training.prefix_cache`), so epochs and later fits in the process reuse them.
3. The top layers and the head train with AdamW on length-grouped batches (linear warm-up, then
   linear decay), soft-label cross-entropy (three-way head) or binary cross-entropy (binary head).

Randomness (head initialisation, dropout, sampling, batch order) comes from ``config.seed`` and
does not touch the caller's global RNG state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lmroute.data.battles import Battle
from lmroute.routers._base_models import BaseModel, resolve_encoder
from lmroute.routers._batching import Tokens, use_bfloat16
from lmroute.routers._bert_torch import Classifier, build_classifier, pad
from lmroute.training._loop import (
    epoch_batches,
    fit_summary,
    frozen_features,
    pad_states,
    progress_bar,
    warmup_then_decay,
)
from lmroute.training.labels import outcome_targets, score_targets
from lmroute.training.prefix_cache import PrefixCache, shared_cache


@dataclass
class TrainResult:
    net: Classifier
    tokens: Tokens
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
    """Fine-tune a classifier as ``config`` (a ``BertConfig``) says, on ``battles``."""
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
    if config.head == "binary":
        target = torch.tensor(score_targets(probs, tie_share=config.tie_share), dtype=torch.float32)
    else:
        target = torch.tensor(probs, dtype=torch.float32)

    base = resolve_encoder(config.encoder)
    tokens = Tokens(base.path / "tokenizer.json", config.max_length)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        net = build_classifier(
            base,
            trainable_layers=config.trainable_layers,
            outputs=3 if config.head == "three_way" else 1,
            dropout=config.dropout,
        )
        cache = prefix_cache if prefix_cache is not None else shared_cache()
        namespace = f"bert:{base.sha256}:{net.frozen}:{config.max_length}"
        bf16 = use_bfloat16(config.precision)
        namespace += ":bf16" if bf16 else ""
        feature_start = time.perf_counter()
        # The frozen layers run in the scoring precision; training always runs in float32 (top
        # layers trained under bfloat16 autocast measured clearly worse).
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            features = cache.lookup(
                namespace,
                prompts,
                lambda ps: _frozen_features(net, tokens, ps, config.score_batch_size, progress=progress),
            )
        feature_seconds = time.perf_counter() - feature_start
        train_start = time.perf_counter()
        steps = _optimise(net, features, target, config, rng, progress=progress)
        train_seconds = time.perf_counter() - train_start
    net.eval()
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
    return TrainResult(net, tokens, base, summary)


def _frozen_features(
    net: Classifier, tokens: Tokens, prompts: list[str], batch_size: int, *, progress: bool
) -> list[np.ndarray]:
    net.eval()
    return frozen_features(
        tokens(prompts),
        batch_size,
        lambda batch: net.prefix(*pad(batch, tokens.pad_id)),
        progress="bert frozen layers" if progress else None,
    )


def _optimise(
    net: Classifier,
    features: list[np.ndarray],
    target: torch.Tensor,
    config: Any,
    rng: np.random.Generator,
    *,
    progress: bool,
) -> int:
    pooled = features[0].ndim == 1
    head = list(net.head.parameters())
    body = [p for layer in net.layers[net.frozen :] for p in layer.parameters()]
    groups = [{"params": head, "lr": config.head_learning_rate}]
    if body:
        groups.append({"params": body, "lr": config.learning_rate})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    total = math.ceil(len(features) / config.batch_size) * config.epochs
    scheduler = warmup_then_decay(optimizer, total=total, warmup=config.warmup)
    lengths = [len(f) for f in features]
    bar = progress_bar(total, progress, "bert")
    net.train()
    for _ in range(config.epochs):
        for batch in epoch_batches(lengths, config.batch_size, rng, by_length=not pooled):
            if pooled:
                logits = net.suffix(torch.from_numpy(np.stack([features[i] for i in batch])).float(), None)
            else:
                hidden, batch_lengths = pad_states([features[i] for i in batch])
                mask = torch.arange(hidden.shape[1])[None, :] < batch_lengths[:, None]
                logits = net.suffix(hidden, mask)
            y = target[batch]
            if y.dim() == 1:
                loss = F.binary_cross_entropy_with_logits(logits[:, 0], y)
            else:
                loss = -(y * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head + body, 1.0)
            optimizer.step()
            scheduler.step()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}")
    if bar is not None:
        bar.close()
    return total
