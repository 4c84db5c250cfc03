"""Would word features find MMLU-Pro's topics better than MiniLM, and would that reach the bar?

    python docs/results/n-models-signal/lexical.py ../shared/data docs/results/n-models-signal

The ``category`` probe of ``probe.py`` (each model's mean in the prompt's exact MMLU-Pro category)
is the only predictor that reached the best single model's quality at <= 50% of its cost on
MMLU-Pro; MiniLM recovers the category for 83% of prompts, and that already drops the saving to 32%.
Topic words ("mol", "enthalpy", "integral") might recover it better. On the same 10 folds,
candidates, prices and lambda sweep as ``probe.py``, with kernel ridge regression (linear kernel,
closed form per fold) on three feature sets: hashed word unigrams and bigrams (2^15 buckets,
log counts, idf, unit length), MiniLM (the experiment's mf features), and both (kernels averaged),
at ridge 0.3, 1 and 3:

* ``category``: the category the ridge scores highest (one-vs-rest on one-hot labels), then each
  model's smoothed mean in it, as ``probe.py``'s ``category``; its accuracy is printed;
* ``ridge``: each model's P(correct) regressed on the features directly (centred, clipped to [0, 1]).

Writes ``mmlu-pro-lexical.json`` (AIQ, the hull's, the saving at the best model's quality, the
category accuracy) and prints one line per cell.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import zlib
from pathlib import Path

import numpy as np
from probe import _embedder_features, setup

from lmroute.evaluation.routing import evaluate_choices

FILE = "mmlu-pro/outcomes.jsonl"
BUCKETS = 1 << 15
RIDGES = (0.3, 1.0, 3.0)
_TOKEN = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")


def word_features(prompts: list[str]) -> np.ndarray:
    """Hashed unigram and bigram counts, log-scaled, idf-weighted, unit length."""
    counts = np.zeros((len(prompts), BUCKETS), dtype=np.float32)
    for row, prompt in enumerate(prompts):
        tokens = _TOKEN.findall(prompt.lower())
        grams = tokens + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]
        np.add.at(counts[row], [zlib.crc32(g.encode()) % BUCKETS for g in grams], 1)
    x = np.log1p(counts)
    x *= np.log((1 + len(x)) / (1 + (x > 0).sum(0))) + 1
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-9)


def main(data_dir: str, out: str) -> None:
    config, _, _, name, models, prompts, scores, costs, splits, categories = setup(data_dir, FILE)
    words = word_features(prompts).astype(np.float64)
    minilm = _embedder_features(prompts, models, config)
    kernels = {"words": words @ words.T, "minilm": minilm @ minilm.T}
    kernels["both"] = (kernels["words"] + kernels["minilm"]) / 2
    k = int(categories.max()) + 1
    results = {}
    for features, kernel in kernels.items():
        for ridge in RIDGES:
            by_category, direct = np.full(scores.shape, np.nan), np.full(scores.shape, np.nan)
            right = 0
            for train, held in splits:
                overall = scores[train].mean(axis=0)
                targets = np.hstack([np.eye(k)[categories[train]], scores[train] - overall])
                solved = np.linalg.solve(kernel[np.ix_(train, train)] + ridge * np.eye(len(train)), targets)
                fitted = kernel[np.ix_(held, train)] @ solved
                means = np.stack(
                    [
                        (scores[train][categories[train] == c].sum(0) + 20 * overall)
                        / ((categories[train] == c).sum() + 20)
                        for c in range(k)
                    ]
                )
                guess = fitted[:, :k].argmax(axis=1)
                right += int((guess == categories[held]).sum())
                by_category[held] = means[guess]
                direct[held] = np.clip(fitted[:, k:] + overall, 0, 1)
            accuracy = right / len(prompts)
            for probe, predicted in (("category", by_category), ("ridge", direct)):
                ev = evaluate_choices(
                    models, scores, costs, {probe: (predicted, costs)}, knobs=config.knobs, benchmark=name
                )
                curve = ev.curves[0]
                label = f"{features} ridge={ridge} {probe}"
                saving = float(curve.saving) if np.isfinite(curve.saving) else None
                results[label] = {
                    "aiq": curve.aiq,
                    "hull_aiq": ev.baseline.aiq,
                    "saving": saving,
                    "category_accuracy": accuracy,
                }
                reach = "never" if saving is None else f"{saving:.0%}"
                print(
                    f"{label}: AIQ {curve.aiq:.4f} (hull {ev.baseline.aiq:.4f}), saving {reach}, "
                    f"category accuracy {accuracy:.3f}",
                    flush=True,
                )
    path = Path(out) / "mmlu-pro-lexical.json"
    path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
