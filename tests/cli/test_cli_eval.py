"""`lmroute eval` and `lmroute score` end to end through the CLI entry point."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lmroute.cli import main


def test_eval_mt_bench_json_plot_scores(data_dir, tmp_path, capsys):
    out_json, out_png, out_scores = tmp_path / "r.json", tmp_path / "r.png", tmp_path / "s.jsonl"
    code = main(
        [
            "eval",
            "--benchmark",
            "mt-bench",
            "--data-dir",
            str(data_dir),
            "--routers",
            "random",
            "length",
            "--json",
            str(out_json),
            "--plot",
            str(out_png),
            "--save-scores",
            str(out_scores),
            "--quiet",
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "length" in table and "0.5555" in table and "APGR" in table
    report = json.loads(out_json.read_text())
    for name in ("random", "length", "oracle"):
        r = report["routers"][name]
        for key in ("apgr", "cpt20", "cpt50", "cpt80", "strong_quality", "weak_quality", "points"):
            assert key in r
    assert report["routers"]["length"]["apgr"] == pytest.approx(0.5555, abs=1e-3)
    assert len(report["routers"]["length"]["points"]) == 11
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [json.loads(line) for line in out_scores.read_text().splitlines()]
    assert len(rows) == 72 and {"id", "prompt", "length", "random", "oracle"} <= set(rows[0])


def test_plot_names_are_checked_before_the_work_and_the_file_written_is_named(data_dir, tmp_path, capsys):
    report = tmp_path / "r.json"
    report.write_text("an earlier report\n")
    base = ["eval", "--benchmark", "mt-bench", "--data-dir", str(data_dir), "--routers", "length", "--quiet"]
    assert main([*base, "--json", str(report), "--plot", str(tmp_path / "r.xyz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmroute: error: cannot draw a plot to") and err.count("\n") == 1, err
    assert "r.xyz" in err and ".svg" in err
    assert report.read_text() == "an earlier report\n" and not (tmp_path / "r.xyz").exists()
    # matplotlib adds .png to a name without a suffix: the note names that file
    assert main([*base, "--plot", str(tmp_path / "curves")]) == 0
    assert f"wrote {tmp_path / 'curves.png'}\n" in capsys.readouterr().err
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    code = main(["replay", "--model", "router-length-share-0.5", "--prompts", str(report), "--plot", "r.xyz"])
    assert code == 1 and "cannot draw a plot to r.xyz" in capsys.readouterr().err


def test_a_plot_named_without_a_suffix_is_checked_as_the_png_it_writes(tmp_path, capsys):
    # --json r.png --plot r wrote the report to r.png and then the plot over it; --json r --plot r,
    # two files (r and r.png), was refused as one.
    bench = tmp_path / "b.jsonl"
    bench.write_text(
        "".join(json.dumps({"prompt": "x" * i, "scores": {"A": i % 2, "B": 0}}) + "\n" for i in range(1, 7))
    )
    base = ["eval", "--benchmark", str(bench), "--routers", "length", "--quiet"]
    assert main([*base, "--json", str(tmp_path / "r.png"), "--plot", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "--json and --plot both name" in err and "r.png" in err
    assert not (tmp_path / "r.png").exists()
    assert main([*base, "--json", str(tmp_path / "r"), "--plot", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r").read_text())["benchmark"] == "b"
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_custom_file(tmp_path, capsys):
    path = tmp_path / "custom.jsonl"
    path.write_text(
        "".join(
            json.dumps({"prompt": "x" * (i + 1), "scores": {"A": float(i % 3 == 0), "B": 0.0}}) + "\n"
            for i in range(30)
        )
    )
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "eval",
                "--benchmark",
                str(path),
                "--strong-model",
                "A",
                "--weak-model",
                "B",
                "--routers",
                "length",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["strong_model"] == "A" and report["n_prompts"] == 30
    assert set(report["routers"]) == {"length", "oracle"}


def test_eval_without_routers_evaluates_random_and_length_and_routers_given_replace_them(tmp_path):
    path = tmp_path / "custom.jsonl"
    path.write_text(
        "".join(json.dumps({"prompt": "x" * i, "scores": {"A": i % 2, "B": 0}}) + "\n" for i in range(1, 20))
    )
    out = tmp_path / "r.json"
    argv = ["eval", "--benchmark", str(path), "--strong-model", "A", "--weak-model", "B", "--json", str(out)]
    assert main([*argv, "--quiet", "--no-oracle"]) == 0
    assert set(json.loads(out.read_text())["routers"]) == {"random", "length"}
    assert main([*argv, "--quiet", "--no-oracle", "--routers", "length"]) == 0
    assert set(json.loads(out.read_text())["routers"]) == {"length"}


def test_saved_scores_of_random_are_its_seed_0_scores_not_a_mean_of_seeds(tmp_path):
    """The mean of the 10 seeds' scores was written: no router's scores, and re-evaluated, far from
    the APGR of any seed (near-constant scores around 0.5)."""
    path = tmp_path / "custom.jsonl"
    path.write_text(
        "".join(json.dumps({"prompt": f"p{i}", "scores": {"A": i % 2, "B": 0}}) + "\n" for i in range(40))
    )
    saved, scored = tmp_path / "s.jsonl", tmp_path / "score.jsonl"
    argv = [
        "eval",
        "--benchmark",
        str(path),
        "--strong-model",
        "A",
        "--weak-model",
        "B",
        "--routers",
        "random",
    ]
    assert main([*argv, "--quiet", "--save-scores", str(saved)]) == 0
    assert main(["score", "--router", "random", "--input", str(path), "--output", str(scored)]) == 0
    rows = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [r["random"] for r in rows] == [
        json.loads(line)["score"] for line in scored.read_text().splitlines()
    ]


def test_two_outputs_naming_one_file_are_refused_before_the_work(tmp_path, capsys):
    # --save-scores replaced the --json report written just before it, without a word.
    path = tmp_path / "custom.jsonl"
    path.write_text(
        "".join(json.dumps({"prompt": "x" * i, "scores": {"A": i % 2, "B": 0}}) + "\n" for i in range(1, 5))
    )
    out = tmp_path / "out.json"
    argv = ["eval", "--benchmark", str(path), "--routers", "length", "--json", str(out), "--quiet"]
    assert main([*argv, "--save-scores", str(tmp_path / "." / "out.json")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--json and --save-scores both name" in err, err
    assert not out.exists()


def test_eval_json_of_the_exact_protocol_is_strict_json(tmp_path, capsys):
    # The exact curve's all-weak point has threshold infinity: it was written as Infinity, which
    # the console's report view (JSON.parse) could not read.
    path = tmp_path / "custom.jsonl"
    path.write_text(
        "".join(json.dumps({"prompt": "x" * i, "scores": {"A": i % 2, "B": 0}}) + "\n" for i in range(1, 7))
    )
    out = tmp_path / "r.json"
    argv = ["eval", "--benchmark", str(path), "--routers", "length", "--protocol", "exact"]
    assert main([*argv, "--json", str(out), "--quiet"]) == 0

    def refuse(constant):
        raise AssertionError(f"{constant} in the --json file")

    report = json.loads(out.read_text(), parse_constant=refuse)
    first = report["routers"]["length"]["points"][0]
    assert first["strong_share"] == 0 and first["threshold"] is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--routers", "nope"], "unknown router 'nope'"),
        (["--benchmark", "missing.jsonl"], "missing.jsonl is neither in the working directory"),
    ],
)
def test_eval_errors_are_one_line(data_dir, capsys, argv, message):
    base = {"--benchmark": "mt-bench", "--routers": "length"}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        base[flag] = value
    args = ["eval", "--data-dir", str(data_dir), "--quiet"]
    for flag, value in base.items():
        args += [flag, value]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lmroute: error:") and message in err[-1]


def test_a_benchmark_file_is_found_in_the_data_folder_as_a_gold_source_is(tmp_path, monkeypatch, capsys):
    """``--benchmark FILE`` looked in the working directory only, where ``gold:FILE`` and
    ``--exclude-benchmark FILE`` also look in the data folder; a file found nowhere was an "unknown
    benchmark" with no word of where it had been looked for."""
    folder = tmp_path / "data" / "mine"
    folder.mkdir(parents=True)
    items = [
        {"prompt": "short", "scores": {"big": 1, "small": 1}},
        {"prompt": "long " * 40, "scores": {"big": 1, "small": 0}},
    ]
    (folder / "b.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LMROUTE_DATA_DIR", raising=False)
    args = ["eval", "--benchmark", "mine/b.jsonl", "--routers", "length", "--no-oracle", "--quiet"]
    assert main([*args, "--data-dir", str(tmp_path / "data")]) == 0
    assert "length" in capsys.readouterr().out
    # the outputs are checked against the file found there
    saved = str(folder / "b.jsonl")
    assert main([*args, "--data-dir", str(tmp_path / "data"), "--save-scores", saved]) == 1
    assert "is the input file" in capsys.readouterr().err
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmroute: error: benchmark 'mine/b.jsonl': not one of mmlu"), err
    assert "neither in the working directory" in err and "--data-dir DIR" in err


