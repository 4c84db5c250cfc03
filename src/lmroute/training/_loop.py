"""Pieces shared by the classifier routers' training loops (torch is imported here)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch


def epoch_batches(
    lengths: list[int], batch_size: int, rng: np.random.Generator, *, by_length: bool
) -> Iterator[torch.Tensor]:
    """One epoch of shuffled index batches; with ``by_length``, batches of similar lengths (sorted
    within windows of 50 batches), so little compute goes to padding."""
    order = rng.permutation(len(lengths))
    if by_length:
        window = 50 * batch_size
        order = np.concatenate([
            chunk[np.argsort([-lengths[i] for i in chunk], kind="stable")]
            for chunk in np.array_split(order, max(1, math.ceil(len(order) / window)))
        ])  # fmt: skip
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


def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar over training steps, or None."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step")
