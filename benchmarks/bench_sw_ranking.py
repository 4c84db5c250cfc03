"""sw_ranking scoring speed with 50,000 training battles: batched counts + Newton vs the reference's refit.

The reference (RouteLLM's ``SWRankingRouter``) fits a weighted logistic regression over all battles
(duplicated, as its ``compute_elo_mle_with_tie`` does) for every query. This script scores the
same queries both ways in one run, on synthetic battles with one distinct prompt each (the worst
case for storage and speed), prints prompts/s of each, their ratio, and the largest difference of
the two win probabilities. Embeddings are precomputed, so the router's own work is what is timed;
``--embedder minilm`` also times MiniLM on the query texts and prints the combined rate.

    python benchmarks/bench_sw_ranking.py [--battles 50000] [--queries 500] [--baseline-queries 3]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from collections.abc import Sequence

import numpy as np
from _args import positive

from lmroute.data.battles import Battle
from lmroute.embeddings.base import Embedder, normalize
from lmroute.routers.sw_ranking import SWRankingRouter
from lmroute.training import bradley_terry as bt

DIM = 384
NUM_MODELS = 20


class LookupEmbedder(Embedder):
    """Vectors known in advance for each text (the benchmark's prompts are synthetic)."""

    name = "lookup"
    dim = DIM

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])


def synthetic(num_battles: int, num_queries: int, seed: int = 0):
    """Prompts in 50 topics (clustered unit vectors); each model's strength depends on the topic."""
    rng = np.random.default_rng(seed)
    centres = normalize(rng.normal(size=(50, DIM)))
    total = num_battles + num_queries
    topic = rng.integers(50, size=total)
    vectors = normalize(centres[topic] + 0.7 * rng.normal(size=(total, DIM)) / math.sqrt(DIM))
    texts = [f"prompt {i}" for i in range(total)]
    skill = rng.normal(size=NUM_MODELS)[None, :] + 0.5 * rng.normal(size=(50, NUM_MODELS))
    models = ["gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"] + [
        f"model-{i}" for i in range(NUM_MODELS - 2)
    ]
    battles = []
    for i in range(num_battles):
        a, b = rng.choice(NUM_MODELS, size=2, replace=False)
        p_a = 1 / (1 + math.exp(skill[topic[i], b] - skill[topic[i], a]))
        u = rng.random()
        winner = "tie" if u < 0.2 else "model_a" if rng.random() < p_a else "model_b"
        battles.append(Battle(texts[i], models[a], models[b], winner))
    return battles, texts[num_battles:], LookupEmbedder(dict(zip(texts, vectors, strict=True)))


def reference_score(battles, tiers, embedder, query, strong, weak) -> float:
    """One query as the reference does it: weights, duplicated design matrix, logistic regression."""
    emb = embedder.embed([b.prompt for b in battles]).astype(np.float64)
    q = embedder.embed([query])[0].astype(np.float64)
    sims = emb @ q / (np.linalg.norm(emb, axis=1) * np.linalg.norm(q))
    weights = 10 * 10 ** (sims / sims.max())
    a = np.array([tiers[b.model_a] for b in battles])
    b = np.array([tiers[x.model_b] for x in battles])
    outcome = bt.outcome_codes([x.winner for x in battles])
    n, p = len(a), max(tiers.values()) + 1
    X = np.zeros((2 * n, p))
    X[np.arange(2 * n), np.concatenate([a, a])] = math.log(10)
    X[np.arange(2 * n), np.concatenate([b, b])] = -math.log(10)
    Y = np.zeros(2 * n)
    Y[np.concatenate([outcome, outcome]) == bt.A_WINS] = 1.0
    Y[:n][outcome == bt.TIE] = 1.0
    coef = _logistic(X, Y, np.concatenate([weights, weights]))
    elo = 400 * coef + 1000
    return 1 - 1 / (1 + 10 ** ((elo[tiers[strong]] - elo[tiers[weak]]) / 400))


def _logistic(X: np.ndarray, Y: np.ndarray, w: np.ndarray) -> np.ndarray:
    try:
        import warnings

        from sklearn.linear_model import LogisticRegression
    except ImportError:  # the same fit by Newton steps
        coef = np.zeros(X.shape[1])
        for _ in range(100):
            p = 1 / (1 + np.exp(-X @ coef))
            step = np.linalg.lstsq((X * (w * p * (1 - p))[:, None]).T @ X, X.T @ (w * (Y - p)), rcond=None)[0]
            coef += step
            if np.abs(step).max() < 1e-10:
                break
        return coef
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # penalty=None is deprecated in new scikit-learn
        lr = LogisticRegression(fit_intercept=False, penalty=None, tol=1e-8, max_iter=1000)
        lr.fit(X, Y, sample_weight=w)
    return lr.coef_[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--battles", type=positive, default=50_000)
    parser.add_argument("--queries", type=positive, default=500)
    parser.add_argument("--baseline-queries", type=positive, default=3)
    parser.add_argument("--embedder", choices=["none", "minilm"], default="none")
    args = parser.parse_args()

    battles, queries, embedder = synthetic(args.battles, args.queries)
    started = time.perf_counter()
    router = SWRankingRouter(embedder=embedder, l2=0.0).fit(battles)
    fit_seconds = time.perf_counter() - started
    arrays = router._arrays()
    size = sum(a.nbytes for a in arrays.values())
    print(
        f"{args.battles:,} battles, {NUM_MODELS} models in {max(router.metadata['tiers'].values()) + 1} "
        f"tiers; fit {fit_seconds:.1f} s; weights {size / 2**20:.1f} MiB "
        f"({arrays['prompt_embeddings'].nbytes / 2**20:.1f} MiB float16 prompt embeddings)"
    )

    router.score(queries[:8])  # warm up
    started = time.perf_counter()
    ours = router.score(queries)
    ours_rate = len(queries) / (time.perf_counter() - started)

    cfg = router.config
    tiers = router.metadata["tiers"]
    # scikit-learn takes seconds to import: inside the timed loop it would count as refit time
    with contextlib.suppress(ImportError):
        import sklearn.linear_model  # noqa: F401
    few = queries[: args.baseline_queries]  # all of them when --baseline-queries is the larger
    started = time.perf_counter()
    reference = [reference_score(battles, tiers, embedder, q, cfg.strong_model, cfg.weak_model) for q in few]
    ref_rate = len(few) / (time.perf_counter() - started)
    diff = np.abs(np.array(reference) - ours[: len(few)]).max()

    print(f"lmroute sw_ranking (batched): {ours_rate:8.1f} prompts/s  ({len(queries)} prompts)")
    print(f"reference refit per prompt:    {ref_rate:8.2f} prompts/s  ({len(few)} prompts)")
    print(f"ratio: {ours_rate / ref_rate:.0f}x; largest win-probability difference: {diff:.1e}")
    if args.embedder == "minilm":
        from lmroute.embeddings import get_embedder

        minilm = get_embedder("minilm", cache=False)
        texts = [
            f"Explain topic {i}: how does a router choose between two language models?" for i in range(200)
        ]
        minilm.embed(texts[:8])
        started = time.perf_counter()
        minilm.embed(texts)
        embed_rate = len(texts) / (time.perf_counter() - started)
        combined = 1 / (1 / ours_rate + 1 / embed_rate)
        print(
            f"MiniLM embedding: {embed_rate:.1f} prompts/s; "
            f"sw_ranking including embedding: {combined:.1f} prompts/s"
        )


if __name__ == "__main__":
    main()
