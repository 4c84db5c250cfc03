"""Threshold calibration: hand-checked thresholds and shares, the CLI, and the Arena-Hard download."""

import json
import re

import numpy as np
import pytest
from _line_breaks import TEXT
from hypothesis import given
from hypothesis import strategies as st

from lmroute import ConfigError, DataError
from lmroute.calibration import (
    arena_hard_prompts,
    calibrate,
    calibrate_scores,
    calibration_prompts,
    format_calibration,
    read_arena_hard,
    strong_share,
    threshold_for_strong_share,
)
from lmroute.cli import main
from lmroute.routers.length import LengthRouter
from lmroute.routing_names import parse_model_name

SCORES = [0.1, 0.2, 0.2, 0.4, 0.9]


def test_strong_share_by_hand():
    # >= 0.2: four of five; > 0.9: none; >= 0: all.
    assert strong_share(SCORES, [0.0, 0.2, 0.3, 0.9, 0.95]).tolist() == [1.0, 0.8, 0.4, 0.2, 0.0]


@pytest.mark.parametrize(
    "share, threshold, achieved",
    [
        (0.0, 0.95, 0.0),  # above the top score: gap (0.9, 1]
        (0.2, 0.7, 0.2),  # only 0.9: gap (0.4, 0.9], shortest decimal near 0.65
        (0.4, 0.3, 0.4),  # 0.9 and 0.4: gap (0.2, 0.4]
        (0.5, 0.3, 0.4),  # 0.4 and 0.8 are equally near 0.6... 0.4 is nearer 0.5
        (0.6, 0.3, 0.4),  # a tie between 0.4 and 0.8 takes the smaller share
        (0.8, 0.2, 0.8),  # the two 0.2 scores go together: gap (0.1, 0.2]
        (1.0, 0.1, 1.0),  # everything: gap (0, 0.1]
    ],
)
def test_threshold_for_strong_share_by_hand(share, threshold, achieved):
    t = threshold_for_strong_share(SCORES, share)
    assert t == threshold
    assert strong_share(SCORES, [t])[0] == achieved


def test_threshold_edges():
    assert threshold_for_strong_share([1.0, 0.5], 0.0) == 1.0  # a score of 1 cannot be excluded
    assert threshold_for_strong_share([0.0, 0.0], 1.0) == 0.0
    assert threshold_for_strong_share([0.115931, 0.115934], 0.5) == 0.115932
    with pytest.raises(ConfigError, match=r"fraction in \[0, 1\] \(0.5 for 50%\)"):
        threshold_for_strong_share(SCORES, 50)
    with pytest.raises(DataError, match="non-empty"):
        threshold_for_strong_share([], 0.5)
    with pytest.raises(DataError, match="finite"):
        threshold_for_strong_share([0.1, float("nan")], 0.5)


@given(
    scores=st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=60),
    share=st.floats(0, 1, allow_nan=False),
)
def test_threshold_is_the_best_cut(scores, share):
    t = threshold_for_strong_share(scores, share)
    assert 0.0 <= t <= 1.0
    achieved = strong_share(scores, [t])[0]
    # No threshold at all (any sample score, or above them all) comes nearer the target.
    possible = strong_share(scores, [*scores, min(np.nextafter(max(scores), 2.0), 1.0)])
    assert abs(achieved - share) <= np.abs(possible - share).min() + 1e-9


def test_calibrate_with_a_router_and_table():
    prompts = ["x" * n for n in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)]
    result = calibrate(LengthRouter(), prompts, 0.3, thresholds=[0.0, 1.0])
    assert result.router == "length" and result.n_prompts == 10
    assert result.achieved_share == 0.3
    scores = LengthRouter().score(prompts)
    assert scores[6] < result.threshold <= scores[7]
    assert result.table == ((0.0, 1.0), (1.0, 0.0))
    default = calibrate_scores(scores, 0.3)
    assert [s for _, s in default.table] == [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]


