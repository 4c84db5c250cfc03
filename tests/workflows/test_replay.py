"""``lmroute replay``: a schedule whose mix shifts, held by the server's control code, reported per window."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from _fake_embedder import EmbeddingLengthRouter, HashEmbedder

from lmroute.cli import main
from lmroute.control.hub import ControlHub
from lmroute.control.taps import EmbeddingSummaries
from lmroute.exceptions import WriteError
from lmroute.routing_names import parse_model_name
from lmroute.workflows.replay import run_replay
from lmroute.workflows.replay_mix import Traffic


def write_prompts(path, low, high, n, seed):
    lengths = np.random.default_rng(seed).integers(low, high, size=n)
    path.write_text("".join("x" * int(k) + "\n" for k in lengths))
    return str(path)


@pytest.fixture
def schedule(tmp_path):
    """Short prompts, then long ones: the length router's scores jump at request 1,000."""
    pools = {
        "short": [{"prompts": write_prompts(tmp_path / "short.txt", 20, 800, 2000, 1)}],
        "long": [{"prompts": write_prompts(tmp_path / "long.txt", 600, 5000, 2000, 2)}],
    }
    body = {
        "seed": 3,
        "pools": pools,
        "calibration": {"n": 300, "mix": {"short": 1}},
        "segments": [{"n": 1000, "mix": {"short": 1}}, {"n": 1000, "mix": {"long": 1}}],
    }
    path = tmp_path / "schedule.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_replay_holds_the_share_where_the_static_threshold_drifts(schedule, tmp_path, capsys):
    out, plot = tmp_path / "replay.json", tmp_path / "replay.png"
    args = ["replay", "--model", "router-length-share-0.3", "--schedule", str(schedule), "--window", "250"]
    assert main([*args, "--json", str(out), "--plot", str(plot), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "router-length-share-0.3: 2,000 requests" in printed and "largest deviation" in printed
    report = json.loads(out.read_text())
    assert report["shifts"] == [1000] and len(report["windows"]) == 8
    assert report["max_deviation"] < 0.05  # every window after the first
    assert report["static_max_deviation"] > 0.3  # the calibrated threshold sends most long prompts strong
    [alarm] = report["alarms"]
    assert 1000 <= alarm["at"] < 1300
    assert plot.stat().st_size > 10_000
    assert report["quality"] is None  # plain prompts: no outcomes known


def test_replay_continues_from_a_saved_state(schedule, tmp_path):
    state = tmp_path / "state.json"
    args = ["replay", "--model", "router-length-share-0.3", "--schedule", str(schedule), "--quiet"]
    assert main([*args, "--state", str(state), "--json", str(tmp_path / "a.json")]) == 0
    saved = json.loads(state.read_text())
    assert saved["controllers"][0]["controller"]["decisions"] == 2000
    assert main([*args, "--state", str(state), "--json", str(tmp_path / "b.json")]) == 0
    assert json.loads(state.read_text())["controllers"][0]["controller"]["decisions"] == 4000


def test_a_failing_state_save_loses_no_report(schedule, tmp_path, monkeypatch, capsys):
    # The state was saved before the report was printed: a full disk at the end lost the whole replay's.
    def full(path, state):
        raise WriteError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr("lmroute.control.hub.write_state", full)
    out = tmp_path / "replay.json"
    args = ["replay", "--model", "router-length-share-0.3", "--schedule", str(schedule), "--quiet"]
    assert main([*args, "--state", str(tmp_path / "state.json"), "--json", str(out)]) == 1
    captured = capsys.readouterr()
    assert "router-length-share-0.3: 2,000 requests" in captured.out
    assert json.loads(out.read_text())["shifts"] == [1000]
    assert "No space left on device" in captured.err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "router-length-share-2"], "outside [0, 1]"),
        (["--model", "router-length-spend-3"], "spend target needs both models' prices: give --config"),
        (["--model", "router-length-share-0.3", "--window", "0"], "--window must be at least 1"),
        (["--model", "router-length-share-0.3", "--router", "mf"], "--model names router 'length'"),
        (["--model", "router-length-share-0.3", "--seed", "-1"], "--seed must be 0 or more, got -1"),
    ],
)
def test_replay_errors_are_one_line(schedule, capsys, extra, message):
    assert main(["replay", "--schedule", str(schedule), "--quiet", *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmroute: error:") and message in err and "\n" not in err


def test_a_bad_schedule_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("pools: {a: [{prompts: x.txt}]}\nsegments: [{n: 10, mix: {b: 1}}]\n")
    assert main(["replay", "--model", "router-length-share-0.3", "--schedule", str(path)]) == 1
    err = capsys.readouterr().err
    assert "invalid schedule" in err and "the pools are a" in err


def test_a_negative_seed_in_a_schedule_is_one_line(tmp_path, capsys):
    # numpy's generator refused it after the pools were loaded: a ValueError traceback
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is 2 + 2?\nWrite a poem.\n")
    path = tmp_path / "bad.yaml"
    body = {"seed": -1, "pools": {"a": [{"prompts": str(prompts)}]}, "segments": [{"n": 9, "mix": {"a": 1}}]}
    path.write_text(yaml.safe_dump(body))
    assert main(["replay", "--model", "router-length-share-0.3", "--schedule", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmroute: error: invalid schedule") and err.count("\n") == 1
    assert "seed: Input should be greater than or equal to 0" in err


@pytest.mark.parametrize("weight", [".nan", ".inf"])
def test_a_mix_weight_that_is_no_finite_number_is_one_line(tmp_path, capsys, weight):
    # it passed the weight checks and failed in the drawing: "Probabilities contain NaN" (a traceback)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is 2 + 2?\nWrite a poem.\n")
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"pools: {{a: [{{prompts: {prompts}}}], b: [{{prompts: {prompts}}}]}}\n"
        f"segments: [{{n: 10, mix: {{a: 1, b: {weight}}}}}]\n"
    )
    assert main(["replay", "--model", "router-length-share-0.3", "--schedule", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmroute: error: invalid schedule") and err.count("\n") == 1
    assert "segments.0.mix.b: Input should be a finite number" in err


def test_a_seed_with_a_prompt_file_is_refused(tmp_path, capsys):
    # taken and ignored: the prompts were replayed in their order whatever the seed
    prompts = tmp_path / "prompts.txt"
    write_prompts(prompts, 10, 2000, 50, 4)
    args = ["replay", "--model", "router-length-share-0.5", "--prompts", str(prompts), "--seed", "3"]
    assert main(args) == 1
    assert capsys.readouterr().err == (
        "lmroute: error: --seed draws a --schedule's traffic; --prompts are replayed in their file's order\n"
    )


def test_a_replay_shorter_than_one_window_reports_it(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    write_prompts(prompts, 10, 2000, 50, 4)
    assert main(["replay", "--model", "router-length-share-0.5", "--prompts", str(prompts), "--quiet"]) == 0
    assert "one window only" in capsys.readouterr().out


def test_the_state_file_of_a_config_is_left_to_its_server(schedule, tmp_path):
    # A replay with a server's config restored that server's state file and overwrote it with the
    # replay's made-up traffic; only --state names the replay's own.
    state = tmp_path / "server-state.json"
    args = ["replay", "--model", "router-length-share-0.3", "--schedule", str(schedule), "--quiet"]
    assert main([*args, "--state", str(state)]) == 0
    before = state.read_bytes()
    config = tmp_path / "serve.yaml"
    url = "http://127.0.0.1:9/v1"
    config.write_text(
        f"strong: {{base_url: '{url}', model: s}}\nweak: {{base_url: '{url}', model: w}}\n"
        f"control: {{state_file: {state}, window: 300}}\n"
    )
    assert main([*args, "--config", str(config), "--json", str(tmp_path / "r.json")]) == 0
    assert state.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if "state" in p.name) == ["server-state.json"]


def test_a_fixed_threshold_is_replayed_as_shares_without_a_target(schedule, tmp_path, capsys):
    # Its threshold was read as a target: "target $  0.500", a "static threshold" calibrated to send
    # half the sample strong, and a deviation of each window's share from 0.5 in dollars.
    out, plot = tmp_path / "replay.json", tmp_path / "replay.png"
    args = ["replay", "--model", "router-length-0.7", "--schedule", str(schedule), "--window", "500"]
    assert main([*args, "--json", str(out), "--plot", str(plot), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "router-length-0.7: 2,000 requests, a fixed threshold, shifts at 1000" in printed
    assert "$" not in printed and "deviation" not in printed and "%" in printed
    report = json.loads(out.read_text())
    assert report["target"] is None and report["static_threshold"] is None
    assert report["max_deviation"] is None and report["static_max_deviation"] is None
    assert {w["threshold_mean"] for w in report["windows"]} == {0.7}
    assert plot.stat().st_size > 10_000


def test_a_missing_calibration_file_of_the_config_is_named(tmp_path, capsys):
    # "lmroute: error: missing.txt does not exist": a file the command line never named
    prompts = tmp_path / "prompts.txt"
    write_prompts(prompts, 10, 2000, 50, 4)
    config = tmp_path / "serve.yaml"
    url = "http://127.0.0.1:9/v1"
    config.write_text(
        f"strong: {{base_url: '{url}', model: s}}\nweak: {{base_url: '{url}', model: w}}\n"
        f"control: {{calibration_prompts: {tmp_path / 'missing.txt'}}}\n"
    )
    args = ["replay", "--model", "router-length-share-0.5", "--prompts", str(prompts), "--quiet"]
    assert main([*args, "--config", str(config)]) == 1
    err = capsys.readouterr().err
    missing = tmp_path / "missing.txt"
    assert err == f"lmroute: error: control.calibration_prompts in {config}: {missing} does not exist\n"


def test_a_plot_named_without_a_suffix_is_checked_as_the_png_it_writes(tmp_path, capsys):
    # --json r.png --plot r wrote the report to r.png and then the plot over it (matplotlib adds .png)
    prompts = tmp_path / "prompts.txt"
    write_prompts(prompts, 10, 2000, 50, 4)
    base = ["replay", "--model", "router-length-share-0.5", "--prompts", str(prompts), "--quiet"]
    assert main([*base, "--json", str(tmp_path / "r.png"), "--plot", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "--json and --plot both name" in err and "r.png" in err
    assert not (tmp_path / "r.png").exists()
    assert main([*base, "--json", str(tmp_path / "r"), "--plot", str(tmp_path / "r")]) == 0
    assert "windows" in json.loads((tmp_path / "r").read_text())
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_a_prompt_repeated_within_a_scoring_batch_keeps_its_embedding_summary():
    # A batch embeds a repeated prompt once; its summary was taken by the first copy and every later
    # copy reached drift detection without one (after an alarm, the new reference then watched the
    # scores alone), where the server gives each request its own.
    summaries = EmbeddingSummaries()
    tapped = summaries.tap(HashEmbedder())

    class Recording(ControlHub):
        def decide(self, spec, score, *, summary=None, **options):
            given.append(summary)
            return super().decide(spec, score, summary=summary, **options)

    given: list[np.ndarray | None] = []
    prompts = ["hello", "what is 2 + 2?", "hello", "hello", "write a poem"]
    traffic = Traffic(prompts, ["a"] * 5, np.zeros(5, dtype=int), np.full((5, 2), np.nan))
    spec = parse_model_name("router-length-share-0.3")
    run_replay(traffic, spec=spec, router=EmbeddingLengthRouter(tapped), hub=Recording(), summaries=summaries)
    assert len(given) == 5 and all(s is not None for s in given)
    assert np.array_equal(given[0], given[3])


def test_a_pool_file_is_found_in_the_data_folder_of_the_environment(tmp_path, monkeypatch, capsys):
    # A relative prompts: path was looked up in --data-dir only: with $LMROUTE_DATA_DIR (which found
    # the battles of the same schedule) it was "arena-hard/questions.jsonl does not exist".
    data = tmp_path / "data"
    (data / "arena-hard").mkdir(parents=True)
    write_prompts(data / "arena-hard" / "q.txt", 10, 900, 40, 5)
    path = tmp_path / "schedule.yaml"
    body = {"pools": {"a": [{"prompts": "arena-hard/q.txt"}]}, "segments": [{"n": 30, "mix": {"a": 1}}]}
    path.write_text(yaml.safe_dump(body))
    monkeypatch.setenv("LMROUTE_DATA_DIR", str(data))
    monkeypatch.chdir(tmp_path)
    assert main(["replay", "--model", "router-length-share-0.3", "--schedule", str(path), "--quiet"]) == 0
    assert "router-length-share-0.3: 30 requests" in capsys.readouterr().out


def test_outputs_never_replace_a_file_the_config_or_the_schedule_names(schedule, tmp_path, capsys):
    # --state naming the config's calibration prompts (or a pool's file) moved it aside as a damaged
    # state file and saved the state in its place; --json wrote over it.
    calibration = tmp_path / "calibration.txt"
    write_prompts(calibration, 10, 900, 30, 6)
    config = tmp_path / "serve.yaml"
    url = "http://127.0.0.1:9/v1"
    config.write_text(
        f"strong: {{base_url: '{url}', model: s}}\nweak: {{base_url: '{url}', model: w}}\n"
        f"control: {{calibration_prompts: {calibration}}}\n"
    )
    before = {p: p.read_bytes() for p in (calibration, tmp_path / "short.txt")}
    base = ["replay", "--model", "router-length-share-0.3", "--quiet"]
    runs = [
        (["--prompts", str(tmp_path / "short.txt"), "--config", str(config), "--state"], calibration),
        (["--schedule", str(schedule), "--json"], tmp_path / "short.txt"),
    ]
    for options, named in runs:
        assert main([*base, *options, str(named)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("lmroute: error: --") and f"is the input file {named}" in err
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []


def test_a_draw_too_large_to_hold_is_one_line(tmp_path, capsys):
    # numpy's MemoryError traceback ("Unable to allocate 745. GiB") after the pools were loaded
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is 2 + 2?\nWrite a poem.\n")
    path = tmp_path / "huge.yaml"
    body = {"pools": {"a": [{"prompts": str(prompts)}]}, "segments": [{"n": 10**11, "mix": {"a": 1}}]}
    path.write_text(yaml.safe_dump(body))
    assert main(["replay", "--model", "router-length-share-0.3", "--schedule", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmroute: error: invalid schedule") and err.count("\n") == 1
    assert "segments.0.n: Input should be less than or equal to 10000000" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"strong_model": "gpt-4"}, "a prompts: source carries no outcomes"),
        ({"quality_scale": 10}, "quality_scale: divides the scores of a benchmark: source"),
    ],
)
def test_a_pool_option_its_source_would_ignore_is_one_line(tmp_path, capsys, extra, message):
    # Taken and ignored: the pool's outcomes stayed unknown (or unscaled) without a word.
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is 2 + 2?\nWrite a poem.\n")
    path = tmp_path / "schedule.yaml"
    source = {"prompts": str(prompts), **extra}
    path.write_text(yaml.safe_dump({"pools": {"a": [source]}, "segments": [{"n": 5, "mix": {"a": 1}}]}))
    assert main(["replay", "--model", "router-length-share-0.3", "--schedule", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmroute: error: invalid schedule") and err.count("\n") == 1 and message in err
