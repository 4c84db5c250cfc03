"""Benchmark loaders: the reference's decontamination counts, positions, custom files, bad files."""

import csv
import json

import numpy as np
import pytest
from _line_breaks import TEXT

from lmroute.data.benchmarks import load_benchmark, load_custom
from lmroute.data.public import locate
from lmroute.exceptions import DataError, UnknownModelError


@pytest.fixture(scope="module")
def public(data_dir):
    return {name: load_benchmark(name, data_dir=data_dir) for name in ("mmlu", "gsm8k", "mt-bench")}


def test_decontaminated_counts_and_qualities(public):
    assert len(public["mmlu"]) == 14037
    assert len(public["gsm8k"]) == 1307
    assert len(public["mt-bench"]) == 72
    expected = {"mmlu": (80.587, 68.091), "gsm8k": (85.769, 63.734), "mt-bench": (9.2118, 8.28125)}
    for name, (strong, weak) in expected.items():
        b = public[name]
        assert b.strong.mean() * b.scale == pytest.approx(strong, abs=1e-3)
        assert b.weak.mean() * b.scale == pytest.approx(weak, abs=1e-3)


def test_mmlu_rows_are_kept_by_position(public):
    mmlu = public["mmlu"]
    prompts = np.array(mmlu.prompts, dtype=object)
    _, counts = np.unique(prompts, return_counts=True)
    assert (counts > 1).sum() == 105  # repeated prompt strings stay separate rows
    assert len(set(mmlu.ids)) == len(mmlu)


def test_mt_bench_routes_on_first_turn_and_averages_both(public):
    mt = public["mt-bench"]
    assert all(len(f) == 1 for f in mt.followups)
    assert ((mt.strong >= 1) & (mt.strong <= 10)).all()  # means of two 1-10 judge scores


def test_data_dir_may_be_the_parent_or_the_folder(data_dir):
    assert locate("gsm8k", data_dir=data_dir) == locate("gsm8k", data_dir=data_dir / "routellm-evals")


def test_missing_data_dir_and_missing_file(tmp_path, data_dir):
    with pytest.raises(DataError, match="does not exist"):
        load_benchmark("gsm8k", data_dir=tmp_path / "nope")
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "contaminated_prompts.jsonl").write_text('{"eval_prompt": "x"}\n')
    with pytest.raises(DataError, match=r"gsm8k_responses\.csv does not exist"):
        load_benchmark("gsm8k", data_dir=tmp_path)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_custom_jsonl(tmp_path):
    path = _write_jsonl(
        tmp_path / "b.jsonl",
        [
            {
                "prompt": "a",
                "scores": {"big": 1, "small": 0},
                "id": "q1",
                "category": "math",
                "cost": {"big": 0.01, "small": 0.001},
            },
            {"prompt": "b", "scores": {"big": 0.5, "small": 0.5}, "cost": {"big": 0.02, "small": 0}},
        ],
    )
    bench = load_custom(path)
    assert (bench.strong_model, bench.weak_model) == ("big", "small")
    assert bench.ids == ("q1", "1") and bench.categories == ("math", "")
    np.testing.assert_allclose(bench.strong, [1, 0.5])
    np.testing.assert_allclose(bench.costs["big"], [0.01, 0.02])
    named = load_custom(path, strong_model="small", weak_model="big")
    assert named.strong_model == "small"


_ITEM = '{"prompt": "%s", "scores": {"big": 1, "small": 0}%s}\n'


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([', "cost": "cheap"'], r":1: 'cost' must be an object of model -> number, got 'cheap'"),
        ([', "cost": {"big": "x", "small": 1}'], r":1: cost of 'big' must be a number >= 0, got 'x'"),
        ([', "cost": {"big": -1, "small": 1}'], r":1: cost of 'big' must be a number >= 0"),
        ([', "cost": {"big": true, "small": 1}'], r":1: cost of 'big' must be a number >= 0"),
        ([', "cost": {"big": 1, "small": 1}', ""], r":2: no 'cost', but earlier lines have costs"),
        (["", ', "cost": {"big": 1, "small": 1}'], r":2: 'cost' here, but not on the lines before"),
        ([', "cost": {"big": 1, "small": 1}', ', "cost": {"big": 1}'], r":2: cost models differ"),
        ([', "cost": {"huge": 1}'], r":1: a cost for 'huge', which has no score"),
    ],
)
def test_bad_costs_are_named(tmp_path, lines, message):
    """Issue 21 item 5: a bad cost was an AttributeError, a bad score, or silently dropped."""
    path = tmp_path / "b.jsonl"
    path.write_text("".join(_ITEM % (f"p{i}", extra) for i, extra in enumerate(lines)))
    with pytest.raises(DataError, match=message):
        load_custom(path)


