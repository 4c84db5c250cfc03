"""What the plots draw: every point the evaluation holds lands inside the axes."""

from __future__ import annotations

import numpy as np
import pytest

from lmroute.evaluation import plots
from lmroute.evaluation.routing import evaluate_choices

pytest.importorskip("matplotlib")


def test_a_free_model_is_drawn_on_the_cost_quality_plot(tmp_path, monkeypatch):
    # A model priced 0 (self-hosted) sat at cost 0 on a log axis: it, the start of the mixing
    # baseline and every router point at its cost were left off the plot without a word.
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 2, size=(40, 3)).astype(float)
    costs = np.tile([0.0, 1.0, 10.0], (40, 1))
    ev = evaluate_choices(["free", "mid", "dear"], scores, costs, knobs=20)
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, plt, path: drawn.append(fig) or path)
    plots.plot_cost_quality(ev, tmp_path / "p.png")
    ax = drawn[0].axes[0]
    shown = []
    for line in ax.get_lines():
        shown.append(np.asarray(line.get_xydata(), dtype=float))
    for collection in ax.collections:
        shown.append(np.asarray(collection.get_offsets(), dtype=float))
    points = np.concatenate(shown)
    assert (points[:, 0] == 0).any()
    xy = ax.transData.transform(points)
    box = ax.get_window_extent()
    assert np.isfinite(xy).all()
    assert (xy[:, 0] >= box.x0 - 1e-6).all() and (xy[:, 0] <= box.x1 + 1e-6).all()
