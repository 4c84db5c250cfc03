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
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lmroute.data.battles import Battle
from lmroute.networks.base_models import resolve_encoder
from lmroute.networks.encoder_classifier import Classifier, ClassifierSpec, build_classifier
from lmroute.networks.precision import uses_bfloat16
from lmroute.training.classifier import (
    ClassifierParams,
    TrainedClassifier,
    epoch_batches,
    fit_summary,
    frozen_features,
    optimizer_step,
    pad_states,
    progress_bar,
    training_set,
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
    started = time.perf_counter()
    rng = np.random.default_rng(params.seed)
    data = training_set(battles, params, rng)
    if params.network.outputs == 1:
        target = torch.tensor(
            score_targets(data.probabilities, tie_share=params.tie_share), dtype=torch.float32
        )
    else:
        target = torch.tensor(data.probabilities, dtype=torch.float32)

    base = resolve_encoder(params.network.encoder)
    with torch.random.fork_rng():
        torch.manual_seed(params.seed)
        net = build_classifier(base, params.network)
        bf16 = uses_bfloat16(params.precision)
        feature_start = time.perf_counter()
        # The frozen layers run in the scoring precision; training always runs in float32 (top
        # layers trained under bfloat16 autocast measured clearly worse).
        features = frozen_features(
            net,
            data.prompts,
            namespace=f"bert:{base.sha256}:{net.frozen}:{params.network.max_length}"
            + (":bf16" if bf16 else ""),
            cache=prefix_cache,
            bfloat16=bf16,
            batch_size=params.score_batch_size,
            progress="bert frozen layers" if progress else None,
        )
        feature_seconds = time.perf_counter() - feature_start
        train_start = time.perf_counter()
        steps = _optimise(net, features, target, params, rng, progress=progress)
        train_seconds = time.perf_counter() - train_start
    net.eval()
    summary = fit_summary(
        data,
        trainable_layers=params.network.trainable_layers,
        epochs=params.epochs,
        bf16=bf16,
        steps=steps,
        feature_seconds=feature_seconds,
        train_seconds=train_seconds,
        started=started,
    )
    return TrainedClassifier(net, base, summary)


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