def test_custom_csv(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text('prompt,m1,m2\n"multi\nline",True,False\nx,0.5,1\n')
    bench = load_benchmark(path, strong_model="m1", weak_model="m2")
    assert bench.prompts == ("multi\nline", "x")
    np.testing.assert_allclose(bench.weak, [0, 1])


def test_a_csv_byte_that_is_not_utf8_is_found_by_line_and_file_offset(tmp_path):
    # The byte was counted from the start of the block the reader decoded: 6,987 for byte 88,907.
    path = tmp_path / "b.csv"
    rows = "".join(f"question {i},1,0\n" for i in range(5000))
    path.write_bytes(f"prompt,m1,m2\n{rows}".encode() + b"bad \xff,1,0\n")
    with pytest.raises(DataError, match=r"b\.csv is not UTF-8 text \(line 5002, byte 88907\)"):
        load_custom(path)


def test_empty_csv_prompt_is_refused(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("prompt,m1,m2\nx,1,0\n  ,1,0\n")
    with pytest.raises(DataError, match=r"b\.csv:3: 'prompt' is empty"):
        load_custom(path, strong_model="m1", weak_model="m2")


def test_csv_errors_name_the_file_line_as_jsonl_errors_do(tmp_path):
    # the header is line 1; the second data row starts on line 4 after a quoted two-line prompt
    path = tmp_path / "b.csv"
    path.write_text('prompt,m1,m2\n"two\nlines",1,0\nx,high,1\n')
    with pytest.raises(DataError, match=r"b\.csv:4: score of 'm1' is not a number"):
        load_custom(path, strong_model="m1", weak_model="m2")
    path.write_text("prompt,m1,m2\nx,1,0\ny,1\n")
    with pytest.raises(DataError, match=r"b\.csv:3: wrong number of fields"):
        load_custom(path, strong_model="m1", weak_model="m2")


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ('{"prompt": "a", "scores": {"A": 1, "B": 0}}\n{"prompt": "b"\n', ":2: not valid JSON"),
        ('{"prompt": "a", "scores": {"A": "high", "B": 0}}\n', ":1: score of 'A' is not a number"),
        ('{"prompt": "", "scores": {"A": 1, "B": 0}}\n', ":1: 'prompt' must be a non-empty"),
        ('{"prompt": "a", "scores": {"A": true, "B": 0}}\n', ":1: score of 'A' is true, not a number"),
        ('{"prompt": "a", "scores": {"A": 1}}\n', "scores of 1 model \\(A\\): a benchmark needs two"),
        (
            '{"prompt": "a", "scores": {"A": 1, "B": 0}, "cost": {"A": -1}}\n',
            ":1: cost of 'A' must be a number >= 0",
        ),
        ('{"prompt": "a", "scores": {"A": 1, "B": 0}, "cost": 3}\n', ":1: 'cost' must be an object"),
        ('{"prompt": "a", "scores": {"A": 1}}\n{"prompt": "b", "scores": {"B": 1}}\n', "no line has a score"),
        ("[1, 2]\n", ":1: expected a JSON object"),
        # integers past a float's range: float() and math.isfinite() raised OverflowError
        ('{"prompt": "a", "scores": {"A": 1%s, "B": 0}}\n' % ("0" * 400), ":1: score of 'A' is not a number"),
        (
            '{"prompt": "a", "scores": {"A": 1, "B": 0}, "cost": {"A": 1%s}}\n' % ("0" * 400),
            ":1: cost of 'A' must be a number >= 0",
        ),
    ],
)
def test_bad_custom_jsonl(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_custom(path)


def test_bad_custom_files(tmp_path):
    three = _write_jsonl(tmp_path / "3.jsonl", [{"prompt": "a", "scores": {"A": 1, "B": 0, "C": 1}}])
    with pytest.raises(DataError, match="name the pair"):
        load_custom(three)
    with pytest.raises(UnknownModelError, match="it has: A, B, C"):
        load_custom(three, strong_model="A", weak_model="Z")
    csv = tmp_path / "nocol.csv"
    csv.write_text("question,A\nx,1\n")
    with pytest.raises(DataError, match="missing column"):
        load_custom(csv)
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(DataError, match="not UTF-8"):
        load_custom(binary)
    with pytest.raises(DataError, match=r"missing\.jsonl does not exist"):
        load_benchmark(tmp_path / "missing.jsonl")


def test_custom_files_hold_prompts_with_line_separators(tmp_path):
    """U+2028 and the other characters ``str.splitlines`` breaks at stay inside one JSONL line or
    CSV field (issue 13: the benchmark reader split records at them)."""
    rows = [
        {"prompt": TEXT, "scores": {"big": 1, "small": 0}},
        {"prompt": "b", "scores": {"big": 1, "small": 1}},
    ]
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert load_custom(jsonl).prompts == (TEXT, "b")
    table = tmp_path / "b.csv"
    with open(table, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "big", "small"])
        writer.writerows([[TEXT, 1, 0], ["b", 1, 1]])
    assert load_custom(table).prompts == (TEXT, "b")


