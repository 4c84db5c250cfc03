"""Battle readers: Arena (CSV, parquet, datasets), battles JSONL, AlpacaEval; drops counted by reason."""

from __future__ import annotations

import json
import shutil
import sys
import types
from collections import Counter
from pathlib import Path
from typing import ClassVar

import pytest
from _line_breaks import TEXT

from lmroute._jsonl import write_jsonl
from lmroute.data import battles as bt
from lmroute.data.arena import ARENA_COLUMNS, read_arena
from lmroute.data.battles import (
    Battle,
    battle_records,
    normalize_winner,
    read_alpaca_eval,
    read_battles_jsonl,
)
from lmroute.exceptions import ConfigError, DataError, DownloadError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"

ARENA_KEPT = [
    Battle("What is 2+2?", "gpt-4", "llama-2-13b", "model_a", "arena"),
    Battle("Write a haiku about rain", "llama-2-13b", "claude-2", "model_b", "arena"),
    Battle(
        'Explain "recursion", briefly,\nwith an example.\u2028Thanks ✓', "claude-2", "gpt-4", "tie", "arena"
    ),
    Battle("What is 2+2?", "gpt-4", "claude-2", "tie", "arena"),
    Battle("What's the capital of France?", "llama-2-13b", "claude-2", "tie", "arena"),
]
ARENA_DROPPED = {
    bt.EMPTY_PROMPT: 2,  # "" and a null first turn
    bt.UNKNOWN_WINNER: 1,  # two winner flags set
    bt.MALFORMED_PROMPT: 1,
    bt.SAME_MODEL: 1,
    bt.DUPLICATE_ROW: 1,
    bt.MISSING_MODEL: 1,
}


@pytest.mark.parametrize("name", ["arena55k.csv", "arena55k.parquet"])
def test_arena_file_keeps_first_turns_and_counts_drops(name):
    result = read_arena(FIXTURES / name)
    assert result.battles == ARENA_KEPT
    assert dict(result.dropped) == ARENA_DROPPED
    assert result.rows == 12
    assert "kept 5 of 12 rows" in result.describe() and "2 empty prompt" in result.describe()


def test_arena_missing_column(tmp_path):
    path = tmp_path / "arena.csv"
    path.write_text('id,model_a,model_b,prompt,winner_model_a,winner_model_b\n1,a,b,"[""x""]",1,0\n')
    with pytest.raises(DataError, match=r"missing column.*winner_tie"):
        read_arena(path)


def test_arena_parquet_missing_column_and_not_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "arena.parquet"
    pq.write_table(pa.table({"prompt": ['["x"]'], "model_a": ["a"]}), path)
    with pytest.raises(DataError, match=r"missing column.*model_b"):
        read_arena(path)
    fake = tmp_path / "fake.parquet"
    fake.write_text("prompt,model_a\n")
    with pytest.raises(DataError, match="not a readable parquet"):
        read_arena(fake)


def test_arena_parquet_with_damaged_data_pages_is_a_data_error(tmp_path):
    # The footer read, the pages were not: an OSError/ArrowException traceback while iterating.
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "arena.parquet"
    pq.write_table(pa.table({c: ['["x"]'] if c == "prompt" else ["1"] for c in ARENA_COLUMNS}), path)
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    data[4 : len(data) - 8 - footer] = b"\xff" * (len(data) - 12 - footer)  # every page, not the footer
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"arena\.parquet is not a readable parquet file") as raised:
        read_arena(path)
    assert "\n" not in str(raised.value)  # arrow's message spans lines


def test_arena_binary_wrong_suffix_missing_and_ragged(tmp_path):
    binary = tmp_path / "arena.csv"
    binary.write_bytes(b"id,model_a\n\xff\xfe\x00\x81 binary")
    with pytest.raises(DataError, match="not UTF-8"):
        read_arena(binary)
    with pytest.raises(DataError, match=r"\.csv or \.parquet"):
        read_arena(tmp_path / "arena.json")
    with pytest.raises(DataError, match="does not exist"):
        read_arena(tmp_path / "nope.csv")
    ragged = tmp_path / "ragged.csv"
    header = ",".join(ARENA_COLUMNS)
    ragged.write_text(f'{header}\n"[""x""]",a,b,1,0,0,extra\n')
    with pytest.raises(DataError, match="wrong number of fields"):
        read_arena(ragged)


