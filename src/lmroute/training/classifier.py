"""What the classifier routers' solvers (``bert``, ``causal_llm``) share (imports torch).

Their parameters' common part (:class:`ClassifierParams`), the fit around their own optimisation
(:func:`fit_classifier`: soft targets, the seeded network, the frozen layers' features computed
once per prompt by :func:`frozen_features`, the facts of the fit), and the pieces of an
optimisation loop: shuffled batches, the learning-rate schedule, one step, a progress bar.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch

from lmroute.data.battles import Battle
from lmroute.networks.base_models import BaseModel
from lmroute.networks.batching import length_batches
from lmroute.networks.precision import Precision, uses_bfloat16
from lmroute.training.labels import outcome_targets
from lmroute.training.prefix_cache import PrefixCache, shared_cache


@dataclass(frozen=True, kw_only=True)
class ClassifierParams:
    """Training parameters common to the classifier routers (a router's config fills them in)."""

    #: Battles between exactly these two map directly to the classes; other pairs by ratings.
    strong_model: str
    weak_model: str
    #: Battles between models rated closer than this (natural-log Bradley–Terry scale) are left out.
    min_rating_gap: float
    #: Share of P(tie) counted as "the strong model is worth it" (the binary head's target).
    tie_share: float
    #: Train on at most this many distinct prompts (a seeded sample).
    max_train_prompts: int | None
    epochs: int
    batch_size: int
    #: Learning rate of the output head, and of the rest of what trains.
    head_learning_rate: float
    learning_rate: float
    weight_decay: float
    #: Share of the steps over which the learning rate warms up linearly (then decays linearly).
    warmup: float
    #: The frozen layers' features are computed in this precision, in batches of this size.
    precision: Precision
    score_batch_size: int
    seed: int


class FrozenPrefix(Protocol):
    """A network whose frozen lower layers run on their own (see :func:`frozen_features`)."""

    frozen: int

    def eval(self) -> Any: ...

    def tokenize(self, prompts: Sequence[str]) -> list[list[int]]: ...

    def prefix_batch(self, ids: Sequence[Sequence[int]]) -> torch.Tensor: ...


NetT = TypeVar("NetT")
FrozenNetT = TypeVar("FrozenNetT", bound=FrozenPrefix)


@dataclass
class TrainedClassifier(Generic[NetT]):
    """A solver's result: the trained network, its base model, and facts about the fit."""

    network: NetT
    base: BaseModel
    #: JSON-ready facts about the fit, for the checkpoint's metadata.
    summary: dict[str, Any]


def fit_classifier(
    params: ClassifierParams,
    battles: Sequence[Battle],
    *,
    kind: str,
    resolve: Callable[[], BaseModel],
    build: Callable[[BaseModel], FrozenNetT],
    layout: str,
    optimise: Callable[[FrozenNetT, list[np.ndarray], np.ndarray, np.random.Generator], int],
    trainable_layers: int,
    prefix_cache: PrefixCache | None,
    progress: bool,
) -> TrainedClassifier[FrozenNetT]:
    """The fit both classifier solvers share, around their own ``optimise``:

    1. battles become one soft target per distinct prompt (``(n, 3)`` probabilities, see
       :func:`~lmroute.training.labels.outcome_targets`), sampled down to ``max_train_prompts``;
    2. ``build(resolve())`` makes the network, seeded by ``params.seed`` in a forked torch RNG
       (the caller's random state is left alone);
    3. its frozen layers run once per prompt (:func:`frozen_features`, cached under ``kind``, the
       base model's fingerprint, the frozen depth and ``layout``: whatever else they depend on);
    4. ``optimise(net, features, probabilities, rng)`` trains and returns its number of steps
       (``epochs=0`` skips 3 and 4: the untrained network).
    """
    started = time.perf_counter()
    rng = np.random.default_rng(params.seed)
    targets = outcome_targets(
        battles,
        strong_model=params.strong_model,
        weak_model=params.weak_model,
        min_rating_gap=params.min_rating_gap,
    )
    prompts, probs = targets.prompts, targets.probabilities()
    if params.max_train_prompts is not None and len(prompts) > params.max_train_prompts:
        keep = np.sort(rng.choice(len(prompts), size=params.max_train_prompts, replace=False))
        prompts, probs = [prompts[i] for i in keep], probs[keep]
    base = resolve()
    bf16 = uses_bfloat16(params.precision)
    feature_seconds = train_seconds = 0.0
    steps = 0
    with torch.random.fork_rng():
        torch.manual_seed(params.seed)
        net = build(base)
        if params.epochs > 0:
            feature_start = time.perf_counter()
            # The frozen layers run in the scoring precision; training always runs in float32 (top
            # layers trained under bfloat16 autocast measured clearly worse).
            features = frozen_features(
                net,
                prompts,
                namespace=f"{kind}:{base.sha256}:{net.frozen}:{layout}" + (":bf16" if bf16 else ""),
                cache=prefix_cache,
                bfloat16=bf16,
                batch_size=params.score_batch_size,
                progress=f"{kind} frozen layers" if progress else None,
            )
            feature_seconds = time.perf_counter() - feature_start
            train_start = time.perf_counter()
            steps = optimise(net, features, probs, rng)
            train_seconds = time.perf_counter() - train_start
    net.eval()
    summary = {
        **targets.summary(),
        "trained_prompts": len(prompts),
        "trainable_layers": trainable_layers,
        "epochs": params.epochs,
        "bfloat16_features": bf16,
        "steps": steps,
        "feature_seconds": round(feature_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "train_examples_per_second": round(params.epochs * len(prompts) / max(train_seconds, 1e-9), 1),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return TrainedClassifier(net, base, summary)


@torch.inference_mode()
def frozen_features(
    net: FrozenPrefix,
    prompts: list[str],
    *,
    namespace: str,
    cache: PrefixCache | None,
    bfloat16: bool,
    batch_size: int,
    progress: str | None = None,
) -> list[np.ndarray]:
    """Per prompt, the frozen layers' fp16 output: its token states ``(length, hidden)``, or one
    vector when every layer is frozen. Kept in ``cache`` (default: the process-wide one) under
    ``namespace``, which must name everything the output depends on. The layers run in bfloat16
    when ``bfloat16`` (the scoring precision). ``progress``: the label of a bar over prompts (this
    pass can be the longest part of a fit)."""

    def compute(missing: list[str]) -> list[np.ndarray]:
        ids = net.tokenize(missing)
        out: list[np.ndarray] = [np.zeros(0)] * len(ids)
        bar = progress_bar(len(ids), progress is not None, progress or "", unit="prompt")
        for batch in length_batches([len(x) for x in ids], batch_size):
            hidden = net.prefix_batch([ids[i] for i in batch]).to(torch.float16).numpy()
            for row, i in enumerate(batch):
                out[i] = (hidden[row] if hidden.ndim == 2 else hidden[row, : len(ids[i])]).copy()
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        return out

    net.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
        return (cache if cache is not None else shared_cache()).lookup(namespace, prompts, compute)


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


def warmup_then_decay(
    optimizer: torch.optim.Optimizer, *, total: int, warmup: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rates rising linearly over the first ``warmup`` share of ``total`` steps, then
    falling linearly to zero."""
    rise = int(warmup * total)

    def factor(step: int) -> float:
        if step < rise:
            return (step + 1) / rise
        return max(0.0, (total - step) / max(1, total - rise))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    weights: list[torch.nn.Parameter],
    bar: Any,
) -> None:
    """One step on ``loss``: gradients clipped to norm 1 over ``weights``, then the schedule's
    next learning rate; the progress bar (or None) shows the loss."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(weights, 1.0)
    optimizer.step()
    scheduler.step()
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")


def pad_states(states: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached per-prompt states ``(length_i, hidden)`` as a right-padded fp32 batch and lengths."""
    width = max(len(s) for s in states)
    hidden = torch.zeros((len(states), width, states[0].shape[1]), dtype=torch.float32)
    for i, s in enumerate(states):
        hidden[i, : len(s)] = torch.from_numpy(s)
    return hidden, torch.tensor([len(s) for s in states], dtype=torch.long)


def progress_bar(total: int, enabled: bool, desc: str, unit: str = "step") -> Any:
    """A tqdm bar over training steps (or other units), or None."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit)
