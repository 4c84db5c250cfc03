"""``lmroute experiment`` end to end on small files: a bad experiment file is one error line naming
the file and the key, before any work, and leaves the results already in the output folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmroute.cli import main


def _outcomes(path: Path, topic: str, n: int) -> Path:
    """A file of three models' outcomes on ``n`` prompts of ``topic``."""
    rows = [
        {
            "prompt": f"{topic} question {i}: " + "word " * (i % 9),
            "scores": {"big": int(i % 3 > 0), "mid": i % 2, "small": int(i % 5 == 0)},
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Outcome files alpha and beta (three models), two (two models), and an output folder
    holding a run's results."""
    _outcomes(tmp_path / "alpha.jsonl", "alpha", 20)
    _outcomes(tmp_path / "beta.jsonl", "beta", 20)
    rows = [
        {"prompt": f"two question {i}", "scores": {"big": i % 2, "small": int(i % 3 == 0)}} for i in range(12)
    ]
    (tmp_path / "two.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.md").write_text("good results\n")
    (out / "results.json").write_text('{"good": true}\n')
    return tmp_path


def _run(argv: list, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _held(source: str, folder: Path, **extra) -> dict:
    path = str(folder / f"{source}.jsonl")
    return {
        "name": source,
        "benchmark": path,
        "strong_model": "big",
        "weak_model": "small",
        "train": [f"gold:{path}"],
        **extra,
    }


def _experiment(folder: Path, **settings) -> dict:
    return {
        "sources": [f"gold:{folder / 'alpha.jsonl'}", f"gold:{folder / 'beta.jsonl'}"],
        "routers": [{"name": "length", "label": "by length"}],
        "baselines": ["random"],
        "decontaminate": False,
        "bootstrap": 5,
        **settings,
    }


@pytest.mark.parametrize(
    "settings, needle",
    [
        ({"protocols": ["zero-shot", "gold-1500", "zero-shot"]}, "protocols: zero-shot is given twice"),
        (
            {"protocols": ["conversations"], "route_on": ["last_user", "last_user"]},
            "route_on: last_user is given",
        ),
    ],
)
def test_a_protocol_or_route_on_given_twice_is_refused(folder, capsys, settings, needle):
    # It ran twice (its routers trained twice), and results.md and results.json held it twice.
    config = folder / "exp.yaml"
    config.write_text(json.dumps(_experiment(folder, benchmarks=[str(folder / "two.jsonl")], **settings)))
    code, err = _run(["experiment", config, "--out", folder / "out", "--quiet"], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"lmroute: error: {config}: ") and needle in err
    assert (folder / "out" / "results.md").read_text() == "good results\n"


@pytest.mark.parametrize(
    "settings, needle",
    [
        ({"protocols": []}, "protocols: List should have at least 1 item"),
        ({"protocols": ["zero-shot"], "benchmarks": []}, "protocol zero-shot needs benchmarks"),
        ({"protocols": ["gold-1500"], "benchmarks": []}, "protocol gold-1500 needs benchmarks"),
        ({"protocols": ["conversations"], "route_on": []}, "protocol conversations needs route_on"),
        ({"protocols": ["zero-shot"], "sources": []}, "sources: List should have at least 1 item"),
        (  # no source to train on alone
            {"protocols": ["single-source"], "held_out": "alpha beta"},
            "protocol single-source needs a held_out source with train specs",
        ),
        (  # trained on alpha, and no other source to evaluate it on
            {"protocols": ["single-source"], "held_out": "alpha alpha-3shot"},
            "and another held_out source without shots to evaluate it on",
        ),
    ],
)
def test_an_experiment_that_would_evaluate_nothing_is_refused_and_keeps_the_results(
    folder, capsys, settings, needle
):
    # It ran nothing and wrote an empty results.md and results.json over the folder's results.
    settings.setdefault("benchmarks", [str(folder / "two.jsonl")])
    if settings.get("held_out") == "alpha beta":
        settings["held_out"] = [{**_held(n, folder), "train": []} for n in ("alpha", "beta")]
    elif settings.get("held_out") == "alpha alpha-3shot":
        settings["held_out"] = [_held("alpha", folder), _held("alpha", folder, name="alpha-3shot", shots=3)]
    config = folder / "exp.yaml"
    config.write_text(json.dumps(_experiment(folder, **settings)))
    code, err = _run(["experiment", config, "--out", folder / "out", "--quiet"], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"lmroute: error: {config}: ") and needle in err
    assert (folder / "out" / "results.md").read_text() == "good results\n"
    assert (folder / "out" / "results.json").read_text() == '{"good": true}\n'


@pytest.mark.parametrize(
    "settings, needle",
    [
        ({"protocols": []}, "protocols: List should have at least 1 item"),
        ({"protocols": ["leave-one-source-out"]}, "protocol leave-one-source-out needs two files at least"),
        ({"protocols": ["cross-fit", "cross-fit"]}, "protocols: cross-fit, cross-fit: one is given twice"),
        # found after the first fold's training, or without naming the entry
        ({"models": {"alpha": ["big"]}}, "models.alpha: ['big'] are not two or more different models"),
        ({"models": {"alpha": ["big", "small", "big"]}}, "models.alpha: ['big', 'small', 'big'] are not two"),
    ],
)
def test_n_model_settings_that_evaluate_nothing_run_twice_or_fail_late_are_refused(
    folder, capsys, settings, needle
):
    (folder / "prices.yaml").write_text(
        "".join(
            f"{m}: {{input_per_1m: {p}, output_per_1m: {p}}}\n"
            for m, p in (("big", 3), ("mid", 1), ("small", 0.1))
        )
    )
    config = folder / "n.yaml"
    experiment = {
        "kind": "n-models",
        "files": ["alpha.jsonl"],
        "prices": "prices.yaml",
        "router": {"name": "mf"},
    }
    config.write_text(json.dumps({**experiment, **settings}))
    argv = ["experiment", config, "--out", folder / "out", "--data-dir", folder, "--quiet"]
    code, err = _run(argv, capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"lmroute: error: {config}: ") and needle in err
    assert (folder / "out" / "results.md").read_text() == "good results\n"


def test_a_small_experiment_of_both_source_protocols_writes_its_results(folder, capsys):
    # the settings refused above, given something to evaluate, run
    config = folder / "exp.yaml"
    held = [_held("alpha", folder), _held("beta", folder)]
    config.write_text(
        json.dumps(_experiment(folder, protocols=["leave-one-source-out", "single-source"], held_out=held))
    )
    code, err = _run(["experiment", config, "--out", folder / "out", "--quiet"], capsys)
    assert code == 0, err
    data = json.loads((folder / "out" / "results.json").read_text())
    assert set(data["single_source"]["apgr"]["by length"]) == {"alpha", "beta"}
    assert data["leave_one_source_out"]["summary"]["by length"]["sources"] == 2


def test_a_held_out_source_that_leaves_no_source_to_train_on_is_refused_before_any_training(folder, capsys):
    # Found at beta's turn, after alpha's routers had trained, as "no training sources left for this
    # held-out source": not saying which one.
    alpha = str(folder / "alpha.jsonl")
    held = [
        _held("alpha", folder),
        _held("beta", folder, train=[f"gold:{folder / 'beta.jsonl'}", f"gold:{alpha}"]),
    ]
    config = folder / "exp.yaml"
    config.write_text(json.dumps(_experiment(folder, protocols=["leave-one-source-out"], held_out=held)))
    code, err = _run(["experiment", config, "--out", folder / "out", "--quiet"], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"lmroute: error: {config}: ")
    assert "held_out beta: its train specs (and gold of its benchmark) are every source" in err
    assert (folder / "out" / "results.md").read_text() == "good results\n"


@pytest.mark.parametrize("kind", ["leave-one-source-out", "pair-transfer"])
def test_a_held_out_or_benchmark_file_is_found_in_lmroute_data_dir_as_the_sources_are(
    folder, capsys, monkeypatch, kind
):
    # A relative gold:data/alpha.jsonl was found in $LMROUTE_DATA_DIR, but a held-out source's or a
    # pair-transfer benchmark's data/alpha.jsonl only in --data-dir: "does not exist (nor in data
    # directory None)".
    data = folder / "shared"
    (data / "data").mkdir(parents=True)
    for name in ("alpha", "beta"):
        (folder / f"{name}.jsonl").rename(data / "data" / f"{name}.jsonl")
    monkeypatch.setenv("LMROUTE_DATA_DIR", str(data))
    monkeypatch.chdir(folder)
    if kind == "pair-transfer":
        experiment: dict = {
            "kind": "pair-transfer",
            "benchmarks": [{"file": "data/alpha.jsonl", "pairs": [["big", "small"]]}],
            "routers": [{"router": "length", "label": "by length"}],
            "baselines": ["random"],
            "bootstrap": 5,
        }
    else:
        held = [
            {**_held(n, folder), "benchmark": f"data/{n}.jsonl", "train": [f"gold:data/{n}.jsonl"]}
            for n in ("alpha", "beta")
        ]
        experiment = {
            **_experiment(folder, protocols=[kind], held_out=held),
            "sources": ["gold:data/alpha.jsonl", "gold:data/beta.jsonl"],
        }
    config = folder / "exp.yaml"
    config.write_text(json.dumps(experiment))
    code, err = _run(["experiment", config, "--out", folder / "out", "--quiet"], capsys)
    assert code == 0, err
    assert json.loads((folder / "out" / "results.json").read_text())["config"]
    monkeypatch.delenv("LMROUTE_DATA_DIR")
    code, err = _run(["experiment", config, "--out", folder / "out", "--quiet"], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert "data/alpha.jsonl does not exist; relative paths are also looked up in --data-dir DIR or" in err


def test_experiment_offers_no_data_url_it_would_ignore(folder, capsys):
    # --data-url was accepted and ignored: the public files were downloaded from $LMROUTE_DATA_URL
    # or RouteLLM's GitHub, not the mirror given.
    config = folder / "exp.yaml"
    config.write_text(
        json.dumps(_experiment(folder, benchmarks=[str(folder / "two.jsonl")], protocols=["zero-shot"]))
    )
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                str(a)
                for a in ["experiment", config, "--out", folder / "out", "--data-url", "http://127.0.0.1:9/m"]
            ]
        )
    assert exit_.value.code == 2 and "unrecognized arguments: --data-url" in capsys.readouterr().err
    assert (folder / "out" / "results.md").read_text() == "good results\n"


@pytest.mark.parametrize(
    "kind, router, needle",
    [
        ("n-models", "bert", "router 'bert' scores only its two models"),
        ("n-models", "length", "router 'length' scores only its two models"),
        ("onboarding-curve", "sw_ranking", "router 'sw_ranking' cannot onboard a model"),
    ],
)
def test_a_router_that_cannot_do_an_n_model_experiment_is_refused_before_any_work(
    folder, capsys, kind, router, needle
):
    # Found after the first fold's training (bert: minutes of fine-tuning), after the full and the
    # base router had trained (sw_ranking), or as options the user never gave (length: "strong_model:
    # Extra inputs are not permitted"). The data file is absent: a check made only later reads
    # "does not exist".
    (folder / "prices.yaml").write_text("big: {input_per_1m: 1, output_per_1m: 1}\n")
    config = folder / "n.yaml"
    experiment: dict = {"kind": kind, "prices": "prices.yaml", "router": {"name": router}}
    if kind == "n-models":
        experiment["files"] = ["absent.jsonl", "beta.jsonl"]
    else:
        experiment |= {"file": "absent.jsonl", "model": "mid", "probe_sizes": [5]}
    config.write_text(json.dumps(experiment))
    argv = ["experiment", config, "--out", folder / "out", "--data-dir", folder, "--quiet"]
    code, err = _run(argv, capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith("lmroute: error: ") and needle in err


def test_a_train_pair_of_one_model_is_refused_before_any_training(folder, capsys):
    # The router refused it only at single-source's turn, after leave-one-source-out had trained.
    held = [_held("alpha", folder), _held("beta", folder, train_pair=["big", "big"])]
    config = folder / "exp.yaml"
    protocols = ["leave-one-source-out", "single-source"]
    config.write_text(json.dumps(_experiment(folder, protocols=protocols, held_out=held)))
    code, err = _run(["experiment", config, "--out", folder / "out", "--quiet"], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"lmroute: error: {config}: held_out.1: train_pair: both models are 'big'")


@pytest.mark.parametrize("models", [["big"], ["big", "mid"]])
def test_an_onboarding_curve_whose_base_router_would_know_one_model_is_refused_before_training(
    folder, capsys, models
):
    # It failed after the full router had trained: "golden labels need at least two models".
    (folder / "prices.yaml").write_text(
        "".join(f"{m}: {{input_per_1m: {p}, output_per_1m: {p}}}\n" for m, p in (("big", 3), ("mid", 1)))
    )
    config = folder / "curve.yaml"
    curve = {"kind": "onboarding-curve", "file": "alpha.jsonl", "model": "mid", "models": models}
    config.write_text(
        json.dumps({**curve, "prices": "prices.yaml", "router": {"name": "mf"}, "probe_sizes": [5]})
    )
    argv = ["experiment", config, "--out", folder / "out", "--data-dir", folder, "--quiet"]
    code, err = _run(argv, capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert "alpha.jsonl: the base router learns the candidates other than mid (big): give models: two" in err


def test_an_n_model_experiment_that_could_evaluate_no_file_keeps_the_results(folder, capsys):
    # The two files share no model: leave-one-source-out could route neither, and results.md and
    # results.json holding only that replaced the folder's.
    rows = [{"prompt": f"other question {i}", "scores": {"x1": i % 2, "x2": i // 2 % 2}} for i in range(20)]
    (folder / "other.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prices = (("big", 3), ("mid", 1), ("small", 0.1), ("x1", 1), ("x2", 0.5))
    (folder / "prices.yaml").write_text(
        "".join(f"{m}: {{input_per_1m: {p}, output_per_1m: {p}}}\n" for m, p in prices)
    )
    config = folder / "n.yaml"
    experiment = {"kind": "n-models", "files": ["alpha.jsonl", "other.jsonl"], "prices": "prices.yaml"}
    config.write_text(
        json.dumps({**experiment, "router": {"name": "mf"}, "protocols": ["leave-one-source-out"]})
    )
    argv = ["experiment", config, "--out", folder / "out", "--data-dir", folder, "--quiet"]
    code, err = _run(argv, capsys)
    assert code == 1, err
    assert err.splitlines()[-1] == (
        "lmroute: error: nothing could be evaluated: alpha: leave-one-source-out cannot route: the other "
        "files hold 0 of its models (none); other: leave-one-source-out cannot route: the other files "
        "hold 0 of its models (none)"
    )
    assert (folder / "out" / "results.md").read_text() == "good results\n"


def test_a_benchmark_of_equal_mean_quality_fails_before_any_training(folder, capsys):
    # It failed after the benchmarks before it had been run and its own routers trained, as "strong
    # and weak models have equal quality: PGR is undefined", naming no benchmark.
    even = folder / "even.jsonl"
    rows = [{"prompt": f"even question {i}", "scores": {"x": i % 2, "y": (i + 1) % 2}} for i in range(10)]
    even.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = folder / "exp.yaml"
    benchmarks = [str(folder / "two.jsonl"), str(even)]
    config.write_text(json.dumps(_experiment(folder, benchmarks=benchmarks, protocols=["zero-shot"])))
    code, err = _run(["experiment", config, "--out", folder / "out", "--quiet"], capsys)
    assert code == 1 and "[two]" not in err, err
    assert err.splitlines()[-1].startswith(f"lmroute: error: {even}: ")
    assert "have equal mean quality (0.5) on its 10 prompts, so PGR is undefined" in err
    assert (folder / "out" / "results.md").read_text() == "good results\n"


def test_a_negative_seed_is_one_line_before_any_training(folder, capsys):
    # numpy's generators take no negative seed: the bootstrap of the first router's APGR raised
    # numpy's ValueError (a traceback) after that router had trained
    config = folder / "exp.yaml"
    bench = str(folder / "two.jsonl")
    config.write_text(json.dumps(_experiment(folder, protocols=["zero-shot"], benchmarks=[bench], seed=-1)))
    code, err = _run(["experiment", config, "--out", folder / "out", "--quiet"], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"lmroute: error: {config}: ") and "seed: Input should be greater than" in err
    assert (folder / "out" / "results.md").read_text() == "good results\n"


@pytest.mark.parametrize(
    "config_class",
    [
        "lmroute.workflows.n_models:NModelExperimentConfig",
        "lmroute.workflows.onboard_curve:OnboardCurveConfig",
        "lmroute.workflows.pair_transfer:PairTransferConfig",
        "lmroute.workflows.source_transfer:SimilarityVsApgrConfig",
    ],
)
def test_every_experiment_kind_refuses_a_negative_seed(config_class):
    # each seeds numpy's generators (bootstrap intervals, folds), which fail on it with a traceback
    import importlib

    from pydantic import ValidationError

    module, name = config_class.split(":")
    with pytest.raises(ValidationError) as exc:
        getattr(importlib.import_module(module), name).model_validate({"seed": -1})
    assert any(e["loc"] == ("seed",) for e in exc.value.errors())
