"""Source specs: parsing, loading with provenance and licences, drops, and the `lmroute data` step."""

from __future__ import annotations

import json
import shutil
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lmroute.cli import main
from lmroute.data.battles import battle_records, read_battles_jsonl
from lmroute.data.decontaminate import EXACT, NEAR
from lmroute.data.prepare import gold_target, prepare_battles
from lmroute.data.sources import DEFAULT_MAX_PAIRS, load_sources, parse_source
from lmroute.exceptions import ConfigError, DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
ALL_FIXTURES = ["arena:arena55k.csv", "battles:battles.jsonl", "alpaca-eval:alpaca", "gold:scores.jsonl"]


def test_spec_grammar():
    spec = parse_source("gold:zeroeval/crux.jsonl?max_pairs=8&seed=2")
    assert (spec.kind, spec.target, dict(spec.options)) == (
        "gold",
        "zeroeval/crux.jsonl",
        {"max_pairs": "8", "seed": "2"},
    )
    hub = parse_source("arena:hf:lmsys/lmsys-arena-human-preference-55k?split=train")
    assert (hub.target, hub.options["split"]) == ("hf:lmsys/lmsys-arena-human-preference-55k", "train")
    assert parse_source("alpaca-eval").target == ""
    assert parse_source("ALPACA-EVAL:dir?annotators=a,b").options == {"annotators": "a,b"}
    with pytest.raises(ConfigError, match=r"unknown source kind 'chatbot'.*arena:FILE"):
        parse_source("chatbot:file.csv")
    with pytest.raises(ConfigError, match=r"unknown option 'pairs=3' for gold \(options: models, max_pairs"):
        parse_source("gold:mmlu?pairs=3")
    with pytest.raises(ConfigError, match="names no file"):
        parse_source("battles:")
    with pytest.raises(ConfigError, match="non-empty"):
        parse_source("  ")
    assert gold_target("gold:mt_bench") == "mt-bench" and gold_target("battles:x.jsonl") is None


def test_spaces_around_the_target_are_not_part_of_it():
    assert parse_source("gold: mmlu ?margins=false").target == "mmlu"
    assert parse_source("battles: dir with space/a:b.jsonl").target == "dir with space/a:b.jsonl"
    battles, _ = load_sources(["gold: scores.jsonl"], data_dir=FIXTURES, min_model_battles=1)
    assert battles == load_sources(["gold:scores.jsonl"], data_dir=FIXTURES, min_model_battles=1)[0]


def test_load_all_fixture_formats_with_report():
    battles, report = load_sources(ALL_FIXTURES, data_dir=FIXTURES)
    by_spec = {s.spec: s for s in report.sources}
    assert [(s.rows, s.battles) for s in report.sources] == [(12, 5), (9, 5), (14, 7), (7, 7)]
    assert by_spec["arena:arena55k.csv"].dropped["empty prompt"] == 2
    assert by_spec["arena:arena55k.csv"].location == str(FIXTURES / "arena55k.csv")
    # mistral-7b_concise is in one battle only: that battle is dropped and the model named
    assert report.rare_models == ["mistral-7b_concise"]
    assert report.dropped == {"model in too few battles (< 2)": Counter({"alpaca-eval": 1})}
    assert len(battles) == report.battles == 5 + 5 + 7 + 7 - 1
    assert report.models["claude-2"] == 4 and "mistral-7b_concise" not in report.models
    assert Counter(b.source for b in battles) == {
        "arena": 5,
        "battles:battles.jsonl": 4,
        "gold:custom": 1,
        "alpaca-eval": 6,
        "gold:scores": 7,
    }
    licences = report.licences
    assert licences["arena:arena55k.csv"].startswith("Apache-2.0")
    assert "CC BY-NC 4.0" in licences["alpaca-eval:alpaca"]
    assert "gold:custom: unknown" in licences["battles:battles.jsonl"]
    assert any("alpaca-eval:alpaca is licensed CC BY-NC" in w for w in report.warnings)
    text = str(report)
    assert "loaded 23 battles from 4 source(s)" in text and "rare models dropped: mistral-7b_concise" in text
    assert json.loads(json.dumps(report.to_dict()))["battles"] == 23


