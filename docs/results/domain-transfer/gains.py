"""Gold-1500 APGR of one router and its paired gain over others, per benchmark, from kept scores.

    python docs/results/domain-transfer/gains.py ../shared/data docs/results/ensemble \
        "ensemble (mf, sw_ranking)" docs/results/paper-protocols-rerun mf sw_ranking

The first folder holds the router's scores, the second the others' (``scores.npz`` as ``run.py``
keeps them). Every benchmark's items are resampled 1,000 times (seed 0), the same resamples for
every router, so a gain's interval is paired. Writes ``gains.json`` into the first folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from mt_bench import _apgr, paired_draws

from lmroute.data.benchmarks import load_benchmark


def main(data_dir: str, folder: str, router: str, others_folder: str, others: list[str]) -> None:
    mine, theirs = np.load(Path(folder) / "scores.npz"), np.load(Path(others_folder) / "scores.npz")
    report: dict[str, dict[str, object]] = {}
    for name in ("mmlu", "gsm8k", "mt-bench"):
        bench = load_benchmark(name, data_dir=data_dir)
        strong, weak = bench.strong, bench.weak
        scores = {router: mine[f"gold-1500|{name}|{router}"]}
        scores |= {r: theirs[f"gold-1500|{name}|{r}"] for r in others}
        draws = paired_draws(strong, weak)
        boot = {r: np.array([_apgr(s[i], strong[i], weak[i]) for i in draws]) for r, s in scores.items()}
        point = {r: _apgr(s, strong, weak) for r, s in scores.items()}
        rows: dict[str, object] = {}
        for r in scores:
            rows[r] = {"apgr": point[r], "apgr_ci95": np.percentile(boot[r], [2.5, 97.5]).tolist()}
        for r in others:
            low, high = np.percentile(boot[router] - boot[r], [2.5, 97.5])
            rows[f"gain over {r}"] = {"apgr": point[router] - point[r], "apgr_ci95": [low, high]}
            print(
                f"{name}: {router} {point[router]:.4f} - {r} {point[r]:.4f} = "
                f"{point[router] - point[r]:+.4f} [{low:+.3f}, {high:+.3f}]",
                flush=True,
            )
        report[name] = rows
    Path(folder, "gains.json").write_text(json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