def test_category_and_cost_reach_the_outputs(tmp_path, capsys):
    """Issue 21 item 5: a custom benchmark's category and cost were read and then shown nowhere."""
    bench = tmp_path / "b.jsonl"
    items = [
        {
            "prompt": "short",
            "scores": {"big": 1, "small": 1},
            "category": "chat",
            "cost": {"big": 3, "small": 1},
        },
        {
            "prompt": "a much longer prompt " * 40,
            "scores": {"big": 1, "small": 0},
            "category": "code",
            "cost": {"big": 5, "small": 1},
        },
    ]
    bench.write_text("".join(json.dumps(item) + "\n" for item in items))
    out = tmp_path / "scores.jsonl"
    args = ["eval", "--benchmark", str(bench), "--routers", "length", "--no-oracle", "--quiet"]
    assert (
        main([*args, "--threshold", "0.5", "--json", str(tmp_path / "e.json"), "--save-scores", str(out)])
        == 0
    )
    table = capsys.readouterr().out
    assert "mean cost per item: strong 4, weak 1" in table and "50.00% @0.5, cost 3" in table
    saved = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["category"] for r in saved] == ["chat", "code"]
    assert saved[1]["cost"] == {"big": 5.0, "small": 1.0}
    report = json.loads((tmp_path / "e.json").read_text())
    assert (report["strong_cost"], report["weak_cost"]) == (4.0, 1.0)
    assert (
        report["routers"]["length"]["cost_at_threshold"] == 3.0
    )  # the long prompt strong (5), the short weak (1)


