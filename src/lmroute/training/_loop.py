"""Pieces shared by the classifier routers' training loops (torch is imported here)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from lmroute.routers._batching import length_batches


def epoch_batches(
    lengths: list[int], batch_size: int, rng: np.random.Generator, *, by_length: bool
) -> Iterator[torch.Tensor]:
    """One epoch of shuffled index batches; with ``by_length``, batches of similar lengths (sorted
    within windows of 50 batches), so little compute goes to padding."""
    order = rng.permutation(len(lengths))
    if by_length:
        window = 50 * batch_size
        order = np.concatenate(
            [
                chunk[np.argsort([-lengths[i] for i in chunk], kind="stable")]
                for chunk in np.array_split(order, max(1, math.ceil(len(order) / window)))
            ]
        )
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for k in rng.permutation(len(batches)):
        yield torch.from_numpy(batches[k])


def warmup_then_decay(optimizer: torch.optim.Optimizer, *, total: int, warmup: float):
    """Learning rates rising linearly over the first ``warmup`` share of ``total`` steps, then
    falling linearly to zero."""
    rise = int(warmup * total)

    def factor(step: int) -> float:
        if step < rise:
            return (step + 1) / rise
        return max(0.0, (total - step) / max(1, total - rise))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def pad_states(states: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached per-prompt states ``(length_i, hidden)`` as a right-padded fp32 batch and lengths."""
    width = max(len(s) for s in states)
    hidden = torch.zeros((len(states), width, states[0].shape[1]), dtype=torch.float32)
    for i, s in enumerate(states):
        hidden[i, : len(s)] = torch.from_numpy(s)
    return hidden, torch.tensor([len(s) for s in states], dtype=torch.long)


def progress_bar(total: int, enabled: bool, desc: str, unit: str = "step"):
    """A tqdm bar over training steps (or other units), or None."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit)


@torch.inference_mode()
def frozen_features(
    ids: list[list[int]],
    batch_size: int,
    prefix: Callable[[list[list[int]]], torch.Tensor],
    *,
    progress: str | None = None,
) -> list[np.ndarray]:
    """Per prompt, the frozen layers' fp16 output: its token states ``(length, hidden)``, or one
    vector when ``prefix`` (a padded batch of token ids -> states) returns one per prompt.
    ``progress``: the label of a bar over prompts (this pass can be the longest part of a fit)."""
    out: list[np.ndarray | None] = [None] * len(ids)
    bar = progress_bar(len(ids), progress is not None, progress or "", unit="prompt")
    for batch in length_batches([len(x) for x in ids], batch_size):
        hidden = prefix([ids[i] for i in batch]).to(torch.float16).numpy()
        for row, i in enumerate(batch):
            out[i] = (hidden[row] if hidden.ndim == 2 else hidden[row, : len(ids[i])]).copy()
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return out  # type: ignore[return-value]


def fit_summary(
    targets: Any,
    config: Any,
    *,
    prompts: int,
    bf16: bool,
    steps: int,
    feature_seconds: float,
    train_seconds: float,
    started: float,
) -> dict[str, Any]:
    """The JSON-ready facts about a classifier's fit that its checkpoint's metadata keeps."""
    return {
        **targets.summary(),
        "trained_prompts": prompts,
        "trainable_layers": config.trainable_layers,
        "epochs": config.epochs,
        "bfloat16_features": bf16,
        "steps": steps,
        "feature_seconds": round(feature_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "train_examples_per_second": round(config.epochs * prompts / max(train_seconds, 1e-9), 1),
        "seconds": round(time.perf_counter() - started, 1),
    }
