"""Leave-one-source-out with an mf that also learns each prompt's difficulty (answer-key battles).

    python docs/results/domain-transfer/answer_key.py key|plain FILE.yaml OUT ../shared/data

Pairwise battles cannot teach a prompt's difficulty: it cancels in every pair. On correctness
benchmarks it matters for routing, since the strong model gains only where the weak one is wrong and
it is right. With ``key``, every golden-label source whose scores are all 0 or 1 also gets one
battle per (prompt, model) against a pseudo-model, the answer key, that wins when the model is
wrong; mf then learns P(correct) = sigmoid(logit(model) - logit(key)), and a prompt's score is
``(1 + P(strong correct) - P(weak correct)) / 2``, the expected gain of asking the strong model.
``plain`` runs the same file unchanged (the paired baseline). The file is cut to its mf router and
its eight sources (no few-shot variants, no baselines, 200 bootstrap samples), written to
``OUT/experiment.yaml`` and run as ``docs/results/domain-transfer/run.py`` runs it (results.md,
results.json, scores.npz in OUT). The patch is local to this script: the library is not changed.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import yaml

import lmroute.data.gold as gold
from lmroute.data.battles import Battle
from lmroute.routers.mf import MFRouter

KEY = "(answer key)"
_battles_from_scores = gold.battles_from_scores
_score = MFRouter._score


def _with_key_battles(prompts, scores, **options):
    """The golden-label battles, plus the answer key's on a correctness table."""
    battles = _battles_from_scores(prompts, scores, **options)
    table = np.stack([np.asarray(v, dtype=np.float64) for v in scores.values()])
    if not np.isin(table[np.isfinite(table)], (0.0, 1.0)).all():
        return battles  # graded scores (MT-Bench) have no answer key
    source = options.get("source", "gold")
    for model in options.get("models") or sorted(scores):
        for prompt, value in zip(prompts, np.asarray(scores[model], dtype=np.float64).tolist(), strict=True):
            if np.isfinite(value):
                battles.append(
                    Battle(prompt, model, KEY, "model_a" if value >= 1 else "model_b", source, 1.0)
                )
    return battles


def _expected_gain(self: MFRouter, prompts: list[str]) -> np.ndarray:
    if KEY not in self.models:
        return _score(self, prompts)
    strong, weak = self._check_pair(self.models)
    logits = self.model_logits(prompts, np.array([strong, weak, self.models.index(KEY)]))
    correct = 1.0 / (1.0 + np.exp(-(logits[:, :2] - logits[:, 2:])))
    return 0.5 * (1.0 + correct[:, 0] - correct[:, 1])


if __name__ == "__main__":
    mode, config, out, data_dir = sys.argv[1:5]
    if mode == "key":
        gold.battles_from_scores = _with_key_battles
        MFRouter._score = _expected_gain
    elif mode != "plain":
        raise SystemExit("mode must be key or plain")
    experiment = yaml.safe_load(Path(config).read_text())
    experiment["routers"] = [r for r in experiment["routers"] if r["name"] == "mf"]
    experiment["held_out"] = [h for h in experiment["held_out"] if "shots" not in h]
    experiment |= {"baselines": [], "bootstrap": 200}
    Path(out).mkdir(parents=True, exist_ok=True)
    cut = Path(out) / "experiment.yaml"
    cut.write_text(yaml.safe_dump(experiment, sort_keys=False))
    sys.argv = ["run.py", str(cut), out, data_dir]
    runpy.run_path(str(Path(__file__).with_name("run.py")), run_name="__main__")