def test_score_command(tmp_path, capsys):
    src = tmp_path / "p.txt"
    src.write_text(
        "hello\nwhat is the integral of x^2 from 0 to 3?\n\n"
    )  # blank lines at the end: no prompts
    out = tmp_path / "o.jsonl"
    assert main(["score", "--router", "length", "--input", str(src), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["hello", "what is the integral of x^2 from 0 to 3?"]
    assert rows[0]["score"] < rows[1]["score"]
    # Issue 21 item 6: output line N answers input line N, so a blank line among prompts is refused
    # (it was dropped, shifting every later answer by one line).
    src.write_text("hello\n\nwhat is the integral of x^2 from 0 to 3?\n")
    assert main(["score", "--router", "length", "--input", str(src), "--output", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err.endswith(
            "blank line; in a text file every line is one prompt (so that output line N answers "
            "input line N): remove it, or use JSONL with a 'prompt' field"
        )
        and f"{src}:2:" in err
    )
    assert len(rows) == 2 and len(out.read_text().splitlines()) == 2  # the earlier output is kept
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a"}\n{"text": "b"}\n')
    assert main(["score", "--router", "length", "--input", str(jsonl)]) == 1
    assert "p.jsonl:2" in capsys.readouterr().err


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_score_to_a_standard_output_that_is_not_utf8(tmp_path, encoding):
    # The first prompt with a character standard output could not encode ended the command with a
    # UnicodeEncodeError traceback (PYTHONIOENCODING=ascii, a latin-1 or Windows console).
    prompts = ["héllo wörld ☃", "plain", "emoji 🙂"]
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "lmroute.cli", "score", "--router", "length", "--input", str(src), "--quiet"],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": encoding},
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    text = run.stdout.decode("ascii")  # JSON escapes: the same text to any JSON reader
    assert [json.loads(line)["prompt"] for line in text.splitlines()] == prompts


def test_download_when_no_data_dir(public_data, tmp_path, capsys):
    """With no data folder the public files are fetched (here from loopback) into the cache: the
    benchmark's own files only (issue 20: MT-Bench's three, not all 63)."""
    args = ["eval", "--benchmark", "gsm8k", "--routers", "length", "--quiet"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "downloading gsm8k data" in captured.err
    assert "0.5987" in captured.out
    assert sorted(public_data.requested) == [
        "/routellm-evals/gsm8k/contaminated_prompts.jsonl",
        "/routellm-evals/gsm8k/gsm8k_responses.csv",
    ]
    # The second run reads the cache and says nothing about downloading.
    assert main(args) == 0
    assert "downloading" not in capsys.readouterr().err
    assert len(public_data.requested) == 2
    public_data.requested.clear()
    assert main(["eval", "--benchmark", "mt-bench", "--routers", "length", "--quiet"]) == 0
    assert sorted(public_data.requested) == [
        "/routellm-evals/mt_bench/contaminated_prompts.jsonl",
        "/routellm-evals/mt_bench/judgements.jsonl",
        "/routellm-evals/mt_bench/question.jsonl",
    ]
    assert not (tmp_path / "cache" / "routellm-evals" / "mmlu").exists()


def test_data_url_flag_moves_the_download(public_data, monkeypatch, capsys):
    monkeypatch.setenv("LMROUTE_DATA_URL", "http://127.0.0.1:9/unreachable")
    args = ["eval", "--benchmark", "gsm8k", "--routers", "length", "--quiet"]
    assert main([*args, "--data-url", public_data.data_url]) == 0
    assert "0.5987" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command",
    [
        ["train", "length", "--data", "mmlu", "--out", "r"],
        ["data", "prepare", "--data", "mmlu"],
        ["data", "similarity", "mmlu", "--against", "mf"],
        ["replay", "--model", "router-length-share-0.5", "--prompts", "p.txt"],
    ],
)
def test_only_eval_offers_a_data_url(command, capsys):
    # These commands accepted --data-url and ignored it: public files came from $LMROUTE_DATA_URL or
    # RouteLLM's GitHub, not the mirror given.
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--data-url", "http://127.0.0.1:9/m"])
    assert exit_.value.code == 2 and "unrecognized arguments: --data-url" in capsys.readouterr().err


def test_download_failure_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LMROUTE_DATA_DIR", raising=False)
    monkeypatch.setenv("LMROUTE_CACHE_DIR", str(tmp_path / "cache"))
    args = [
        "eval",
        "--benchmark",
        "mmlu",
        "--routers",
        "length",
        "--quiet",
        "--data-url",
        "http://127.0.0.1:9/nothing",
    ]
    assert main(args) == 1
    assert "could not download" in capsys.readouterr().err


def test_routers_lists_each_routers_options(capsys):
    """Issue 21 item 7: a command lists the options `--set` takes, max_train_prompts among them."""
    assert main(["routers"]) == 0
    blocks = {}
    for line in capsys.readouterr().out.splitlines():
        if not line.startswith("  "):
            name = line.split(":")[0]
            blocks[name] = []
        else:
            blocks[name].append(line.strip())
    assert set(blocks) >= {"random", "length", "mf", "sw_ranking", "bert", "causal_llm"}
    for name in ("mf", "sw_ranking", "bert", "causal_llm"):
        assert "max_train_prompts=None (int | None)" in blocks[name]
    assert "members=1 (int)" in blocks["mf"]
    assert main(["routers", "length", "--names-only"]) == 0
    assert capsys.readouterr().out == "length\n"
    assert main(["routers", "mf", "length", "mf", "--names-only"]) == 0  # mf was listed twice
    assert capsys.readouterr().out == "mf\nlength\n"


def test_routers_lists_the_choices_of_an_option_that_takes_one_of_several(capsys):
    # They were listed as "(Literal)", which says nothing of what --set may give.
    assert main(["routers", "mf"]) == 0
    out = capsys.readouterr().out
    assert "  long_prompts='head_tail' ('head', 'tail', 'head_tail' or 'windows')\n" in out
    assert "  ties='drop' ('drop' or 'half')\n" in out


def test_routers_lists_the_keys_of_an_ensembles_members(capsys):
    # They were listed as "(tuple, required)", which says nothing of what --set members=... takes.
    assert main(["routers", "ensemble"]) == 0
    assert "  members (list of {router, options, weight}, required)\n" in capsys.readouterr().out


def test_routers_checks_every_name_before_listing_any(capsys):
    assert main(["routers", "mf", "nope"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "unknown router 'nope'" in captured.err


def test_max_train_prompts_bounds_an_mf_fit_and_bad_options_fail_before_loading(
    tmp_path, monkeypatch, capsys
):
    """Issue 21 item 7: `--set max_train_prompts=N` was refused by mf (after loading the data)."""
    battles = tmp_path / "b.jsonl"
    rows = [
        {
            "prompt": f"question {i}",
            "model_a": "big",
            "model_b": "small",
            "winner": "model_a" if i % 3 else "model_b",
        }
        for i in range(30)
    ]
    battles.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen = []
    monkeypatch.setattr("lmroute.routers.mf.index_battles", _spy(seen))
    args = ["train", "mf", "--data", f"battles:{battles}", "--out", str(tmp_path / "mf"), "--quiet"]
    options = [
        "--set",
        "strong_model=big",
        "weak_model=small",
        "epochs=1",
        "max_train_prompts=10",
        "members=1",
    ]
    monkeypatch.setattr(
        "lmroute.routers.mf.MFRouter._features", lambda self, texts, progress: _unit(len(texts))
    )
    assert main([*args, *options]) == 0
    assert len({b.prompt for b in seen[0]}) == 10
    assert json.loads((tmp_path / "mf" / "config.json").read_text())["config"]["max_train_prompts"] == 10
    # A bad option is refused before any source is read.
    loaded = []
    monkeypatch.setattr("lmroute.data.prepare.load_sources", lambda *a, **k: loaded.append(1))
    assert main([*args, "--set", "nonsense_option=1"]) == 1
    assert "nonsense_option" in capsys.readouterr().err and not loaded


def _spy(seen):
    from lmroute.training.battle_index import index_battles

    def spy(battles):
        seen.append(list(battles))
        return index_battles(battles)

    return spy


def _unit(n):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 384)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_pair_problems_name_the_file_and_warn(tmp_path, capsys):
    """Issue 21 item 10: equal qualities named no file; the weaker model named strong gave a
    negative oracle APGR without a word."""
    bench = tmp_path / "pair.jsonl"
    rows = [{"prompt": f"p{i}", "scores": {"a": i % 2, "b": (i + 1) % 2}} for i in range(4)]
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["eval", "--benchmark", str(bench), "--routers", "length", "--quiet"]
    assert main([*args, "--strong-model", "a", "--weak-model", "b"]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and f"{bench}: the strong model a and the weak model b have equal" in err
    )
    rows = [{"prompt": f"p{i}", "scores": {"a": 1, "b": int(i == 0)}} for i in range(4)]
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main([*args, "--strong-model", "b", "--weak-model", "a", "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "warning: the strong model b scores below the weak model a" in out
    assert json.loads((tmp_path / "e.json").read_text())["warnings"]


def test_routers_lists_the_defaults_a_routers_default_preset_sets(capsys):
    # causal_llm's default preset reads 16 of SmolLM2's 30 layers; the listing said num_layers=None
    # (all layers), the field's own default that the preset replaces in every router trained.
    from lmroute.routers.causal_llm import CausalLLMConfig

    assert CausalLLMConfig().num_layers == 16
    assert main(["routers", "causal_llm", "bert"]) == 0
    out = capsys.readouterr().out
    assert "  num_layers=16 (int | None)\n" in out
    assert "  preset='default' ('fast', 'default' or 'full')\n" in out
    assert "  trainable_layers=2 (int)\n" in out