def test_cli_calibrate_on_own_prompts(tmp_path, capsys):
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join("x" * n for n in range(1, 101)))
    out = tmp_path / "cal.json"
    assert (
        main(
            [
                "calibrate",
                "--router",
                "length",
                "--strong-pct",
                "0.25",
                "--prompts",
                str(path),
                "--thresholds",
                "0.05",
                "0.1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["achieved_share"] == 0.25 and result["n_prompts"] == 100
    assert f"model: router-length-{result['threshold']}" in text
    assert result["model"] == f"router-length-{result['threshold']}"
    assert "own prompts is best" in text
    assert [row["threshold"] for row in result["table"]] == [0.05, 0.1]


def test_cli_calibrate_rejects_percent(tmp_path, capsys):
    path = tmp_path / "prompts.txt"
    path.write_text("a\nbb\n")
    assert main(["calibrate", "--router", "length", "--strong-pct", "50", "--prompts", str(path)]) == 1
    assert "0.5 for 50%" in capsys.readouterr().err


def test_arena_hard_download_into_cache(public_data, tmp_path, capsys):
    prompts = arena_hard_prompts()
    assert len(prompts) == 500 and all(isinstance(p, str) and p for p in prompts)
    assert (tmp_path / "cache" / "arena-hard" / "questions.jsonl").is_file()
    assert public_data.requested == ["/arena-hard-v0.1/question.jsonl"]
    assert main(["calibrate", "--router", "length", "--strong-pct", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "on 500 prompts (the public Arena-Hard v0.1 sample)" in text
    share = float(re.search(r"sends ([\d.]+)% of these prompts", text).group(1))
    assert abs(share - 50) < 1  # prompts of equal length tie
    assert len(public_data.requested) == 1  # the second time from the cache


def test_calibration_prompts_say_where_they_came_from(public_data, tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("first\nsecond\n")
    assert calibration_prompts(path) == (["first", "second"], str(path))
    prompts, source = calibration_prompts(None)
    assert len(prompts) == 500 and source == "the public Arena-Hard v0.1 sample"


def test_calibrate_reads_the_data_folder_offline(data_dir, tmp_path, monkeypatch, capsys):
    """Issue 20: with --data-dir or LMROUTE_DATA_DIR, calibrate uses the folder's Arena-Hard prompts
    and downloads nothing (every download source is unreachable here)."""
    monkeypatch.setenv("LMROUTE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LMROUTE_PROMPTS_URL", "http://127.0.0.1:9/unreachable")
    monkeypatch.delenv("LMROUTE_DATA_DIR", raising=False)
    args = ["calibrate", "--router", "length", "--strong-pct", "0.3"]
    assert main([*args, "--data-dir", str(data_dir)]) == 0
    by_flag = capsys.readouterr().out
    monkeypatch.setenv("LMROUTE_DATA_DIR", str(data_dir))
    assert main(args) == 0
    assert capsys.readouterr().out == by_flag
    assert "on 500 prompts" in by_flag and not (tmp_path / "cache").exists()
    monkeypatch.delenv("LMROUTE_DATA_DIR")
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data-dir" in err and "arena-hard/questions.jsonl" in err


def test_read_arena_hard_both_layouts(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        json.dumps({"uid": "1", "prompt": "new layout"})
        + "\n"
        + json.dumps({"question_id": "2", "turns": [{"content": "old layout"}]})
        + "\n"
    )
    assert read_arena_hard(path) == ["new layout", "old layout"]
    path.write_text('{"uid": "1"}\n')
    with pytest.raises(DataError, match="no 'prompt'"):
        read_arena_hard(path)


def test_read_arena_hard_prompts_with_line_separators(tmp_path):
    """U+2028 and the other characters ``str.splitlines`` breaks at stay inside their prompt
    (issue 13: the question reader split records at them)."""
    path = tmp_path / "q.jsonl"
    records = [{"uid": "1", "prompt": TEXT}, {"question_id": "2", "turns": [{"content": f"old {TEXT}"}]}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    assert read_arena_hard(path) == [TEXT, f"old {TEXT}"]


def test_a_numpy_share_is_a_share():
    scores = [0.1, 0.5, 0.9]
    expected = threshold_for_strong_share(scores, 0.5)
    assert threshold_for_strong_share(scores, np.float32(0.5)) == expected
    assert threshold_for_strong_share(scores, np.float64(0.5)) == expected


@pytest.mark.parametrize("thresholds", [["a"], [None], "0.5", [[0.1]], 0.5, [float("nan")], [True], [1.5]])
def test_thresholds_that_are_not_numbers_in_0_1_are_a_config_error(thresholds):
    with pytest.raises(ConfigError, match="thresholds must be"):
        calibrate_scores([0.1, 0.5, 0.9], 0.5, thresholds=thresholds)


def test_thresholds_may_be_any_collection_of_numbers():
    expected = calibrate_scores([0.1, 0.5, 0.9], 0.5, thresholds=[0.2, 0.7]).table
    for thresholds in (np.array([0.7, 0.2]), (0.2, 0.7), {0.7, 0.2}, [np.float64(0.2), 0.7], [0.2, 0.7, 0.2]):
        got = calibrate_scores([0.1, 0.5, 0.9], 0.5, thresholds=thresholds).table
        assert got == expected


def test_the_printed_thresholds_give_the_printed_shares():
    # Scores closer than 5 significant digits: the table showed 0.51235 for 50%, which sends 25%.
    scores = [0.2, 0.51234561, 0.51234569, 0.9]
    text = format_calibration(calibrate_scores(scores, 0.5), source="four prompts")
    shown = re.search(r"threshold for 50\.0% strong: (\S+) ", text).group(1)
    assert strong_share(scores, [float(shown)])[0] == 0.5
    rows = re.findall(r"^ *([0-9.e-]+) +([0-9.]+)%$", text, re.MULTILINE)
    assert len(rows) == 5
    for threshold, share in rows:
        assert strong_share(scores, [float(threshold)])[0] * 100 == pytest.approx(float(share))


@pytest.mark.parametrize("scores", [["a", "b"], [None, 0.5], [{"x": 1}]])
def test_scores_that_are_not_numbers_are_a_data_error(scores):
    # They ended in numpy's ValueError / TypeError.
    with pytest.raises(DataError, match="scores must be finite numbers"):
        calibrate_scores(scores, 0.5)


def test_the_json_names_the_model_string_also_for_a_tiny_threshold():
    """``f"router-length-{threshold}"`` of a threshold like 5e-05 is a name the server refuses; the
    JSON's ``model`` is written positionally and reads back as the same threshold."""
    result = calibrate_scores(np.array([1e-5, 2e-5, 8e-5, 9e-5]), 0.5, router="length").to_dict()
    assert "e-" in str(result["threshold"])
    assert result["model"] == f"router-length-{np.format_float_positional(result['threshold'], trim='-')}"
    assert parse_model_name(result["model"]).value == result["threshold"]


def test_an_empty_prompt_file_name_is_refused_not_taken_for_the_public_sample(data_dir, tmp_path, capsys):
    # --prompts "$PROMPTS" with the variable unset calibrated on the Arena-Hard sample, without a
    # word but the source in the first line: the threshold printed (and --json) was not for the
    # traffic asked for.
    report = tmp_path / "c.json"
    argv = ["calibrate", "--router", "length", "--strong-pct", "0.3", "--prompts", ""]
    argv += ["--data-dir", str(data_dir)]
    assert main([*argv, "--json", str(report)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and not report.exists()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "--prompts" in lines[0] and "empty" in lines[0], lines
