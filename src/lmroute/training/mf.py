"""Training loop of the matrix-factorisation router (torch on CPU; the router scores without torch).

The model of RouteLLM's ``MFModel_Train``: a learned vector per model ``P[m]`` (used L2-normalised),
a linear projection ``W`` of the prompt embedding ``q`` and a linear classifier ``c``, giving
``logit(m, q) = c · (P̂[m] ⊙ W q)``. A battle won by ``w`` against ``l`` is a Bradley–Terry
observation ``P(w beats l) = sigmoid(logit(w, q) - logit(l, q))``, trained with the logistic loss,
Adam with L2 weight decay, and Gaussian noise of standard deviation ``noise`` added to each
coordinate of the prompt embedding during training (the reference's ``alpha``; it stabilises
training). Ties are not used, as in the reference, unless ``ties="half"``; ``hidden`` > 0 puts a
ReLU layer before ``W``.

Unlike the reference, which holds out a random 5 % of battles, we hold out a random share of the
*prompts* (all their battles), so the held-out loss measures generalisation to new prompts
rather than to new model pairs of a seen prompt. The returned weights are those after the last
epoch, as in the reference.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmroute.exceptions import ConfigError, DataError


@dataclass(frozen=True, kw_only=True)
class MFParams:
    """Hyper-parameters of one fit (the ``mf`` router's config fills them in; its defaults are the
    reference's)."""

    #: Size of the model vectors and of the projected prompt embedding.
    dim: int
    #: Width of a ReLU layer between the prompt embedding and ``W`` (0: linear).
    hidden: int
    epochs: int
    batch_size: int
    lr: float
    #: Adam's L2 weight decay.
    weight_decay: float
    #: Standard deviation of the Gaussian noise added to each prompt-embedding coordinate.
    noise: float
    #: Share of distinct prompts whose battles are held out to report a held-out loss.
    held_out_fraction: float
    seed: int


@dataclass(frozen=True)
class MFWeights:
    """Learned arrays of the matrix-factorisation model, as numpy float32."""

    model_embeddings: np.ndarray  # (num_models, dim), not normalised
    text_proj: np.ndarray  # (dim, text_dim), or (dim, hidden) after a hidden layer
    classifier: np.ndarray  # (dim,)
    #: The hidden layer ``relu(hidden_weight q + hidden_bias)`` when ``params.hidden`` > 0.
    hidden_weight: np.ndarray | None = None  # (hidden, text_dim)
    hidden_bias: np.ndarray | None = None  # (hidden,)
    #: One entry per epoch: train loss, and held-out loss and accuracy when there is a held-out set.
    history: list[dict[str, float]] = field(default_factory=list)


def train_mf(
    embeddings: np.ndarray,
    prompt: np.ndarray,
    winner: np.ndarray,
    loser: np.ndarray,
    *,
    target: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    num_models: int,
    params: MFParams,
    progress: bool = False,
) -> MFWeights:
    """Fit the model on battles ``(prompt[i], winner[i], loser[i])``; ``embeddings[prompt[i]]``
    is battle ``i``'s prompt embedding and ``target[i]`` the probability that ``winner[i]`` won
    (1 for a decisive battle, 0.5 for a tie; default all 1); ``weight[i]`` scales battle ``i``'s
    loss (default all 1). Deterministic for a given ``params.seed`` (one thread)."""
    import torch

    prompt, winner, loser = (np.asarray(x, dtype=np.int64) for x in (prompt, winner, loser))
    target = np.ones(prompt.size) if target is None else np.asarray(target, dtype=np.float32)
    weight = np.ones(prompt.size) if weight is None else np.asarray(weight, dtype=np.float32)
    if not prompt.size:
        raise DataError("no decisive battles (ties are not used) to train the mf router on")
    held_out = _held_out_prompts(prompt, params.held_out_fraction, params.seed)
    test = np.isin(prompt, held_out)
    if test.all():
        raise DataError("every battle is held out: lower held_out_fraction or give more prompts")
    q_all = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    columns = (prompt, winner, loser, target.astype(np.float32), weight.astype(np.float32))
    train = [torch.from_numpy(x[~test]) for x in columns]
    held = [torch.from_numpy(x[test]) for x in columns]
    # The matrices are tiny: intra-op threads cost more in synchronisation than they save (on a
    # busy 2-core machine a step took 30x longer with 2 threads), so train on one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):  # seed locally, leave the caller's torch RNG alone
            torch.manual_seed(params.seed)
            model = _build_model(num_models, params.dim, embeddings.shape[1], params.hidden)
            history = _fit(model, q_all, train, held, params, progress)
    finally:
        torch.set_num_threads(threads)

    def array(name: str, attribute: str = "weight") -> np.ndarray:
        return getattr(model[name], attribute).detach().numpy().astype(np.float32)

    return MFWeights(
        model_embeddings=array("P"),
        text_proj=array("text_proj"),
        classifier=array("classifier")[0],
        hidden_weight=array("hidden") if params.hidden else None,
        hidden_bias=array("hidden", "bias") if params.hidden else None,
        history=history,
    )


def _fit(
    model: Any, q_all: Any, train: list[Any], held: list[Any], params: MFParams, progress: bool
) -> list[dict[str, float]]:
    """The epochs: Adam on the logistic loss of (winner, loser) logit differences."""
    import torch

    # fused: the same update in one kernel, about a fifth less time per step on CPU
    optimizer = torch.optim.Adam(
        model.parameters(), lr=params.lr, weight_decay=params.weight_decay, fused=True
    )
    n = train[0].numel()
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    report_every = max(1, params.epochs // 20)
    for epoch in range(1, params.epochs + 1):
        order = torch.randperm(n)
        prompt, winner, loser, target, weight = (t[order] for t in train)
        total = torch.zeros(())
        for start in range(0, n, params.batch_size):
            end = start + params.batch_size
            q = q_all[prompt[start:end]]
            if params.noise:
                q = q + torch.randn_like(q) * params.noise
            logits = _logits(model, winner[start:end], loser[start:end], q)
            loss = _bce(logits, target[start:end], weight[start:end])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.detach() * logits.numel()
        entry = {"epoch": epoch, "train_loss": total.item() / n}
        if not math.isfinite(entry["train_loss"]):
            # else the NaN weights are saved, and the router scores 0.5 on every prompt without a word
            raise ConfigError(
                f"mf training diverged: the train loss was {entry['train_loss']} at epoch {epoch}; "
                f"lower lr (now {params.lr:g}) or the largest battle weights"
            )
        if held[0].numel():
            entry.update(_evaluate(model, q_all, held))
        history.append(entry)
        if progress and (epoch % report_every == 0 or epoch == params.epochs):
            _report(entry, params.epochs, time.perf_counter() - started)
    return history


def _held_out_prompts(prompt: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    prompts = np.unique(prompt)
    if fraction <= 0 or prompts.size < 2:
        return prompts[:0]
    count = min(prompts.size - 1, max(1, round(fraction * prompts.size)))
    return np.random.default_rng(seed).permutation(prompts)[:count]


def _evaluate(model: Any, q_all: Any, held: list[Any]) -> dict[str, float]:
    import torch

    with torch.no_grad():
        logits = _logits(model, held[1], held[2], q_all[held[0]])
        loss = _bce(logits, held[3], held[4]).item()
        decisive = held[3] == 1
        accuracy = (logits[decisive] > 0).double().mean().item() if decisive.any() else float("nan")
    return {"held_out_loss": loss, "held_out_accuracy": accuracy}


def _report(entry: dict[str, float], epochs: int, seconds: float) -> None:
    width = int(math.log10(epochs)) + 1
    line = f"mf epoch {entry['epoch']:{width}d}/{epochs}: train loss {entry['train_loss']:.4f}"
    if "held_out_loss" in entry:
        line += (
            f", held-out loss {entry['held_out_loss']:.4f}, "
            f"held-out accuracy {entry['held_out_accuracy']:.3f}"
        )
    print(f"{line} ({seconds:.1f} s)", file=sys.stderr, flush=True)


def _build_model(num_models: int, dim: int, text_dim: int, hidden: int) -> Any:
    import torch

    # created in the reference's order, so a seed draws the same initial weights
    layers = {
        "P": torch.nn.Embedding(num_models, dim),
        "text_proj": torch.nn.Linear(hidden or text_dim, dim, bias=False),
        "classifier": torch.nn.Linear(dim, 1, bias=False),  # no bias: it cancels in differences
    }
    if hidden:
        layers["hidden"] = torch.nn.Linear(text_dim, hidden)
    return torch.nn.ModuleDict(layers)


def _bce(logits: Any, target: Any, weight: Any) -> Any:
    """Weighted logistic loss of soft labels: the probability that the first model won."""
    from torch.nn.functional import softplus

    return (weight * (target * softplus(-logits) + (1 - target) * softplus(logits))).mean()


def _logits(model: Any, winner: Any, loser: Any, q: Any) -> Any:
    """``logit(winner, q) - logit(loser, q)``: the classifier is linear, so one product suffices."""
    from torch.nn.functional import normalize, relu

    diff = normalize(model["P"](winner), p=2, dim=1) - normalize(model["P"](loser), p=2, dim=1)
    if "hidden" in model:
        q = relu(model["hidden"](q))
    return model["classifier"](diff * model["text_proj"](q)).squeeze(-1)
