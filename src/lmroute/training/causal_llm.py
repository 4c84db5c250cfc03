"""The ``causal_llm`` router's training loop: battles in, label-reading adapters out.

1. Battles become one soft target per distinct prompt (:func:`~lmroute.training.labels.outcome_targets`).
2. Each prompt, inside the instruction template, runs once through the frozen lower layers; the
   states are cached (:mod:`lmroute.training.prefix_cache`) for every epoch and later fit.
3. LoRA adapters on the top layers and the label rows train with AdamW (linear warm-up and
   decay) on the language-model loss of the next token, the target being the prompt's outcome
   distribution over the three label tokens: the rest of the vocabulary is pushed down, so a
   trained model's answer parses.

Randomness comes from ``params.seed`` and does not touch the caller's global RNG state.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lmroute.data.battles import Battle
from lmroute.networks.base_models import resolve_causal_lm
from lmroute.networks.label_reader import LabelReader, ReaderSpec, build_reader
from lmroute.training.classifier import (
    ClassifierParams,
    TrainedClassifier,
    epoch_batches,
    fit_classifier,
    optimizer_step,
    pad_states,
    progress_bar,
    warmup_then_decay,
)
from lmroute.training.prefix_cache import PrefixCache


@dataclass(frozen=True, kw_only=True)
class CausalLLMParams(ClassifierParams):
    """How to fine-tune a ``causal_llm`` label reader: the network to build, and the loop's settings."""

    network: ReaderSpec
    #: Epochs of the label rows alone, on the final states, before the adapters train (unused
    #: when no layer has adapters: the rows then train ``epochs``).
    probe_epochs: int


def train_causal_llm(
    params: CausalLLMParams,
    battles: Sequence[Battle],
    *,
    prefix_cache: PrefixCache | None = None,
    progress: bool = False,
) -> TrainedClassifier[LabelReader]:
    """Fine-tune adapters as ``params`` say, on ``battles`` (``epochs=0``: train nothing)."""
    spec = params.network
    layout = f"{spec.template}\0{spec.instruction}\0{spec.max_prompt_tokens}"

    def optimise(
        reader: LabelReader, features: list[np.ndarray], probs: np.ndarray, rng: np.random.Generator
    ) -> int:
        target = torch.tensor(probs, dtype=torch.float32)
        return _optimise(reader, features, target, params, rng, progress=progress)

    return fit_classifier(
        params,
        battles,
        kind="causal_llm",
        resolve=lambda: resolve_causal_lm(spec.base_model),
        build=lambda base: build_reader(base, spec),
        layout=hashlib.sha256(layout.encode()).hexdigest(),
        optimise=optimise,
        trainable_layers=spec.trainable_layers,
        prefix_cache=prefix_cache,
        progress=progress,
    )


def _optimise(
    reader: LabelReader,
    features: list[np.ndarray],
    target: torch.Tensor,
    params: CausalLLMParams,
    rng: np.random.Generator,
    *,
    progress: bool,
) -> int:
    """Train the label rows alone on the final states (computed once), then, when there are
    adapters, the adapters and rows together: linear probing before fine-tuning, so the adapters
    start from a head that already reads the labels (with few steps they otherwise only add noise)."""
    if features[0].ndim == 1:
        last = torch.from_numpy(np.stack(features)).float()
        return _train_rows(reader, last, target, params, rng, epochs=params.epochs, progress=progress)
    batches = np.array_split(np.arange(len(features)), math.ceil(len(features) / params.batch_size))
    with torch.no_grad():
        last = torch.cat([reader.final_state(*pad_states([features[i] for i in b])).float() for b in batches])
    steps = _train_rows(reader, last, target, params, rng, epochs=params.probe_epochs, progress=progress)
    return steps + _train_jointly(reader, features, target, params, rng, progress=progress)


def _train_rows(
    reader: LabelReader,
    last: torch.Tensor,
    target: torch.Tensor,
    params: CausalLLMParams,
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
    optimizer = torch.optim.AdamW(head, lr=params.head_learning_rate, weight_decay=params.weight_decay)
    batch_size = max(params.batch_size, 128)  # a linear head on fixed features: large batches are fine
    total = math.ceil(len(last) / batch_size) * epochs
    scheduler = warmup_then_decay(optimizer, total=total, warmup=params.warmup)
    bar = progress_bar(total, progress, "causal_llm label rows")
    for _ in range(epochs):
        for batch in epoch_batches([1] * len(last), batch_size, rng, by_length=False):
            labels = reader.label_logits(last[batch])
            logp = labels - torch.logaddexp(torch.logsumexp(labels, dim=1), others[batch])[:, None]
            optimizer_step(-(target[batch] * logp).sum(dim=1).mean(), optimizer, scheduler, head, bar)
    if bar is not None:
        bar.close()
    return total


def _train_jointly(
    reader: LabelReader,
    features: list[np.ndarray],
    target: torch.Tensor,
    params: CausalLLMParams,
    rng: np.random.Generator,
    *,
    progress: bool,
) -> int:
    head, adapters = reader.trainable_parameters()
    optimizer = torch.optim.AdamW(head + adapters, lr=params.learning_rate, weight_decay=params.weight_decay)
    total = math.ceil(len(features) / params.batch_size) * params.epochs
    scheduler = warmup_then_decay(optimizer, total=total, warmup=params.warmup)
    lengths = [len(f) for f in features]
    bar = progress_bar(total, progress, "causal_llm adapters")
    reader.train()
    for _ in range(params.epochs):
        for batch in epoch_batches(lengths, params.batch_size, rng, by_length=True):
            hidden, batch_lengths = pad_states([features[i] for i in batch])
            logp = torch.log_softmax(reader.suffix(hidden, batch_lengths), dim=1)[:, reader.label_ids]
            optimizer_step(
                -(target[batch] * logp).sum(dim=1).mean(), optimizer, scheduler, head + adapters, bar
            )
    reader.eval()
    if bar is not None:
        bar.close()
    return total
