"""What the plots draw: every point the evaluation holds lands inside the axes."""

from __future__ import annotations

import os

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


def test_a_plot_that_fails_part_way_leaves_the_earlier_file(tmp_path, monkeypatch):
    # savefig wrote straight to the file: a full disk left a broken PNG in place of the earlier plot.
    import errno

    from matplotlib.figure import Figure

    from lmroute.exceptions import WriteError

    def full_disk(self, target, **kwargs):
        if isinstance(target, (str, bytes, os.PathLike)):
            with open(target, "wb") as f:
                f.write(b"\x89PNG half")
        else:
            target.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    path = tmp_path / "p.png"
    path.write_bytes(b"the earlier plot")
    ev = evaluate_choices(["a", "b"], np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[2.0, 1.0], [2.0, 1.0]]))
    monkeypatch.setattr(Figure, "savefig", full_disk)
    with pytest.raises(WriteError, match="No space left on device"):
        plots.plot_cost_quality(ev, path)
    assert path.read_bytes() == b"the earlier plot"
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]
