"""MT-Bench under gold-1500: each router, their rank mean (weight 0.5, fixed in advance) and the
paired bootstrap of the gain, from the scores ``run.py`` kept.

    python docs/results/domain-transfer/mt_bench.py docs/results/mt-bench-sources ROUTER ROUTER
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from lmroute.data.benchmarks import load_benchmark
from lmroute.evaluation import metrics

SAMPLES = 1000


def _rank(x: np.ndarray) -> np.ndarray:
    """Ranks in (0, 1], ties sharing their mean rank (numpy only)."""
    ranks = np.empty(len(x))
    ranks[np.argsort(x, kind="stable")] = np.arange(1, len(x) + 1)
    _, group = np.unique(x, return_inverse=True)
    return (np.bincount(group, ranks) / np.bincount(group))[group] / len(x)


def _apgr(scores: np.ndarray, strong: np.ndarray, weak: np.ndarray) -> float:
    cur = metrics.curve(scores, strong, weak, protocol="paper")
    return metrics.apgr(cur.c, cur.quality, strong.mean(), weak.mean())


def paired_draws(strong: np.ndarray, weak: np.ndarray) -> list[np.ndarray]:
    """SAMPLES resamples of the items (seed 0), shared by every router so that gains are paired;
    a resample where both models score alike (APGR undefined) is dropped."""
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(strong), len(strong)) for _ in range(SAMPLES)]
    return [i for i in draws if strong[i].mean() != weak[i].mean()]


def main(out: str, routers: list[str]) -> None:
    saved = np.load(Path(out) / "scores.npz")
    bench = load_benchmark("mt-bench", data_dir=None)
    strong, weak = bench.strong, bench.weak
    scores = {r: saved[f"gold-1500|mt-bench|{r}"] for r in routers}
    scores["rank mean of " + " + ".join(routers)] = np.mean([_rank(s) for s in scores.values()], axis=0)
    draws = paired_draws(strong, weak)
    boot = {n: np.array([_apgr(s[i], strong[i], weak[i]) for i in draws]) for n, s in scores.items()}
    report: dict[str, object] = {}
    for name, s in scores.items():
        low, high = np.percentile(boot[name], [2.5, 97.5])
        report[name] = {"apgr": _apgr(s, strong, weak), "apgr_ci95": [float(low), float(high)]}
        print(f"{name}: APGR {report[name]['apgr']:.4f} [{low:.3f}, {high:.3f}]")  # type: ignore[index]
    ensemble = list(scores)[-1]
    for r in routers:
        gain = boot[ensemble] - boot[r]
        low, high = np.percentile(gain, [2.5, 97.5])
        point = report[ensemble]["apgr"] - report[r]["apgr"]  # type: ignore[index]
        report[f"gain over {r}"] = {"apgr": point, "apgr_ci95": [float(low), float(high)]}
        print(f"ensemble - {r}: {point:+.4f} [{low:+.3f}, {high:+.3f}] (paired bootstrap over questions)")
    Path(out, "ensemble.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["mf", "sw_ranking"])