def test_arena_prompt_nested_too_deeply_is_a_malformed_row(tmp_path):
    path = tmp_path / "arena.csv"
    rows = [
        '"[""hi""]",a,b,1,0,0',
        "[" * 100_000 + ",a,b,1,0,0",  # deeper than json recurses
        "[1" + "0" * 5000 + "],a,b,1,0,0",  # more digits than Python converts: a ValueError
    ]
    path.write_text(",".join(ARENA_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    result = read_arena(path)
    assert result.battles == [Battle("hi", "a", "b", "model_a", "arena")]
    assert dict(result.dropped) == {"prompt is not a JSON list of strings": 2}


def test_arena_with_only_bad_rows_is_an_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(",".join(ARENA_COLUMNS) + '\n"[""x""]",a,b,0,0,0\n')
    with pytest.raises(DataError, match=r"no valid battles.*1 unknown winner"):
        read_arena(path)


def test_arena_rows_without_a_winner_are_counted_as_such_not_as_repeats(tmp_path):
    path = tmp_path / "arena.csv"
    header = ",".join([*ARENA_COLUMNS, "response_a", "response_b"])
    rows = ['"[""x""]",a,b,1,1,0,r,s', '"[""x""]",a,b,0,0,0,r,s', '"[""x""]",a,b,1,0,0,r,s']
    path.write_text("\n".join([header, *rows]) + "\n")
    assert read_arena(path).dropped == Counter({bt.UNKNOWN_WINNER: 2})


def test_arena_from_the_hub_needs_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match="pip install datasets"):
        read_arena("hf:lmsys/lmsys-arena-human-preference-55k")


class _FakeDataset(list):
    column_names: ClassVar[list[str]] = [*ARENA_COLUMNS, "response_a", "response_b"]


def test_arena_from_the_hub_through_datasets(monkeypatch):
    calls = []
    rows = _FakeDataset(
        [
            {
                "prompt": '["Hi there"]',
                "model_a": "a",
                "model_b": "b",
                "response_a": '["x"]',
                "response_b": '["y"]',
                "winner_model_a": 0,
                "winner_model_b": 1,
                "winner_tie": 0,
            },
            {
                "prompt": '["Hi there"]',
                "model_a": "a",
                "model_b": "c",
                "response_a": '["x"]',
                "response_b": '["z"]',
                "winner_model_a": 0,
                "winner_model_b": 0,
                "winner_tie": 2,
            },
        ]
    )

    def load_dataset(name, split):
        calls.append((name, split))
        return rows

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    result = read_arena("hf:lmsys/lmsys-arena-human-preference-55k", split="train")
    assert calls == [("lmsys/lmsys-arena-human-preference-55k", "train")]
    assert result.battles == [Battle("Hi there", "a", "b", "model_b", "arena")]
    assert result.dropped == Counter({bt.UNKNOWN_WINNER: 1})

    def offline(name, split):
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(DownloadError, match="no network"):
        read_arena("hf:lmsys/lmsys-arena-human-preference-55k")


def test_battles_jsonl_good_and_bad_records():
    result = read_battles_jsonl(FIXTURES / "battles.jsonl")
    assert result.battles == [
        Battle("Sort a list in Python", "gpt-4-0314", "gpt-3.5-turbo", "model_a", "battles"),
        Battle("Sort a list in Python", "gpt-4-0314", "gpt-3.5-turbo", "model_a", "battles"),
        Battle("Name a prime number", "gpt-4-0314", "mixtral", "tie (bothbad)", "battles"),
        Battle("Name a prime number", "mixtral", "gpt-3.5-turbo", "tie", "battles"),
        Battle("Translate 'cat' to French", "mixtral", "gpt-4-0314", "model_b", "gold:custom"),
    ]
    assert dict(result.dropped) == {bt.UNKNOWN_WINNER: 2, bt.EMPTY_PROMPT: 1, bt.MISSING_MODEL: 1}
    assert result.rows == 9


def test_a_prompt_that_is_not_text_is_counted_as_such_not_as_empty(tmp_path):
    # A list of turns (Arena's prompt written as it is) was counted as an "empty prompt": every row
    # of such a file dropped for a reason its rows plainly did not have.
    rows = [
        {"prompt": p, "model_a": "x", "model_b": "y", "winner": "model_a"}
        for p in ["hi", ["hi", "more"], 7, "", None]
    ]
    path = tmp_path / "b.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = read_battles_jsonl(path)
    assert [b.prompt for b in result.battles] == ["hi"]
    assert result.describe() == "kept 1 of 5 rows; dropped 2 prompt is not a string, 2 empty prompt"
    assert dict(result.dropped) == {bt.NOT_TEXT_PROMPT: 2, bt.EMPTY_PROMPT: 2}


def test_battles_jsonl_broken_files(tmp_path):
    with pytest.raises(DataError, match=r"battles_malformed\.jsonl:3: not valid JSON"):
        read_battles_jsonl(FIXTURES / "battles_malformed.jsonl")
    wrong = tmp_path / "questions.jsonl"
    wrong.write_text('{"uid": "1", "prompt": "hi"}\n')
    with pytest.raises(DataError, match=r"missing field.*model_a, model_b, winner"):
        read_battles_jsonl(wrong)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="empty"):
        read_battles_jsonl(empty)
    binary = tmp_path / "model.jsonl"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(DataError, match="not UTF-8"):
        read_battles_jsonl(binary)
    listing = tmp_path / "list.jsonl"
    listing.write_text('["prompt", "a", "b", "model_a"]\n')
    with pytest.raises(DataError, match="expected a JSON object"):
        read_battles_jsonl(listing)


