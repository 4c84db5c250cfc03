"""Bad input to every CLI command: one clear ``lmroute: error:`` line, exit code 1, nothing lost.

For each command and each file it reads, the file is made missing, empty, truncated, binary, in
the wrong encoding (UTF-16, Latin-1) or a folder; routers are unknown, router directories are
damaged (corrupted weights, a config from a newer version...), YAML configs are malformed, and a
data directory lacks one of its files. Every case must end with exactly one line on stderr (no
traceback), and an output file that existed before is left as it was.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from _fake_embedder import HashEmbedder

from lmroute.cli import main
from lmroute.data.battles import Battle

pytestmark = pytest.mark.reliability

PRECIOUS = "an earlier result that a failed command must not overwrite\n"

PROMPTS = "".join(json.dumps({"prompt": p}) + "\n" for p in ["What is 2+2?", "Write a sonnet about rain."])
BENCH = "".join(
    json.dumps({"prompt": f"question {i}", "scores": {"big": i % 2, "small": (i // 2) % 2}}) + "\n"
    for i in range(6)
)
BENCH_CSV = "prompt,big,small\n" + "".join(f"question {i},{i % 2},{(i // 2) % 2}\n" for i in range(6))
BATTLES = "".join(
    json.dumps({"prompt": f"prompt {i}", "model_a": "a", "model_b": "b", "winner": "model_a"}) + "\n"
    for i in range(4)
)
ARENA = (
    "id,model_a,model_b,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie\n"
    + "".join(f'{i},a,b,"[""prompt {i}""]","[""x""]","[""y""]",1,0,0\n' for i in range(4))
)
GOLD = "".join(
    json.dumps({"question": f"What is {i}+{i}?", "answer": f"#### {2 * i}"}) + "\n" for i in range(3)
)
# Keys that the others need come last, so that a truncated file is incomplete, not merely shorter.
SERVE_YAML = """\
routers: [length]
fallback: true
strong: {base_url: "http://127.0.0.1:9/v1", model: big-model}
weak: {base_url: "http://127.0.0.1:9/v1", model: small-model}
"""
EXPERIMENT_YAML = """\
bootstrap: 0
benchmarks: [gsm8k]
protocols: [zero-shot]
sources: ["battles:arena-hard/battles.jsonl"]
routers: [{name: random, label: trained random}]
"""
UPSTREAMS_YAML = """\
a: {base_url: "http://127.0.0.1:9/v1", model: a}
b: {base_url: "http://127.0.0.1:9/v1", model: b}
"""


def truncated(text: str) -> bytes:
    """``text`` cut in the middle of its last line (a download or a copy that stopped)."""
    data = text.encode()
    last = len(text.rstrip("\n").rsplit("\n", 1)[-1])
    return data[: len(data) - last // 2 - 1]


BAD_FILES = {
    "missing": None,
    "empty": b"",
    "blank": b"\n  \n\t\n",
    "truncated": truncated,
    "binary": bytes(range(256)) * 4,
    "utf16": lambda text: text.encode("utf-16"),
    "latin1": lambda text: text.replace("\n", " \u00e9\n", 1).encode("latin-1"),
    "folder": "folder",
}

# command id -> (argv with {file} {out} {dir} placeholders, file suffix, valid content)
COMMANDS = {
    "score": (
        ["score", "--router", "length", "--input", "{file}", "--output", "{out}", "--quiet"],
        ".jsonl",
        PROMPTS,
    ),
    "calibrate": (
        ["calibrate", "--router", "length", "--strong-pct", "0.5", "--prompts", "{file}", "--json", "{out}"],
        ".jsonl",
        PROMPTS,
    ),
    "replay": (
        ["replay", "--model", "router-length-share-0.5", "--prompts", "{file}", "--json", "{out}", "--quiet"],
        ".jsonl",
        PROMPTS,
    ),
    "eval-jsonl": (
        ["eval", "--benchmark", "{file}", "--routers", "length", "--quiet", "--json", "{out}"],
        ".jsonl",
        BENCH,
    ),
    "eval-csv": (
        ["eval", "--benchmark", "{file}", "--routers", "length", "--quiet", "--json", "{out}"],
        ".csv",
        BENCH_CSV,
    ),
    "data-battles": (["data", "battles:{file}", "--out", "{out}"], ".jsonl", BATTLES),
    "data-arena": (["data", "arena:{file}", "--out", "{out}"], ".csv", ARENA),
    "data-alpaca": (["data", "alpaca-eval:{file}", "--out", "{out}"], ".jsonl", BATTLES),
    "data-gold": (["data", "gold:{file}", "--out", "{out}"], ".jsonl", GOLD),
    "data-similarity-prompts": (
        ["data", "similarity", "{file}", "--against", "gold:mt-bench", "--json", "{out}"],
        ".jsonl",
        PROMPTS,
    ),
    "data-similarity-source": (
        ["data", "similarity", "mt-bench", "--against", "battles:{file}", "--json", "{out}"],
        ".jsonl",
        BATTLES,
    ),
    "train": (
        ["train", "sw_ranking", "--data", "battles:{file}", "--out", "{dir}", "--quiet"],
        ".jsonl",
        BATTLES,
    ),
    "label-prompts": (
        [
            "label",
            "--prompts",
            "{file}",
            "--model",
            "name=a,base_url=http://127.0.0.1:9/v1",
            "--model",
            "name=b,base_url=http://127.0.0.1:9/v1",
            "--mode",
            "golden",
            "--out",
            "{dir}",
            "--dry-run",
        ],
        ".jsonl",
        GOLD,
    ),
    "label-upstreams": (
        [
            "label",
            "--prompts",
            "{valid}",
            "--upstreams",
            "{file}",
            "--model",
            "a",
            "--model",
            "b",
            "--mode",
            "golden",
            "--out",
            "{dir}",
            "--dry-run",
        ],
        ".yaml",
        UPSTREAMS_YAML,
    ),
    "experiment": (["experiment", "{file}", "--out", "{dir}", "--quiet"], ".yaml", EXPERIMENT_YAML),
    "serve": (["serve", "--config", "{file}"], ".yaml", SERVE_YAML),
    "chat": (["chat", "--model", "router-length-0.5", "--config", "{file}"], ".yaml", SERVE_YAML),
}


@pytest.fixture(autouse=True)
def _no_server_no_stdin(monkeypatch, cache_dir):
    """A config that is valid by mistake must not start a server or wait for input."""
    import io

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.delenv("LMROUTE_API_KEYS", raising=False)


def run(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 1, err
    assert err.startswith("lmroute: error: ") and err.endswith("\n"), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def fill(argv, tmp_path, file) -> tuple[list[str], Path, Path]:
    out, folder = tmp_path / "out.json", tmp_path / "out-dir"
    out.write_text(PRECIOUS)
    valid = tmp_path / "valid.jsonl"
    valid.write_text(json.dumps({"prompt": "What is 1+1?", "answer": "#### 2"}) + "\n")
    subs = {"{file}": str(file), "{out}": str(out), "{dir}": str(folder), "{valid}": str(valid)}
    filled = []
    for arg in argv:
        for key, value in subs.items():
            arg = arg.replace(key, value)
        filled.append(arg)
    return filled, out, folder


@pytest.mark.parametrize("kind", list(BAD_FILES))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_bad_file(command, kind, tmp_path, capsys, data_dir, monkeypatch):
    monkeypatch.setenv("LMROUTE_DATA_DIR", str(data_dir))
    argv, suffix, valid = COMMANDS[command]
    file = tmp_path / f"input{suffix}"
    make = BAD_FILES[kind]
    if make == "folder":
        file.mkdir()
    elif make is not None:
        file.write_bytes(make(valid) if callable(make) else make)
    filled, out, folder = fill(argv, tmp_path, file)
    code, err = run(filled, capsys)
    assert_one_line_error(code, err)
    if kind in ("missing", "empty", "binary", "utf16", "folder"):
        assert file.name in err, err  # the message names the file it could not use
    assert out.read_text() == PRECIOUS and not folder.exists()


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in ("train", "experiment")])
def test_the_valid_file_of_each_case_is_accepted(command, tmp_path, capsys, data_dir, monkeypatch):
    """The matrix's files are bad for the reason it says: the valid version gets past reading
    (train and experiment are left out: they would train routers, which their own tests do)."""
    monkeypatch.setenv("LMROUTE_DATA_DIR", str(data_dir))
    argv, suffix, valid = COMMANDS[command]
    file = tmp_path / f"input{suffix}"
    file.write_text(valid)
    filled, _, _ = fill(argv, tmp_path, file)
    code, err = run(filled, capsys)
    if command in ("data-alpaca", "data-gold"):  # battles are not AlpacaEval judgments nor gold items
        assert code == 1 and "Traceback" not in err
    else:
        assert code == 0, err


# Each command's outputs: {out} is made a folder, {in_the_way} a file (where a folder is wanted, or
# above the output). {earlier} is an output written before the bad one, {dir} a folder to be made:
# the bad output is seen before the work, so neither is touched.
EVAL = ["eval", "--benchmark", "gsm8k", "--routers", "length", "--quiet"]
REPLAY = ["replay", "--model", "router-length-share-0.5", "--prompts", "{valid}", "--quiet"]
LABEL = ["label", "--prompts", "{valid}", "--mode", "golden", "--dry-run"]
LABEL_MODELS = [
    "--model",
    "name=a,base_url=http://127.0.0.1:9/v1",
    "--model",
    "name=b,base_url=http://127.0.0.1:9/v1",
]
OUTPUTS = {
    "score": ["score", "--router", "length", "--input", "{valid}", "--output", "{out}", "--quiet"],
    "score-below-a-file": ["score", "--router", "length", "--input", "{valid}", "--output", "{in_the_way}/s"],
    "calibrate": [
        "calibrate",
        "--router",
        "length",
        "--strong-pct",
        "0.5",
        "--prompts",
        "{valid}",
        "--json",
        "{out}",
    ],
    "eval-json": [*EVAL, "--json", "{out}"],
    "eval-scores": [*EVAL, "--json", "{earlier}", "--save-scores", "{out}"],
    "eval-plot": [*EVAL, "--json", "{earlier}", "--plot", "{in_the_way}/curves.png"],
    "data-out": ["data", "battles:{battles}", "--report", "{earlier}", "--out", "{out}"],
    "data-report": ["data", "battles:{battles}", "--report", "{out}"],
    "data-similarity": ["data", "similarity", "{valid}", "--against", "battles:{battles}", "--json", "{out}"],
    "replay-json": [*REPLAY, "--json", "{out}"],
    "replay-plot": [*REPLAY, "--json", "{earlier}", "--plot", "{out}.png"],
    "replay-state": [*REPLAY, "--json", "{earlier}", "--state", "{out}"],
    "train": ["train", "length", "--data", "battles:{battles}", "--out", "{in_the_way}", "--quiet"],
    "train-below-a-file": ["train", "length", "--data", "battles:{battles}", "--out", "{in_the_way}/r"],
    "experiment": ["experiment", "{experiment}", "--out", "{in_the_way}", "--quiet"],
    "label": [*LABEL, *LABEL_MODELS, "--out", "{in_the_way}"],
    "data-pull": ["data", "pull", "--to", "{in_the_way}/data", "--only", "mmlu"],
}


@pytest.mark.parametrize("command", list(OUTPUTS))
def test_an_output_that_cannot_be_written_is_refused_before_the_work(
    command, tmp_path, capsys, data_dir, monkeypatch
):
    monkeypatch.setenv("LMROUTE_DATA_DIR", str(data_dir))
    battles = tmp_path / "battles.jsonl"
    battles.write_text(BATTLES)
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(EXPERIMENT_YAML)
    filled, out, folder = fill(OUTPUTS[command], tmp_path, "")
    out.unlink()
    out.mkdir()
    if command == "replay-plot":  # matplotlib adds .png: the folder is where its file would go
        out.rename(f"{out}.png")
        out = Path(f"{out}.png")
    in_the_way, earlier = tmp_path / "a-file", tmp_path / "earlier.json"
    in_the_way.write_text(PRECIOUS)
    earlier.write_text(PRECIOUS)
    subs = {
        "{battles}": battles,
        "{experiment}": experiment,
        "{in_the_way}": in_the_way,
        "{earlier}": earlier,
    }
    argv = []
    for arg in filled:
        for key, value in subs.items():
            arg = arg.replace(key, str(value))
        argv.append(arg)
    code, err = run(argv, capsys)
    bad = in_the_way if "{in_the_way}" in " ".join(OUTPUTS[command]) else out
    # one line, no report or progress of work done before it
    assert_one_line_error(code, err, "cannot write", str(bad))
    assert not any(out.iterdir()) and in_the_way.read_text() == PRECIOUS and earlier.read_text() == PRECIOUS
    assert not folder.exists()


# A command whose output option names its own input file: (argv with {file}, the input's content).
OUTPUT_IS_INPUT = {
    "score": (["score", "--router", "length", "--input", "{file}", "--output", "{file}", "--quiet"], PROMPTS),
    "data": (["data", "battles:{file}", "--out", "{file}"], BATTLES),
    "data-report": (["data", "battles:{file}", "--report", "{file}"], BATTLES),
    "eval": (
        ["eval", "--benchmark", "{file}", "--routers", "length", "--quiet", "--save-scores", "{file}"],
        BENCH,
    ),
    "calibrate": (
        ["calibrate", "--router", "length", "--strong-pct", "0.5", "--prompts", "{file}", "--json", "{file}"],
        PROMPTS,
    ),
    "replay-json": ([*REPLAY[:3], "--prompts", "{file}", "--json", "{file}"], PROMPTS),
    "replay-state": ([*REPLAY[:3], "--prompts", "{file}", "--state", "{file}"], PROMPTS),
    "shrink": (
        [
            "shrink",
            "--router",
            "mf",
            "--models",
            "big=gpt-4-1106-preview",
            "small=Mixtral-8x7B-Instruct-v0.1",
            "--benchmark",
            "{file}",
            "--out",
            "router",
            "--json",
            "{file}",
        ],
        BENCH,
    ),
}


@pytest.mark.parametrize("command", list(OUTPUT_IS_INPUT))
def test_an_output_that_is_the_input_is_refused(command, tmp_path, capsys, monkeypatch):
    argv, content = OUTPUT_IS_INPUT[command]
    file = tmp_path / "input.jsonl"
    file.write_text(content)
    monkeypatch.chdir(tmp_path)
    filled = [a.replace("{file}", str(file)) for a in argv]
    last = max(i for i, a in enumerate(argv) if a == "{file}")
    filled[last] = "./input.jsonl"  # the output spelled another way than the input: the same file
    code, err = run(filled, capsys)
    assert_one_line_error(code, err, "is the input file", "write the output elsewhere")
    assert file.read_text() == content


# -- routers --------------------------------------------------------------------------------------

ROUTER_COMMANDS = {
    "score": ["score", "--router", "{router}", "--input", "{valid}", "--quiet"],
    "eval": ["eval", "--benchmark", "gsm8k", "--routers", "{router}", "--quiet"],
    "calibrate": ["calibrate", "--router", "{router}", "--strong-pct", "0.5", "--prompts", "{valid}"],
    "train": ["train", "{router}", "--data", "battles:{valid}", "--out", "{dir}"],
    "serve": [
        "serve",
        "--routers",
        "{router}",
        "--strong-base-url",
        "http://127.0.0.1:9/v1",
        "--strong-model",
        "s",
        "--weak-base-url",
        "http://127.0.0.1:9/v1",
        "--weak-model",
        "w",
    ],
}


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory) -> Path:
    from lmroute.routers.sw_ranking import SWRankingRouter

    battles = [Battle(f"prompt {i}", "a", "b", "model_a" if i % 2 else "model_b") for i in range(20)]
    router = SWRankingRouter(embedder=HashEmbedder(16), strong_model="a", weak_model="b").fit(battles)
    return router.save(tmp_path_factory.mktemp("routers") / "sw")


def corrupt(directory: Path, how: str) -> None:
    config = directory / "config.json"
    weights = directory / "weights.safetensors"
    manifest = json.loads(config.read_text())
    if how == "flipped weights":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif how == "truncated weights, no checksum":
        weights.write_bytes(weights.read_bytes()[:100])
        manifest["weights"].pop("sha256")
    elif how == "weights missing":
        weights.unlink()
    elif how == "weights outside the folder":
        manifest["weights"]["file"] = "../../etc/passwd"
    elif how == "weights entry not an object":
        manifest["weights"] = "weights.safetensors"
    elif how == "wrong arrays":
        from safetensors.numpy import save_file

        save_file({"unexpected": np.zeros(3, dtype=np.float32)}, str(weights))
        manifest["weights"].pop("sha256")
    elif how == "newer format":
        manifest["format_version"] = 99
    elif how == "unknown option":
        manifest["config"]["from_the_future"] = 1
    elif how == "unknown router class":
        manifest["router"] = "quantum"
    elif how == "config not JSON":
        config.write_text('{"format": "lmroute-router", "format_')
        return
    elif how == "config binary":
        config.write_bytes(bytes(range(256)))
        return
    elif how == "config nested too deeply":
        config.write_text("[" * 100_000)  # deeper than json recurses
        return
    elif how == "config a list":
        manifest = [manifest]
    elif how == "no config":
        config.unlink()
        return
    config.write_text(json.dumps(manifest))


CORRUPTIONS = [
    "flipped weights",
    "truncated weights, no checksum",
    "weights missing",
    "weights outside the folder",
    "weights entry not an object",
    "wrong arrays",
    "newer format",
    "unknown option",
    "unknown router class",
    "config not JSON",
    "config binary",
    "config nested too deeply",
    "config a list",
    "no config",
]


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("command", [c for c in ROUTER_COMMANDS if c != "train"])  # train takes names
def test_damaged_router_directory(command, how, router_dir, tmp_path, capsys, data_dir, monkeypatch):
    monkeypatch.setenv("LMROUTE_DATA_DIR", str(data_dir))
    damaged = tmp_path / "router"
    shutil.copytree(router_dir, damaged)
    corrupt(damaged, how)
    argv, _, _ = fill(ROUTER_COMMANDS[command], tmp_path, "")
    code, err = run([a.replace("{router}", str(damaged)) for a in argv], capsys)
    assert_one_line_error(code, err, str(damaged))
    if how == "newer format":
        assert "upgrade lmroute" in err
    if how in ("flipped weights",):
        assert "checksum" in err


@pytest.mark.parametrize("command", list(ROUTER_COMMANDS))
@pytest.mark.parametrize("name", ["nope", "../nope", "mf2", ""])
def test_unknown_router(command, name, tmp_path, capsys, data_dir, monkeypatch):
    monkeypatch.setenv("LMROUTE_DATA_DIR", str(data_dir))
    argv, _, folder = fill(ROUTER_COMMANDS[command], tmp_path, "")
    code, err = run([a.replace("{router}", name) for a in argv], capsys)
    assert_one_line_error(code, err)
    assert "router" in err and not folder.exists()


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("[" * 100_000, "nested too deeply"),  # deeper than json recurses
        # more digits than Python converts: a ValueError traceback where the probe's kind is guessed
        ('{"prompt": "p", "scores": {"new": 1' + "0" * 5000 + "}}", "a number of over 4300 digits"),
    ],
)
def test_a_probe_file_whose_first_line_json_cannot_read_names_its_line(tmp_path, capsys, line, says):
    probe = tmp_path / "probe.jsonl"
    probe.write_text(line + "\n")
    argv = ["onboard", "--router", "mf", "--probe", probe, "--model", "new", "--out", tmp_path / "out"]
    code, err = run(argv, capsys)
    assert_one_line_error(code, err, f"probe.jsonl:1: not valid JSON ({says})")
    assert not (tmp_path / "out").exists()


def test_the_undamaged_router_directory_loads(router_dir):
    from lmroute.registry import load_router

    assert load_router(str(router_dir)).name == "sw_ranking"


# -- YAML configs ---------------------------------------------------------------------------------

MALFORMED_YAML = {
    "unclosed bracket": "strong: {base_url: http://x\nweak: [",
    "tabs": "strong:\n\tmodel: x\n",
    "a list": "- strong\n- weak\n",
    "a scalar": "just some words\n",
    "null document": "~\n",
    "duplicate anchors": "a: &x 1\nb: *y\n",
    "python object tag": "strong: !!python/object/apply:os.system ['echo pwned']\n",
    "wrong types": "routers: 5\nstrong: 7\nweak: {base_url: 3}\n",
    "unknown key": SERVE_YAML + "colour: blue\n",
    "key in file": SERVE_YAML.replace("model: big-model}", "model: big-model, api_key: sk-123}"),
    "bad url": SERVE_YAML.replace("http://127.0.0.1:9/v1", "ftp://x", 1),
    "threshold out of range": SERVE_YAML + "thresholds: {length: 7}\n",
    "negative port": SERVE_YAML + "server: {port: -1}\n",
    "zero limit": SERVE_YAML + "server: {max_messages: 0}\n",
    "bad router policy": SERVE_YAML + "on_router_error: maybe\n",
}

YAML_COMMANDS = {
    "serve": ["serve", "--config", "{file}"],
    "chat": ["chat", "--model", "router-length-0.5", "--config", "{file}"],
    "experiment": ["experiment", "{file}", "--out", "{dir}"],
    "replay-schedule": ["replay", "--model", "router-length-share-0.5", "--schedule", "{file}"],
    "replay-config": [
        "replay",
        "--model",
        "router-length-share-0.5",
        "--prompts",
        "{valid}",
        "--config",
        "{file}",
    ],
    "label-upstreams": [
        "label",
        "--prompts",
        "{valid}",
        "--upstreams",
        "{file}",
        "--model",
        "a",
        "--model",
        "b",
        "--mode",
        "golden",
        "--out",
        "{dir}",
        "--dry-run",
    ],
}


@pytest.mark.parametrize("case", list(MALFORMED_YAML))
@pytest.mark.parametrize("command", list(YAML_COMMANDS))
def test_malformed_yaml(command, case, tmp_path, capsys):
    file = tmp_path / "config.yaml"
    file.write_text(MALFORMED_YAML[case])
    argv, _, folder = fill(YAML_COMMANDS[command], tmp_path, file)
    code, err = run(argv, capsys)
    assert_one_line_error(code, err)
    assert "sk-123" not in err and "pwned" not in err
    assert not folder.exists()


# -- data directories -------------------------------------------------------------------------------


def partial_copy(data_dir: Path, tmp_path: Path, missing: str) -> Path:
    """``routellm-evals`` as symbolic links, without ``missing`` (relative to it)."""
    root = tmp_path / "data"
    source = data_dir / "routellm-evals"
    for path in source.rglob("*"):
        if path.is_file() and path.relative_to(source).as_posix() != missing:
            target = root / "routellm-evals" / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    return root


@pytest.mark.parametrize(
    "benchmark, missing",
    [
        ("gsm8k", "gsm8k/gsm8k_responses.csv"),
        ("gsm8k", "gsm8k/contaminated_prompts.jsonl"),
        ("mmlu", "mmlu/responses/mmlu_philosophy.csv"),
        ("mmlu", "mmlu/contaminated_prompts.jsonl"),
        ("mt-bench", "mt_bench/judgements.jsonl"),
        ("mt-bench", "mt_bench/question.jsonl"),
    ],
)
def test_data_directory_with_a_file_missing(benchmark, missing, data_dir, tmp_path, capsys):
    root = partial_copy(data_dir, tmp_path, missing)
    code, err = run(
        ["eval", "--benchmark", benchmark, "--routers", "length", "--data-dir", root, "--quiet"], capsys
    )
    assert_one_line_error(code, err, Path(missing).name)


@pytest.mark.parametrize("how", ["does not exist", "empty", "a file"])
def test_data_directory_that_is_not_one(how, tmp_path, capsys, monkeypatch):
    # An empty data folder is passed over (issue 20's rule): no LMROUTE_DATA_DIR, an empty cache,
    # and an unreachable source make that a one-line download error saying what to pass.
    monkeypatch.delenv("LMROUTE_DATA_DIR", raising=False)
    monkeypatch.setenv("LMROUTE_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "data"
    if how == "empty":
        root.mkdir()
    elif how == "a file":
        root.write_text("not a folder")
    code, err = run(
        [
            "eval",
            "--benchmark",
            "gsm8k",
            "--routers",
            "length",
            "--data-dir",
            root,
            "--quiet",
            "--data-url",
            "http://127.0.0.1:9/nothing",
        ],
        capsys,
    )
    assert_one_line_error(code, err, "does not exist" if how == "does not exist" else "")
    if how == "empty":
        assert "--data-dir DIR" in err


def test_a_damaged_data_file_names_file_and_line(data_dir, tmp_path, capsys):
    root = partial_copy(data_dir, tmp_path, "gsm8k/gsm8k_responses.csv")
    import csv

    with (data_dir / "routellm-evals" / "gsm8k" / "gsm8k_responses.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    rows[5][2] = "not-a-number"
    target = root / "routellm-evals" / "gsm8k" / "gsm8k_responses.csv"
    with target.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    code, err = run(
        ["eval", "--benchmark", "gsm8k", "--routers", "length", "--data-dir", root, "--quiet"], capsys
    )
    assert_one_line_error(code, err, "gsm8k_responses.csv:", "not a number")


# -- arguments --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["score", "--router", "random", "--input"],
        ["calibrate", "--router", "random", "--strong-pct", "half"],
        ["eval", "--benchmark", "gsm8k", "--protocol", "best"],
        ["serve", "--port", "http"],
        ["nonsense"],
        [],
    ],
)
def test_argument_errors_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: lmroute") and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["calibrate", "--router", "random", "--strong-pct", "1.5", "--prompts", "{valid}"], "strong"),
        (["calibrate", "--router", "random", "--strong-pct", "nan", "--prompts", "{valid}"], "strong"),
        (["eval", "--benchmark", "gsm8k", "--routers", "random", "--threshold", "2", "--quiet"], "threshold"),
        (
            ["train", "sw_ranking", "--data", "battles:{valid}", "--out", "{dir}", "--set", "nonsense"],
            "--set",
        ),
        (["train", "sw_ranking", "--data", "nowhere:{valid}", "--out", "{dir}"], "nowhere"),
        (["data", "battles:{valid}", "--alias", "x"], "--alias"),
        (
            [
                "serve",
                "--port",
                "70000",
                "--strong-model",
                "s",
                "--strong-base-url",
                "http://127.0.0.1:9/v1",
                "--weak-model",
                "w",
                "--weak-base-url",
                "http://127.0.0.1:9/v1",
                "--routers",
                "length",
            ],
            "port",
        ),
        (
            [
                "serve",
                "--max-messages",
                "0",
                "--strong-model",
                "s",
                "--strong-base-url",
                "http://127.0.0.1:9/v1",
                "--weak-model",
                "w",
                "--weak-base-url",
                "http://127.0.0.1:9/v1",
                "--routers",
                "length",
            ],
            "max_messages",
        ),
        (
            [
                "label",
                "--prompts",
                "{valid}",
                "--model",
                "a=x",
                "--mode",
                "golden",
                "--out",
                "{dir}",
                "--dry-run",
            ],
            "model",
        ),
    ],
)
def test_invalid_option_values(argv, needle, tmp_path, capsys, data_dir, monkeypatch):
    monkeypatch.setenv("LMROUTE_DATA_DIR", str(data_dir))
    filled, _, folder = fill(argv, tmp_path, "")
    code, err = run(filled, capsys)
    assert_one_line_error(code, err, needle)
    assert not folder.exists()
