"""How much per-prompt signal is there for N-model routing? Cross-fitted probes on one outcome file.

    python docs/results/n-models-signal/probe.py ../shared/data mmlu-pro/outcomes.jsonl \
        docs/results/n-models-signal [PROBE ...] [--encoder DIR]

Issue 14 asks ``mf`` to reach the best single model's quality at <= 50% of its cost on two files; it
does on llmrouter only. This script asks whether a different predictor of per-prompt quality would,
on the same 10 folds by question as ``experiments/n-models-cross-fit.yaml`` (same candidates, prices
and lambda policy, no shrinkage: each probe predicts P(correct) on the scores' own scale):

* ``category``: each model's mean score in the prompt's category (the file's ``category`` field,
  smoothed toward its overall mean with 20 pseudo-prompts). A served router never sees a category:
  this is the best a router that knew each prompt's topic exactly could do with topic means.
* ``predicted-category``: the same means, weighted by the category probabilities of a linear
  classifier on the prompt embedding (what a router can know of the topic).
* ``knn-100``, ``knn-200``, ``knn-500``: each model's mean score on the k most similar training prompts.
* ``logistic``: one logistic regression per model on the embedding (P(correct), L2 3e-5).
* ``mf-answer-key``: ``mf`` (the experiment's options) trained on its golden-label battles plus one
  battle per (prompt, model) against a pseudo-model, the answer key, that wins when the model is
  wrong (ties on half scores); P(correct) = sigmoid(logit(model) - logit(key)). The key's logit is a
  learned per-prompt difficulty, which pairwise battles cannot learn (it cancels in every pair).
* ``mf-answer-key-only``: the same with only the answer-key battles (a pointwise mf).

``--encoder DIR`` gives the probes the embeddings of another sentence-transformers model (a local
folder, e.g. all-mpnet-base-v2, 768 dimensions) instead of the experiment's MiniLM features; the
``mf-*`` probes always use mf's own.

Writes (updates) ``<file label>.json`` with each probe's AIQ, the hull's, the cost to reach the best single
model's quality and the saving, and prints one line per probe.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import yaml

from lmroute.catalogue import Catalogue, read_prices
from lmroute.data.battles import Battle
from lmroute.data.custom import read_custom
from lmroute.data.gold import battles_from_scores
from lmroute.evaluation.routing import evaluate_choices
from lmroute.registry import get_router_class
from lmroute.workflows.n_models import (
    NModelExperimentConfig,
    _candidates,
    file_label,
    grouped_splits,
    question_groups,
)

ROOT = Path(__file__).resolve().parents[3]
KEY = "(answer key)"
PROBES = (
    "category",
    "predicted-category",
    "knn-100",
    "knn-200",
    "knn-500",
    "logistic",
    "mf-answer-key",
    "mf-answer-key-only",
)


class Setup(NamedTuple):
    """One file as the cross-fit experiment routes it: its candidates, their scores and costs, the folds."""

    config: NModelExperimentConfig
    table: Any
    rows: Any
    name: str
    models: list[str]
    prompts: list[str]
    scores: np.ndarray
    costs: np.ndarray
    splits: list
    categories: np.ndarray | None


def setup(data_dir: str, file: str) -> Setup:
    """``file`` with ``experiments/n-models-cross-fit.yaml``'s candidates, prices and 10 folds."""
    raw = yaml.safe_load((ROOT / "experiments/n-models-cross-fit.yaml").read_text())
    config = NModelExperimentConfig(**{**raw, "files": [file], "prices": str(ROOT / "examples/prices.yaml")})
    table = read_custom(Path(data_dir) / file)
    prices = read_prices(config.prices)
    name = file_label(file)
    models = _candidates(name, table, config, prices)
    rows, _ = table.complete(models)
    prompts = list(rows.prompts)
    scores = np.column_stack([rows.scores[m] for m in models])
    costs = Catalogue.from_prices(models, prices, where=config.prices).costs(prompts)
    splits = grouped_splits(question_groups(prompts), config.folds, seed=config.seed)
    categories = _categories(Path(data_dir) / file, prompts)
    return Setup(config, table, rows, name, models, prompts, scores, costs, splits, categories)


def main(data_dir: str, file: str, out: str, probes: list[str], encoder: str | None = None) -> None:
    config, table, rows, name, models, prompts, scores, costs, splits, categories = setup(data_dir, file)
    if encoder is None:
        features = _embedder_features(prompts, models, config)
    else:
        features = _encoder_features(prompts, encoder)
    results = {}
    for probe in probes or PROBES:
        if "category" in probe and categories is None:
            continue
        started = time.perf_counter()
        predicted = np.full(scores.shape, np.nan)
        for train, held in splits:
            predicted[held] = _predict(
                probe, train, held, scores, features, categories, table, rows, models, config
            )
        ev = evaluate_choices(
            models, scores, costs, {probe: (predicted, costs)}, knobs=config.knobs, benchmark=name
        )
        curve, hull = ev.curves[0], ev.baseline
        results[probe] = {
            "aiq": curve.aiq,
            "hull_aiq": hull.aiq,
            # null where the probe never reaches the best single model's quality
            "reach_cost": _finite(curve.reach_cost),
            "saving": _finite(curve.saving),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(
            f"{name} {probe}: AIQ {curve.aiq:.4f} (hull {hull.aiq:.4f}), best model's quality at "
            f"{curve.reach_cost:.3f} $/1k (saving {curve.saving:.0%})",
            flush=True,
        )
    path = Path(out) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**earlier, **results}, indent=2) + "\n")


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _categories(path: Path, prompts: list[str]) -> np.ndarray | None:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by_prompt = {line["prompt"]: line.get("category") for line in lines}
    categories = [by_prompt.get(p) for p in prompts]
    return None if None in categories else np.unique(categories, return_inverse=True)[1]