def test_rare_models_can_be_kept_or_filtered_harder():
    battles, report = load_sources(ALL_FIXTURES, data_dir=FIXTURES, min_model_battles=1)
    assert len(battles) == 24 and not report.rare_models
    battles, report = load_sources(["battles:battles.jsonl"], data_dir=FIXTURES, min_model_battles=3)
    assert len(battles) == 5 and report.models == {"gpt-4-0314": 4, "gpt-3.5-turbo": 3, "mixtral": 3}
    with pytest.raises(DataError, match="no training battles left"):  # every battle has a rarer model
        load_sources(["battles:battles.jsonl"], data_dir=FIXTURES, min_model_battles=4)
    with pytest.raises(ConfigError, match="min_model_battles"):
        load_sources(["battles:battles.jsonl"], data_dir=FIXTURES, min_model_battles=0)


def test_the_same_data_twice_is_deduplicated():
    once, _ = load_sources(["battles:battles.jsonl"], data_dir=FIXTURES)
    twice, report = load_sources(
        ["battles:battles.jsonl", f"battles:{FIXTURES / 'battles.jsonl'}"], data_dir=FIXTURES
    )
    assert twice == once  # the repeated vote inside the file stays (two votes); the copy goes
    assert sum(next(iter(report.dropped.values())).values()) == len(once)


def test_aliases_join_spellings_of_one_model():
    specs = ["arena:arena55k.csv", "battles:battles.jsonl"]
    _, report = load_sources(specs, data_dir=FIXTURES, aliases={"gpt-4-0314": "gpt-4", "gpt-9": "x"})
    assert report.models["gpt-4"] == 3 + 4 and "gpt-4-0314" not in report.models
    assert any("gpt-9 matched no model" in w for w in report.warnings)


def test_aliases_joining_two_models_of_one_source_drop_their_battles_against_each_other(tmp_path):
    # big and mid both become "big": their battle is a model against itself, as the readers drop
    battles, report = load_sources(
        ["gold:scores.jsonl?max_pairs=all"], data_dir=FIXTURES, min_model_battles=1, aliases={"mid": "big"}
    )
    assert all(b.model_a != b.model_b for b in battles)
    (source,) = report.sources
    assert source.battles == len(battles) == report.battles == 5
    assert source.dropped == Counter({"same model on both sides": 2})
    assert report.models == Counter({"big": 5, "small": 5})
    # what `lmroute data --out` writes reads back whole
    out = tmp_path / "out.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in battle_records(battles)))
    assert len(read_battles_jsonl(out).battles) == len(battles)


def test_gold_options():
    def load(spec):
        return load_sources([spec], data_dir=FIXTURES, min_model_battles=1)[0]

    assert len(load("gold:scores.jsonl?models=big,small")) == 3
    one = load("gold:scores.jsonl?max_pairs=1&seed=3")
    assert len(one) == 3 and one == load("gold:scores.jsonl?max_pairs=1&seed=3")
    assert len(load("gold:scores.csv?max_pairs=all")) == 7
    with pytest.raises(ConfigError, match="max_pairs must be an integer"):
        load("gold:scores.jsonl?max_pairs=many")
    # numpy's "expected non-negative integer" ValueError: a traceback
    with pytest.raises(ConfigError, match=r"'gold:scores.jsonl\?seed=-1': seed must be 0 or more, got -1"):
        load("gold:scores.jsonl?seed=-1")
    assert DEFAULT_MAX_PAIRS == 16


def test_missing_and_unknown_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("LMROUTE_DATA_DIR", raising=False)
    with pytest.raises(DataError, match=r"nope\.jsonl does not exist \(nor in data directory"):
        load_sources(["battles:nope.jsonl"], data_dir=FIXTURES)
    with pytest.raises(ConfigError, match="unknown source kind"):
        load_sources(["kaggle:train.csv"])
    with pytest.raises(ConfigError, match="wrap a single spec"):
        load_sources("battles:x.jsonl")
    with pytest.raises(
        DataError, match="alpaca-eval does not exist; relative paths are also looked up in --data-dir"
    ):
        load_sources(["alpaca-eval"])
    binary = tmp_path / "weights.jsonl"
    binary.write_bytes(b"\x00\xff\xfe" * 50)
    with pytest.raises(DataError, match="not UTF-8"):
        load_sources([f"battles:{binary}"])
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="is empty"):
        load_sources([f"gold:{tmp_path / 'empty.jsonl'}"])


