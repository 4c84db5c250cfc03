"""The ``bert`` router's training loop: battles in, a fine-tuned outcome classifier out.

1. Battles become one soft target per distinct prompt (:func:`~lmroute.training.labels.outcome_targets`).
2. The frozen part of the encoder runs once per prompt; its outputs are cached
   (:mod:`lmroute.training.prefix_cache`), so epochs and later fits in the process reuse them.
3. The top layers and the head train with AdamW on length-grouped batches (linear warm-up, then
   linear decay), soft-label cross-entropy (three-way head) or binary cross-entropy (binary head).

Randomness (head initialisation, dropout, sampling, batch order) comes from ``params.seed`` and
does not touch the caller's global RNG state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lmroute.data.battles import Battle
from lmroute.networks.base_models import resolve_encoder
from lmroute.networks.encoder_classifier import Classifier, ClassifierSpec, build_classifier
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
from lmroute.training.labels import score_targets
from lmroute.training.prefix_cache import PrefixCache


@dataclass(frozen=True, kw_only=True)
class BertParams(ClassifierParams):
    """How to fine-tune a ``bert`` classifier: the network to build, and the loop's settings."""

    network: ClassifierSpec


def train_bert(
    params: BertParams,
    battles: Sequence[Battle],
    *,
    prefix_cache: PrefixCache | None = None,
    progress: bool = False,
) -> TrainedClassifier[Classifier]:
    """Fine-tune a classifier as ``params`` say, on ``battles``."""
    spec = params.network

    def optimise(
        net: Classifier, features: list[np.ndarray], probs: np.ndarray, rng: np.random.Generator
    ) -> int:
        # a binary head learns the score itself, a three-way head the outcome distribution
        target = score_targets(probs, tie_share=params.tie_share) if spec.outputs == 1 else probs
        return _optimise(
            net, features, torch.tensor(target, dtype=torch.float32), params, rng, progress=progress
        )

    return fit_classifier(
        params,
        battles,
        kind="bert",
        resolve=lambda: resolve_encoder(spec.encoder),
        build=lambda base: build_classifier(base, spec),
        layout=str(spec.max_length),
        optimise=optimise,
        trainable_layers=spec.trainable_layers,
        prefix_cache=prefix_cache,
        progress=progress,
    )


def _optimise(
    net: Classifier,
    features: list[np.ndarray],
    target: torch.Tensor,
    params: BertParams,
    rng: np.random.Generator,
    *,
    progress: bool,
) -> int:
    pooled = features[0].ndim == 1
    head = list(net.head.parameters())
    body = [p for layer in net.layers[net.frozen :] for p in layer.parameters()]
    groups = [{"params": head, "lr": params.head_learning_rate}]
    if body:
        groups.append({"params": body, "lr": params.learning_rate})
    optimizer = torch.optim.AdamW(groups, weight_decay=params.weight_decay)
    total = math.ceil(len(features) / params.batch_size) * params.epochs
    scheduler = warmup_then_decay(optimizer, total=total, warmup=params.warmup)
    lengths = [len(f) for f in features]
    bar = progress_bar(total, progress, "bert")
    net.train()
    for _ in range(params.epochs):
        for batch in epoch_batches(lengths, params.batch_size, rng, by_length=not pooled):
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
            optimizer_step(loss, optimizer, scheduler, head + body, bar)
    if bar is not None:
        bar.close()
    return total