def _embedder_features(prompts: list[str], models: list[str], config: NModelExperimentConfig) -> np.ndarray:
    """The prompts' embeddings as the experiment's mf reads them (long-prompt policy included)."""
    return _mf(models, config)._features(prompts).astype(np.float64)


def _encoder_features(prompts: list[str], folder: str) -> np.ndarray:
    """Unit-length sentence-transformers embeddings from a local model folder (its own max length)."""
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    model = SentenceTransformer(folder, device="cpu")
    features = model.encode(prompts, batch_size=32, normalize_embeddings=True)
    print(f"{folder}: {len(prompts)} prompts embedded in {time.perf_counter() - started:.0f} s", flush=True)
    return features.astype(np.float64)


def _mf(models: list[str], config: NModelExperimentConfig):
    """An untrained mf with the experiment's options (the pair only names the two-model score)."""
    options = {"strong_model": models[0], "weak_model": models[1], **config.router.options}
    return get_router_class("mf")(options)


def _predict(probe, train, held, scores, features, categories, table, rows, models, config) -> np.ndarray:
    overall = scores[train].mean(axis=0)
    if probe in ("category", "predicted-category"):
        k = int(categories.max()) + 1
        means = np.stack(
            [
                (scores[train][categories[train] == c].sum(0) + 20 * overall)
                / ((categories[train] == c).sum() + 20)
                for c in range(k)
            ]
        )
        if probe == "category":
            return means[categories[held]]
        weights = _softmax_regression(features[train], categories[train], k)
        return _softmax(features[held] @ weights[:-1] + weights[-1]) @ means
    if probe.startswith("knn-"):
        k = min(int(probe.split("-")[1]), len(train) - 1)
        nearest = np.argpartition(-(features[held] @ features[train].T), k, axis=1)[:, :k]
        return scores[train][nearest].mean(axis=1)
    if probe == "logistic":
        return _logistic(features[train], scores[train], features[held])
    return _mf_answer_key(probe, train, held, table, rows, models, config)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _softmax_regression(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    w = torch.zeros(x.shape[1] + 1, k, requires_grad=True)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        value = torch.nn.functional.cross_entropy(xt @ w[:-1] + w[-1], yt) + 1e-4 * (w[:-1] ** 2).sum()
        value.backward()
        return value

    opt.step(loss)
    return w.detach().numpy()


def _logistic(x: np.ndarray, y: np.ndarray, x_held: np.ndarray) -> np.ndarray:
    w = torch.zeros(x.shape[1] + 1, y.shape[1], requires_grad=True)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    opt = torch.optim.LBFGS([w], max_iter=300, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        logits = xt @ w[:-1] + w[-1]
        value = torch.nn.functional.binary_cross_entropy_with_logits(logits, yt) + 3e-5 * (w[:-1] ** 2).sum()
        value.backward()
        return value

    opt.step(loss)
    held = torch.tensor(x_held, dtype=torch.float32) @ w[:-1] + w[-1]
    return torch.sigmoid(held).detach().numpy()


def _mf_answer_key(probe, train, held, table, rows, models, config) -> np.ndarray:
    index = {p: i for i, p in enumerate(table.prompts)}
    lines = [index[rows.prompts[i]] for i in train]
    prompts = [table.prompts[i] for i in lines]
    scores = {m: np.asarray(table.scores[m], dtype=np.float64)[lines] for m in table.models}
    battles = (
        []
        if probe == "mf-answer-key-only"
        else battles_from_scores(
            prompts, scores, max_pairs_per_prompt=config.max_pairs, seed=config.seed, source="gold"
        )
    )
    for model, values in scores.items():
        for prompt, value in zip(prompts, values.tolist(), strict=True):
            if np.isfinite(value):
                winner = "model_a" if value >= 1 else "model_b" if value <= 0 else "tie"
                battles.append(Battle(prompt, model, KEY, winner, "answer-key", 1.0))
    router = _mf(models, config).fit(battles)
    logits = router.model_logits([rows.prompts[i] for i in held], router.model_indices([*models, KEY]))
    return 1.0 / (1.0 + np.exp(-(logits[:, :-1] - logits[:, -1:])))


if __name__ == "__main__":
    args = sys.argv[1:]
    encoder = None
    if "--encoder" in args:
        at = args.index("--encoder")
        encoder = args[at + 1]
        del args[at : at + 2]
    main(args[0], args[1], args[2], args[3:], encoder)