def test_eval_only_files_are_refused_unless_allowed(tmp_path):
    path = tmp_path / "tiny-EVAL-ONLY.jsonl"
    shutil.copy(FIXTURES / "scores.jsonl", path)
    with pytest.raises(DataError, match=r"evaluation-only.*allow_eval_only=true"):
        load_sources([f"gold:{path}"])
    battles, report = load_sources([f"gold:{path}?allow_eval_only=true"], min_model_battles=1)
    assert len(battles) == 7 and any("EVAL-ONLY" in w for w in report.warnings)


def test_prepare_leaves_out_own_gold_and_decontaminates_exactly():
    bench = FIXTURES / "bench.jsonl"  # holds "SORT a list   in python"
    specs = ["battles:battles.jsonl", f"gold:{bench}", "gold:scores.jsonl"]
    battles, report = prepare_battles(
        specs, data_dir=FIXTURES, exclude_benchmarks=[str(bench)], threshold=None
    )
    assert report.excluded_specs == [f"gold:{bench}"]
    assert report.decontamination.dropped == {EXACT: Counter({"battles:battles.jsonl": 2})}
    assert report.decontamination.matched == Counter({"bench": 2})
    assert not any(b.prompt.startswith("Sort a list") for b in battles)
    assert report.battles == len(battles) == 5 + 7 - 2
    assert "decontaminated against" in report.describe()
    with pytest.raises(DataError, match="no training sources left"):
        prepare_battles([f"gold:{bench}"], exclude_benchmarks=[str(bench)])


def test_an_excluded_benchmark_file_is_looked_up_in_the_data_folder(tmp_path, monkeypatch, capsys):
    # As a gold source's file: in the working directory, else in the data folder.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LMROUTE_DATA_DIR", raising=False)
    specs = ["battles:battles.jsonl", "gold:bench.jsonl", "gold:scores.jsonl"]
    battles, report = prepare_battles(
        specs, data_dir=FIXTURES, exclude_benchmarks=["bench.jsonl"], threshold=None
    )
    assert report.excluded_specs == ["gold:bench.jsonl"]
    assert report.decontamination.matched == Counter({"bench": 2})
    assert report.battles == len(battles) == 5 + 7 - 2
    with pytest.raises(DataError) as found:
        prepare_battles(specs, data_dir=FIXTURES, exclude_benchmarks=["nothing.jsonl"])
    message = str(found.value)
    assert f"nothing.jsonl is neither in the working directory {tmp_path}" in message
    assert f"nor in the data directory {FIXTURES}" in message
    assert main(["data", *specs, "--exclude-benchmark", "nothing.jsonl", "--exact-only"]) == 1
    err = capsys.readouterr().err
    assert "nor in a data directory (none given: --data-dir DIR or $LMROUTE_DATA_DIR)" in err


class _Questions:
    """A fake embedder: every text ending in "?" gets one shared vector, other texts their own."""

    name = "fake-questions"
    dim = 4096

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i, 0 if text.rstrip().endswith("?") else 1 + zlib.crc32(text.encode()) % (self.dim - 1)] = 1
        return out


