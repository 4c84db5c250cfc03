"""Leave-one-source-out of mf trained on the sources that a single-source run says transfer.

    python docs/results/domain-transfer/selected.py OUT ../shared/data

Reads the single-source matrix (``docs/results/source-transfer/results.json``: mf trained on each
source alone, evaluated on every other one). For each held-out source H, a training source S is kept
when its router's mean APGR over the sources other than H beats ``random`` (0.5); H's own column is
never read for H's choice. The rule was fixed before the matrix was seen. Two runs of
``experiments/source-transfer.yaml``'s eight sources and mf options under leave-one-source-out, as
``answer_key.py plain`` runs them (mf alone, one fit, 200 bootstrap samples): ``OUT/all/`` trains on
every other source, ``OUT/selected/`` on the kept ones only; ``OUT/summary.md`` lists both and what
was left out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from sweep import run_plain

ROOT = Path(__file__).resolve().parents[3]
EXPERIMENT = ROOT / "experiments" / "source-transfer.yaml"
MATRIX = ROOT / "docs" / "results" / "source-transfer" / "results.json"


def dropped_sources(matrix: dict[str, dict[str, float]], held: str) -> list[str]:
    """The sources whose single-source router does not beat random on the sources other than ``held``."""
    out = []
    for source, row in matrix.items():
        others = [apgr for target, apgr in row.items() if target != held]
        if source != held and sum(others) / len(others) <= 0.5:
            out.append(source)
    return out


def main(out: str, data_dir: str) -> None:
    (matrix,) = json.loads(MATRIX.read_text())["single_source"]["apgr"].values()
    base = yaml.safe_load(EXPERIMENT.read_text())
    train_of = {h["name"]: h["train"] for h in base["held_out"]}
    lines = ["| mf, one fit | " + " | ".join(train_of) + " | mean |", "|---" * (len(train_of) + 2) + "|"]
    left_out = {}
    for variant in ("all", "selected"):
        experiment = yaml.safe_load(EXPERIMENT.read_text())
        experiment["protocols"] = ["leave-one-source-out"]
        for held in experiment["held_out"]:
            held.pop("train_pair", None)
            if variant == "selected":
                left_out[held["name"]] = dropped_sources(matrix, held["name"])
                held["train"] = held["train"] + [s for d in left_out[held["name"]] for s in train_of[d]]
        folder = Path(out) / variant
        folder.mkdir(parents=True, exist_ok=True)
        apgr = run_plain(experiment, folder, data_dir)
        mean = sum(apgr.values()) / len(apgr)
        cells_md = " | ".join(f"{apgr[n]:.3f}" for n in train_of)
        lines.append(f"| {variant} | {cells_md} | **{mean:.4f}** |")
        print(lines[-1], flush=True)
    lines += ["", "Left out per held-out source (selected): " + json.dumps(left_out)]
    (Path(out) / "summary.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
