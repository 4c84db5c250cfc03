"""Run a leave-one-source-out experiment file one held-out source at a time, writing after each.

    python docs/results/domain-transfer/run.py experiments/domain-transfer.yaml docs/results/domain-transfer \
        ../shared/data

The same run as ``lmroute experiment FILE --out OUT`` (same functions, same results.md/results.json),
except that the results are rewritten after every held-out source (a run stopped part-way keeps
what it finished) and every router's scores per item are kept in ``OUT/scores.npz`` (key
``<source>|<router>``, for benchmark protocols ``<protocol>|<benchmark>|<router>``; stochastic
baselines: their first seed's scores), so that combinations of routers can be evaluated afterwards without
retraining (``ensembles.py``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from lmroute.workflows.experiment import load_experiment_config, run_experiment, write_experiment
from lmroute.workflows.results import ExperimentResult


def main(config_path: str, out: str, data_dir: str) -> None:
    config = load_experiment_config(config_path)
    if not config.held_out:  # benchmark protocols only: one run
        _save(run_experiment(config, data_dir=data_dir, progress=False), out, {})
        return
    groups: dict[tuple[str, tuple[str, ...]], list] = {}
    for held in config.held_out:  # a source and its -Nshot variants share one fit, as in the protocol
        groups.setdefault((held.benchmark, tuple(sorted(held.train))), []).append(held)
    combined = ExperimentResult(config)
    scores: dict[str, np.ndarray] = {}
    for members in groups.values():
        started = time.perf_counter()
        part = run_experiment(
            config.model_copy(update={"held_out": members}), data_dir=data_dir, progress=False
        )
        combined.cells.extend(part.cells)
        combined.evaluations.update(part.evaluations)
        combined.sources.update(part.sources)
        _save(combined, out, scores)
        names = ", ".join(m.name for m in members)
        print(f"[{names}] written after {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


def _save(result: ExperimentResult, out: str, scores: dict[str, np.ndarray]) -> None:
    """Write the run's results and every router's scores (added to ``scores``) to ``out``."""
    for (protocol, source), ev in result.evaluations.items():
        where = source if protocol == "leave-one-source-out" else f"{protocol}|{source}"
        for res in ev.results:
            if res.scores is not None:
                scores[f"{where}|{res.router}"] = np.asarray(res.scores, dtype=np.float64)
    write_experiment(result, out)
    np.savez_compressed(Path(out) / "scores.npz", **scores)


if __name__ == "__main__":
    main(*sys.argv[1:4])