def test_cli_data_writes_battles_readable_back(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("lmroute.embeddings.get_embedder", lambda name: _Questions())
    out, rep = tmp_path / "train.jsonl", tmp_path / "report.json"
    bench = FIXTURES / "bench.jsonl"
    code = main(
        [
            "data",
            "battles:battles.jsonl",
            "gold:scores.jsonl",
            "arena:arena55k.parquet",
            "--data-dir",
            str(FIXTURES),
            "--exclude-benchmark",
            str(bench),
            "--out",
            str(out),
            "--report",
            str(rep),
            "--alias",
            "gpt-4-0314=gpt-4",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "models (" in printed and "gpt-4 " in printed and "decontaminated against" in printed
    written = read_battles_jsonl(out).battles
    report = json.loads(rep.read_text())
    assert len(written) == report["battles"]
    dropped = report["decontamination"]["dropped"]
    assert dropped[EXACT] == {"battles:battles.jsonl": 2}
    # the questions "What is 2+2?" (twice), "What's the capital...?", "What is the 10th prime?"
    # are near duplicates of "How tall is Mount Everest?" for this fake embedder
    assert dropped[NEAR] == {"arena": 3, "gold:scores": 1}
    assert {b.source for b in written} >= {"gold:scores", "arena", "gold:custom"}
    again, _ = load_sources([f"battles:{out}"], min_model_battles=1)
    assert again == written


def test_cli_data_errors_are_one_line(capsys):
    assert main(["data", "chatbot:x.csv"]) == 1
    assert "lmroute: error: unknown source kind 'chatbot'" in capsys.readouterr().err
    assert main(["data", "battles:x.jsonl", "--alias", "oops"]) == 1
    assert "--alias expects OLD=NEW" in capsys.readouterr().err


def test_real_sources_load_with_counts(data_dir):
    started = time.perf_counter()
    specs = [
        "battles:arena-hard/battles.jsonl",
        "gold:mmlu",
        "gold:gsm8k",
        "gold:mt-bench",
        "gold:zeroeval/crux.jsonl",
        "gold:zeroeval/math-l5.jsonl",
    ]
    battles, report = load_sources(specs, data_dir=data_dir)
    assert [s.battles for s in report.sources] == [5998, 14037, 1307, 72, 800 * 16, 721 * 16]
    assert not report.dropped and len(battles) == report.battles
    assert report.licences["battles:arena-hard/battles.jsonl"].startswith("Apache-2.0 (arena-hard-auto)")
    assert report.licences["gold:zeroeval/crux.jsonl"].startswith("Apache-2.0 (ZeroEval")
    assert time.perf_counter() - started < 30
    with pytest.raises(DataError, match="evaluation-only"):
        load_sources(["gold:zeroeval/gsm8k-test-EVAL-ONLY.jsonl"], data_dir=data_dir)


def test_mt_bench_gold_weighs_margins_unless_told_not_to(data_dir):
    weighted, _ = load_sources(["gold:mt-bench"], data_dir=data_dir)
    weights = np.array([b.weight for b in weighted])
    decisive = np.array([not b.winner.startswith("tie") for b in weighted])
    assert np.isclose(weights[decisive].mean(), 1.0) and weights.max() > 4 and weights[decisive].min() < 0.5
    plain, _ = load_sources(["gold:mt-bench?margins=false"], data_dir=data_dir)
    assert {b.weight for b in plain} == {1.0}
    with pytest.raises(ConfigError, match="margins must be true or false"):
        load_sources(["gold:mt-bench?margins=maybe"], data_dir=data_dir)


def test_exported_battles_keep_provenance_and_licences(tmp_path):
    from lmroute._jsonl import write_jsonl
    from lmroute.data.battles import battle_records

    battles, _ = load_sources(["alpaca-eval:alpaca", "arena:arena55k.csv"], data_dir=FIXTURES)
    path = write_jsonl(tmp_path / "export.jsonl", battle_records(battles))
    again, report = load_sources([f"battles:{path}"])
    assert Counter(b.source for b in again) == Counter(b.source for b in battles)
    licence = report.licences[f"battles:{path}"]
    assert "alpaca-eval: CC BY-NC 4.0" in licence and "arena: Apache-2.0" in licence
    assert any("CC BY-NC" in w for w in report.warnings)


def test_a_many_model_file_can_be_excluded(tmp_path, monkeypatch):
    # Only its prompts are needed to decontaminate against: no pair has to be named.
    monkeypatch.chdir(tmp_path)
    shutil.copy(FIXTURES / "battles.jsonl", tmp_path / "battles.jsonl")
    prompts = [json.loads(line)["prompt"] for line in (FIXTURES / "scores.jsonl").read_text().splitlines()]
    with (tmp_path / "battles.jsonl").open("a", encoding="utf-8") as f:
        battle = {"prompt": prompts[0], "model_a": "gpt-4-0314", "model_b": "gpt-3.5-turbo"}
        battle["winner"] = "model_a"
        f.write(json.dumps(battle) + "\n")
    specs = ["battles:battles.jsonl", "gold:scores.jsonl"]
    battles, report = prepare_battles(
        specs, data_dir=FIXTURES, exclude_benchmarks=["scores.jsonl"], threshold=None
    )
    assert report.excluded_specs == ["gold:scores.jsonl"]
    assert report.decontamination.matched == Counter({"scores": 1})
    assert prompts[0] not in {b.prompt for b in battles}
