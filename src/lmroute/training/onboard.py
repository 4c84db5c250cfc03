"""Fit one new model's vector of a trained matrix-factorisation router, everything else frozen.

In ``mf`` a model ``m``'s logit on a prompt is ``z · P̂[m]``, where ``z = c ⊙ W q`` depends only on
the prompt and the frozen shared weights and ``P̂[m]`` is the model's unit-length vector. Battles of
the new model against known models on probe prompts then form a logistic regression in one unit
vector ``u``: ``P(new beats other) = sigmoid(z · u - z · P̂[other])``. With a few dozen probes that
regression overfits 128 free coordinates, so the loss adds ``prior / n · |u - u0|²``: a pull toward
``u0``, the average direction of the known models, worth ``prior`` pseudo-battles in all.

Solved by gradient descent on ``v`` with ``u = v / |v|`` and a backtracking (Armijo) step: the
problem is tiny (one ``dim``-vector), so plain numpy is fast and needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

import numpy as np

from lmroute.exceptions import ConfigError


@dataclass(frozen=True)
class OnboardParams:
    """How hard the new model's vector is pulled toward the known models' average direction
    (``prior``: pseudo-battles), and the optimiser's budget."""

    prior: float = 5.0
    steps: int = 400
    tolerance: float = 1e-9

    def __post_init__(self) -> None:
        # An infinite pull made every step NaN: the saved vector predicted 0.5 on every prompt. A
        # string was a TypeError traceback, and True a prior of 1.
        prior = self.prior
        if isinstance(prior, bool) or not isinstance(prior, Real) or not 0 <= prior < float("inf"):
            raise ConfigError(f"the prior must be a finite number of pseudo-battles >= 0, got {prior!r}")


def fit_model_vector(
    z: np.ndarray,
    offset: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray,
    init: np.ndarray,
    *,
    params: OnboardParams | None = None,
) -> np.ndarray:
    """The unit vector ``u`` minimising the weighted log loss of ``sigmoid(z @ u - offset)`` against
    ``target`` (1: the new model won, 0: lost, 0.5: a tie) plus the pull toward ``init``.

    ``z``: ``(n, dim)``; ``offset``, ``target``, ``weight``: ``(n,)``; ``init``: ``(dim,)``.
    """
    params = params or OnboardParams()
    z = np.asarray(z, dtype=np.float64)
    n, dim = z.shape
    if n == 0:
        raise ConfigError("onboarding needs at least one battle of the new model")
    if not (offset.shape == target.shape == weight.shape == (n,)) or init.shape != (dim,):
        raise ConfigError("onboarding arrays do not fit each other")
    w = np.asarray(weight, dtype=np.float64) / float(np.sum(weight))
    u0 = init / max(float(np.linalg.norm(init)), 1e-12)
    pull = params.prior / n

    def loss_grad(v: np.ndarray) -> tuple[float, np.ndarray]:
        norm = max(float(np.linalg.norm(v)), 1e-12)
        u = v / norm
        x = z @ u - offset
        # log(1 + e^x) - t x, computed stably
        loss = float(w @ (np.logaddexp(0.0, x) - target * x)) + pull * float((u - u0) @ (u - u0))
        grad_u = z.T @ (w * (_sigmoid(x) - target)) + 2.0 * pull * (u - u0)
        return loss, (grad_u - u * (u @ grad_u)) / norm  # through u = v / |v|

    v = u0.copy()
    loss, grad = loss_grad(v)
    step = 1.0
    for _ in range(params.steps):
        slope = float(grad @ grad)
        if slope < params.tolerance**2:
            break
        while True:  # Armijo backtracking
            candidate = v - step * grad
            new_loss, new_grad = loss_grad(candidate)
            if new_loss <= loss - 0.5 * step * slope or step < 1e-10:
                break
            step *= 0.5
        converged = loss - new_loss < params.tolerance
        v, loss, grad = candidate, new_loss, new_grad
        step *= 2.0
        if converged:
            break
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))