def test_written_battles_read_back(tmp_path):
    original = read_arena(FIXTURES / "arena55k.csv").battles
    path = write_jsonl(tmp_path / "out.jsonl", battle_records(original))
    assert read_battles_jsonl(path).battles == original


def test_jsonl_readers_keep_line_separators_inside_records(tmp_path):
    """U+2028 and the other characters ``str.splitlines`` breaks at stay inside their record in
    every reader of JSONL battles (this one reader always read them right; issue 13 made it the
    package's only one)."""
    from lmroute.data.custom import read_custom

    def write(name, records):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        return path

    battles = write("b.jsonl", [{"prompt": TEXT, "model_a": "x", "model_b": "y", "winner": "tie"}] * 2)
    assert [b.prompt for b in read_battles_jsonl(battles).battles] == [TEXT, TEXT]
    judged = {"prompt": TEXT, "model_a": "x", "model_b": "y", "preference": 2.0, "annotator": "j"}
    assert [b.prompt for b in read_alpaca_eval(write("j.jsonl", [judged])).battles] == [TEXT]
    scores = write("s.jsonl", [{"prompt": TEXT, "scores": {"x": 1, "y": 0}}])
    assert read_custom(scores).prompts == (TEXT,)


def test_battle_weights_are_written_read_back_and_validated(tmp_path):
    battles = [Battle("p1", "x", "y", "model_a", "gold:toy", 2.5), Battle("p2", "x", "y", "tie", "gold:toy")]
    path = write_jsonl(tmp_path / "weighted.jsonl", battle_records(battles))
    assert "weight" not in path.read_text().splitlines()[1]  # weight 1 is the default: not written
    assert read_battles_jsonl(path).battles == battles
    bad = tmp_path / "bad.jsonl"
    rows = [
        {"prompt": f"p{i}", "model_a": "x", "model_b": "y", "winner": "model_a", "weight": w}
        for i, w in enumerate([1, 0, -2, "3", True, None, 0.5, 10**400])  # 10**400: past a float's range
    ]
    bad.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = read_battles_jsonl(bad)
    assert [b.weight for b in result.battles] == [1.0, 0.5]
    assert dict(result.dropped) == {bt.BAD_WEIGHT: 6}


ALPACA = FIXTURES / "alpaca"


