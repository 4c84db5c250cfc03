"""Leave-one-source-out of mf at today's shipped settings with one option changed at a time.

    python docs/results/domain-transfer/sweep.py OUT ../shared/data

Does a more (or less) regularised mf transfer better to an unseen source? Each variant is
``experiments/domain-transfer-today.yaml`` with one mf option overridden, run as
``answer_key.py plain`` runs it (mf alone, one fit, eight sources, 200 bootstrap samples) into
``OUT/<variant>/``; ``OUT/summary.md`` lists each variant's mean beside the unchanged settings'.
The variants were fixed before the run: weight decay 1e-3 / 1e-4 / 0 (shipped 1e-5), dimension 16
(128), 3 epochs (10), a hidden layer of 128 (none), input noise 0.3 (0.1), no length coordinate.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
EXPERIMENT = HERE.parents[2] / "experiments" / "domain-transfer-today.yaml"
VARIANTS: dict[str, dict[str, object]] = {
    "shipped": {},
    "weight_decay=1e-3": {"weight_decay": 1e-3},
    "weight_decay=1e-4": {"weight_decay": 1e-4},
    "weight_decay=0": {"weight_decay": 0.0},
    "dim=16": {"dim": 16},
    "epochs=3": {"epochs": 3},
    "hidden=128": {"hidden": 128},
    "noise=0.3": {"noise": 0.3},
    "length_feature=false": {"length_feature": False},
}


def main(out: str, data_dir: str) -> None:
    sources = [h["name"] for h in yaml.safe_load(EXPERIMENT.read_text())["held_out"] if "shots" not in h]
    lines = ["| mf variant | " + " | ".join(sources) + " | mean |"]
    lines.append("|---" * (lines[0].count("|") - 1) + "|")
    for name, update in VARIANTS.items():
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        experiment = yaml.safe_load(EXPERIMENT.read_text())
        mf = next(r for r in experiment["routers"] if r["name"] == "mf")
        mf["options"] = {**mf["options"], **update}
        apgr = run_plain(experiment, folder, data_dir)
        mean = sum(apgr.values()) / len(apgr)
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in apgr.values()) + f" | **{mean:.4f}** |")
        print(lines[-1], flush=True)
    (Path(out) / "summary.md").write_text("\n".join(lines) + "\n")


def run_plain(experiment: dict, folder: Path, data_dir: str) -> dict[str, float]:
    """Run ``experiment`` as ``answer_key.py plain`` does into ``folder`` (results.md and
    results.json kept, plots and scores dropped); the mf APGR per held-out source, in its order."""
    variant = folder / "variant.yaml"
    variant.write_text(yaml.safe_dump(experiment, sort_keys=False))
    command = [sys.executable, str(HERE / "answer_key.py"), "plain", str(variant), str(folder), data_dir]
    subprocess.run(command, check=True)
    for litter in [*folder.glob("*.png"), folder / "scores.npz", variant]:
        litter.unlink(missing_ok=True)
    cells = json.loads((folder / "results.json").read_text())["cells"]
    cells = [c for c in cells if c["protocol"] == "leave-one-source-out"]
    return {c["benchmark"]: c["apgr"] for c in cells if c["router"].startswith("mf")}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
