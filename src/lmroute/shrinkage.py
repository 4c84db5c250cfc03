"""Shrinking a router's per-prompt quality predictions toward each model's measured mean.

A router's N-model prediction (:meth:`lmroute.routers.base.Router.predict_quality`) is relative: the
probability of beating the router's reference model. Maximising over many models picks, per prompt,
the model whose prediction is most *over*-estimated (the winner's curse), so even at λ = 0 the
routed quality can fall below always asking the best model. Empirical-Bayes shrinkage fixes both
the scale and the noise:

    q'[i, m] = mean_quality[m] + alpha * 2 * (q[i, m] - mean_predicted[m])

``mean_quality`` is each model's mean score on training prompts (the benchmark's own scale),
``mean_predicted`` the router's mean prediction for that model on those prompts, and
``2 * (q_a - q_b)`` is the expected score gain of ``a`` over ``b`` that the router's win
probabilities imply (a win counts 1, a tie half: ``2 P(a beats b) - 1``). With ``alpha = 0`` every
prompt gets each model's mean, so a policy reproduces the single models, the vertices of the mixing
baseline; ``alpha = 1`` keeps the router's per-prompt differences whole.

:func:`fit_shrinkage` chooses ``alpha`` in ``[0, 1]`` by least squares on validation prompts that
the router was not trained on, after removing each prompt's mean over the models (a policy's choice
does not change when every model's quality on a prompt moves together, so only the differences
between models are fitted). Only training data may be given to it: the prompts a shrinkage is
evaluated on must be neither its validation prompts nor the router's training prompts.

A router can carry a shrinkage (:meth:`lmroute.routers.base.Router.with_shrinkage`): fitted for
serving on a benchmark of the deployed models (``lmroute shrink``, :mod:`lmroute.workflows.shrink`),
saved in its ``config.json`` and applied by its ``predict_quality``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lmroute.exceptions import ConfigError, DataError


@dataclass(frozen=True)
class QualityShrinkage:
    """Per-model means and one shrinkage factor; :meth:`apply` maps predictions onto the scores' scale."""

    models: tuple[str, ...]
    #: Each model's mean score on the training prompts.
    mean_quality: np.ndarray
    #: The router's mean predicted quality of each model on those prompts.
    mean_predicted: np.ndarray
    #: How much of the router's per-prompt deviation is kept, in [0, 1].
    alpha: float

    def __post_init__(self) -> None:
        k = len(self.models)
        if np.shape(self.mean_quality) != (k,) or np.shape(self.mean_predicted) != (k,):
            raise ConfigError(
                f"a shrinkage needs one mean quality and one mean prediction per model ({k} models)"
            )
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")

    def apply(self, predicted: np.ndarray) -> np.ndarray:
        """Shrunk qualities ``(n, k)`` of predictions ``(n, k)`` (columns in ``models`` order).

        Not clipped to [0, 1]: an estimate a little above a model's mean of 0.97 still ranks it
        above one of 0.96, where clipping both to 1 would tie them."""
        q = np.asarray(predicted, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != len(self.models):
            raise ConfigError(f"predictions must be (prompts, {len(self.models)}), got {q.shape}")
        return self.mean_quality + self.alpha * 2.0 * (q - self.mean_predicted)

    def select(self, models: list[str]) -> QualityShrinkage:
        """The same shrinkage for ``models`` (a subset, in their order); ConfigError naming what it
        does not cover: a shrinkage puts only the models it was fitted on on the scores' scale."""
        index = {m: i for i, m in enumerate(self.models)}
        missing = [m for m in models if m not in index]
        if missing:
            raise ConfigError(
                f"the router's quality shrinkage was fitted on {', '.join(self.models)}; it cannot put "
                f"{', '.join(missing)} on that scale: refit it with their scores (lmroute shrink)"
            )
        if list(models) == list(self.models):
            return self
        rows = [index[m] for m in models]
        return QualityShrinkage(tuple(models), self.mean_quality[rows], self.mean_predicted[rows], self.alpha)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "models": list(self.models),
            "mean_quality": self.mean_quality.tolist(),
            "mean_predicted": self.mean_predicted.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> QualityShrinkage:
        """The shrinkage :meth:`to_dict` wrote; ConfigError if ``data`` is not one."""
        try:
            models = tuple(data["models"])
            means = [np.asarray(data[k], dtype=np.float64) for k in ("mean_quality", "mean_predicted")]
            alpha = float(data["alpha"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a quality shrinkage ({type(exc).__name__}: {exc})") from None
        if not all(isinstance(m, str) and m for m in models) or len(set(models)) != len(models):
            raise ConfigError("a quality shrinkage needs distinct model names")
        if not all(np.isfinite(m).all() for m in means) or not np.isfinite(alpha):
            raise ConfigError("a quality shrinkage needs finite means and alpha")
        return cls(models, means[0], means[1], alpha)


def fit_shrinkage(
    models: list[str],
    train_scores: np.ndarray,
    train_predicted: np.ndarray,
    val_scores: np.ndarray,
    val_predicted: np.ndarray,
) -> QualityShrinkage:
    """The shrinkage for ``models`` from training data only, arrays ``(prompts, len(models))``.

    ``train_*``: the router's training prompts (true scores, its predictions); ``val_*``: validation
    prompts held out of the router's training. The means are taken over both; ``alpha`` is the
    least-squares slope of the validation scores' deviations from the means on the predictions'
    deviations, each centred per prompt, clipped to [0, 1]."""
    given = (train_scores, train_predicted, val_scores, val_predicted)
    arrays = [np.asarray(a, dtype=np.float64) for a in given]
    k = len(models)
    for a in arrays:
        if a.ndim != 2 or a.shape[1] != k:
            raise ConfigError(f"scores and predictions must be (prompts, {k}) arrays, got {a.shape}")
        if not np.isfinite(a).all():
            raise DataError("shrinkage needs a finite score and prediction of every model on every prompt")
    if k < 2:
        raise DataError(f"shrinkage needs at least two models, got {k}")
    if arrays[0].shape != arrays[1].shape or arrays[2].shape != arrays[3].shape:
        raise ConfigError("scores and predictions must have one shape per set of prompts")
    if len(arrays[2]) == 0:
        raise DataError("shrinkage needs validation prompts to choose alpha")
    scores = np.concatenate([arrays[0], arrays[2]])
    predicted = np.concatenate([arrays[1], arrays[3]])
    mean_quality, mean_predicted = scores.mean(axis=0), predicted.mean(axis=0)
    y = _centre(arrays[2] - mean_quality)
    z = _centre(2.0 * (arrays[3] - mean_predicted))
    denominator = float((z * z).sum())
    alpha = float((y * z).sum()) / denominator if denominator > 0 else 0.0
    return QualityShrinkage(tuple(models), mean_quality, mean_predicted, float(np.clip(alpha, 0.0, 1.0)))


def _centre(a: np.ndarray) -> np.ndarray:
    """Each row minus its mean: what is left when every model moves together on a prompt."""
    return a - a.mean(axis=1, keepdims=True)