def test_alpaca_preferences_variants_and_self_judging():
    result = read_alpaca_eval(ALPACA)
    got = [(b.model_a, b.model_b, b.prompt, b.winner) for b in result.battles]
    a, d = "gpt4_1106_preview", "text_davinci_003"
    assert got == [
        (a, "mistral-7b", "Give me a recipe", "model_a"),  # 1.0
        (a, "mistral-7b", "Write a poem", "model_b"),  # 2.0
        (a, "mistral-7b", "Tell a joke", "tie"),  # exactly 1.5
        (a, "mistral-7b", "Explain gravity", "model_b"),  # weighted 1.73
        (a, "mistral-7b_concise", "Explain gravity", "model_a"),  # variants are kept as themselves
        (d, "mistral-7b", "Give me a recipe", "tie"),  # 0: the older encoding of a draw
        (d, "mistral-7b", "Write a poem", "model_b"),  # 1.9
    ]
    assert {b.source for b in result.battles} == {"alpaca-eval"}
    assert dict(result.dropped) == {
        bt.EXCLUDED_MODEL: 2,  # gpt4_gamed, example
        bt.BAD_PREFERENCE: 3,  # 2.5, "2", null
        bt.SAME_MODEL: 1,
        bt.SELF_JUDGED: 1,  # the claude annotator rating claude
    }


def test_alpaca_annotator_selection_and_variant_choice():
    only = read_alpaca_eval(ALPACA / "judgments.jsonl", annotators=["gpt4"], exclude_models=())
    assert {b.model_a for b in only.battles} == {"text_davinci_003"}
    assert only.dropped[bt.OTHER_ANNOTATOR] == 9
    everything = read_alpaca_eval(ALPACA, exclude_models=())
    assert {"gpt4_gamed", "example"} <= {b.model_b for b in everything.battles}
    with pytest.raises(DataError, match=r"no judgments by annotator.*nobody.*it has claude, gpt4, weighted"):
        read_alpaca_eval(ALPACA, annotators=["nobody"])


def test_alpaca_wrong_file(tmp_path):
    shutil.copy(FIXTURES / "battles.jsonl", tmp_path / "judgments.jsonl")
    with pytest.raises(DataError, match=r"missing field.*preference"):
        read_alpaca_eval(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        read_alpaca_eval(tmp_path / "nowhere")


def test_alpaca_preference_past_a_floats_range_is_dropped(tmp_path):
    # math.isfinite(10**400) raised OverflowError: a traceback instead of a counted drop
    rows = [{"prompt": "p", "model_a": "x", "model_b": "y", "preference": v} for v in (1.9, 10**400)]
    path = tmp_path / "judgments.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = read_alpaca_eval(path)
    assert [b.winner for b in result.battles] == ["model_b"]
    assert dict(result.dropped) == {bt.BAD_PREFERENCE: 1}


def test_winner_spellings_and_validation():
    assert normalize_winner("Tie(bothbad)") == "tie (bothbad)"
    assert normalize_winner(" MODEL_A ") == "model_a"
    assert normalize_winner("model_c") is None and normalize_winner(1) is None
    collector = bt.BattleCollector("x")
    for prompt, model_a, model_b, winner in [
        ("p", "a", "b", "model_a"),
        ("", "a", "b", "model_a"),
        ("p", "a", "a", "tie"),
        ("p", "a", "b", "draw"),
    ]:
        collector.add(prompt, model_a, model_b, winner, "x", 1.0)
    result = collector.result("battles")
    assert result.battles == [Battle("p", "a", "b", "model_a", "x")]
    assert dict(result.dropped) == {bt.EMPTY_PROMPT: 1, bt.SAME_MODEL: 1, bt.UNKNOWN_WINNER: 1}


def test_real_arena_hard_battles(data_dir):
    result = read_battles_jsonl(data_dir / "arena-hard" / "battles.jsonl")
    assert result.rows == 5998 and not result.dropped  # the README's row count, all valid
    assert {b.model_a for b in result.battles} == {"gpt-4-0314"}
    assert set(Counter(b.winner for b in result.battles)) == {"model_a", "model_b", "tie"}


def test_real_alpaca_eval(data_dir):
    result = read_alpaca_eval(data_dir / "alpaca-eval")
    assert result.rows == 106_991  # the README's row count
    assert result.dropped[bt.EXCLUDED_MODEL] == 2 * 805  # gpt4_gamed and example, all instructions
    assert len(result.battles) + sum(result.dropped.values()) == result.rows
    assert len({b.prompt for b in result.battles}) == 805