def test_unknown_model_for_public_benchmark(data_dir):
    with pytest.raises(UnknownModelError, match="gpt-4-1106-preview"):
        load_benchmark("mt-bench", data_dir=data_dir, strong_model="gpt-5")


def test_an_mt_bench_question_without_an_id_is_a_data_error(data_dir, tmp_path):
    # A KeyError traceback: the judgements' ids were checked, the questions' were not.
    import shutil

    folder = tmp_path / "routellm-evals" / "mt_bench"
    shutil.copytree(data_dir / "routellm-evals" / "mt_bench", folder)
    questions = folder / "question.jsonl"
    records = [json.loads(line) for line in questions.read_text().splitlines()]
    questions.write_text("".join(json.dumps({"turns": r["turns"]}) + "\n" for r in records))
    with pytest.raises(DataError, match=r"question\.jsonl:\d+: bad 'question_id'"):
        load_benchmark("mt-bench", data_dir=tmp_path)


@pytest.mark.parametrize("score", [float("nan"), float("inf"), 10**400, True])
def test_an_mt_bench_judgement_that_is_no_score_is_a_data_error(data_dir, tmp_path, score):
    # NaN and infinity were taken as scores (every metric of the evaluation came out NaN or
    # infinite), true as 1, and an integer past a float's range was an OverflowError traceback.
    import shutil

    folder = tmp_path / "routellm-evals" / "mt_bench"
    shutil.copytree(data_dir / "routellm-evals" / "mt_bench", folder)
    judgements = folder / "judgements.jsonl"
    records = [json.loads(line) for line in judgements.read_text().splitlines()]
    records[2]["score"] = score
    judgements.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(DataError, match=r"judgements\.jsonl:3: score of '.+' is .*not a number"):
        load_benchmark("mt-bench", data_dir=tmp_path)


@pytest.mark.parametrize("record", [{"error": "Not Found"}, {"eval_prompt": None}])
def test_a_contamination_list_line_without_its_prompt_is_a_data_error(data_dir, tmp_path, record):
    # Lines without an 'eval_prompt' were skipped (a JSON error answer kept as the file left the
    # contaminated questions in: 80 MT-Bench items, not 72, the paper's numbers silently off), and
    # a null one was the prompt "None".
    import shutil

    folder = tmp_path / "routellm-evals" / "mt_bench"
    shutil.copytree(data_dir / "routellm-evals" / "mt_bench", folder)
    (folder / "contaminated_prompts.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(DataError, match=r"contaminated_prompts\.jsonl:1: .*'eval_prompt'"):
        load_benchmark("mt-bench", data_dir=tmp_path)


@pytest.mark.parametrize("name", ["question.jsonl", "judgements.jsonl"])
def test_an_infinite_mt_bench_question_id_is_a_data_error(data_dir, tmp_path, name):
    # int(1e999) raised OverflowError, which the check of the ids let through as a traceback
    import shutil

    folder = tmp_path / "routellm-evals" / "mt_bench"
    shutil.copytree(data_dir / "routellm-evals" / "mt_bench", folder)
    lines = (folder / name).read_text().splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), "question_id": float("inf")}).replace("Infinity", "1e999")
    (folder / name).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{name}:2: bad"):
        load_benchmark("mt-bench", data_dir=tmp_path)


def test_one_model_as_both_of_a_public_benchmarks_pair_is_refused(data_dir):
    # It reached the evaluation, which refused it for "equal mean quality ... route between another pair".
    with pytest.raises(DataError, match=r"must differ \(both are gpt-4-1106-preview\)"):
        load_benchmark("mt-bench", data_dir=data_dir, weak_model="gpt-4-1106-preview")


def test_lines_lacking_a_model_of_the_pair_are_skipped_and_counted(tmp_path, capsys):
    """Lines may carry different model sets (issue 14): a line lacking the strong or the weak
    model is left out and counted, whatever other models it has."""
    path = _write_jsonl(
        tmp_path / "gaps.jsonl",
        [
            {"prompt": "a", "scores": {"A": 1, "B": 0, "C": 1}, "cost": {"A": 0.1, "B": 0.01}},
            {"prompt": "b", "scores": {"A": 0, "B": 1}, "cost": {"A": 0.2, "B": 0.02}},
            {"prompt": "c", "scores": {"A": 1, "C": 0}, "cost": {"A": 0.3}},
            {"prompt": "d", "scores": {"B": 1, "C": 0}, "cost": {"B": 0.04}},
        ],
    )
    bench = load_custom(path, strong_model="A", weak_model="B")
    assert bench.prompts == ("a", "b") and bench.skipped == 2
    assert "skipped 2 of 4 lines" in capsys.readouterr().err
    np.testing.assert_allclose(bench.costs["A"], [0.1, 0.2])
    np.testing.assert_allclose(bench.costs["B"], [0.01, 0.02])
    # each line prices the first line's cost models that it scores, no fewer
    unpriced = tmp_path / "unpriced.jsonl"
    unpriced.write_text(path.read_text().replace(', "cost": {"B": 0.04}', ', "cost": {"C": 0.04}'))
    with pytest.raises(DataError, match=r":4: cost models differ"):
        load_custom(unpriced, strong_model="A", weak_model="B")
    two = _write_jsonl(
        tmp_path / "two.jsonl",
        [{"prompt": "a", "scores": {"A": 1, "B": 0}}, {"prompt": "b", "scores": {"A": 1}}],
    )
    bench = load_custom(two)
    assert (bench.strong_model, bench.weak_model, bench.skipped, len(bench)) == ("A", "B", 1, 1)


def test_the_strong_model_of_an_unnamed_pair_is_the_better_on_the_lines_compared(tmp_path, capsys):
    # A is right on the four lines B lacks, so A had the higher mean over all its lines and was
    # named strong; on the three lines evaluated B is the better, and the table warned that the pair
    # lmroute itself picked was the wrong way round.
    rows = [{"prompt": "p", "scores": {"A": 0, "B": 1}}, {"prompt": "q", "scores": {"A": 1, "B": 0}}]
    rows += [{"prompt": "r", "scores": {"A": 0, "B": 1}}]
    rows += [{"prompt": f"only A {i}", "scores": {"A": 1}} for i in range(4)]
    bench = load_custom(_write_jsonl(tmp_path / "gaps.jsonl", rows))
    assert (bench.strong_model, bench.weak_model, bench.skipped) == ("B", "A", 4)
    assert bench.strong.mean() > bench.weak.mean()
    assert "strong model B, weak model A" in capsys.readouterr().err
