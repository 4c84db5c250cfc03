"""The per-item records of ``lmroute eval --save-scores`` and ``lmroute score``."""

import numpy as np
import pytest

from lmroute.data.benchmarks import Benchmark
from lmroute.evaluation.evaluator import evaluate, item_scores, score_records
from lmroute.exceptions import DataError
from lmroute.routers.length import LengthRouter


def test_item_scores_give_every_router_score_per_item():
    prompts = ("a", "bb" * 50, "ccc" * 400)
    benchmark = Benchmark(
        "tiny",
        prompts,
        {"S": np.array([1.0, 1.0, 1.0]), "W": np.array([1.0, 0.0, 0.0])},
        "S",
        "W",
        ids=("q1", "q2", "q3"),
    )
    router = LengthRouter()
    evaluation = evaluate([router], benchmark, names=["len"])
    records = list(item_scores(evaluation, benchmark))
    assert [(r["id"], r["prompt"]) for r in records] == [("q1", "a"), ("q2", prompts[1]), ("q3", prompts[2])]
    assert [r["len"] for r in records] == pytest.approx(router.score(list(prompts)).tolist())
    assert list(records[0]) == ["id", "prompt", "len", "oracle"]
    assert all(type(r["len"]) is float and type(r["oracle"]) is float for r in records)


def test_score_records_pair_prompts_with_plain_floats():
    records = list(score_records(["x", "y"], np.array([0.25, 0.75], dtype=np.float32)))
    assert records == [{"prompt": "x", "score": 0.25}, {"prompt": "y", "score": 0.75}]
    assert type(records[0]["score"]) is float
    with pytest.raises(ValueError):
        list(score_records(["x", "y"], [0.5]))


def test_names_must_match_the_routers():
    from lmroute.exceptions import ConfigError

    bench = Benchmark(
        "b", ("a", "bb", "ccc"), {"s": np.array([1.0, 0, 1]), "w": np.array([0.0, 0, 1])}, "s", "w"
    )
    with pytest.raises(ConfigError, match="1 routers but 2 names"):
        evaluate([LengthRouter()], bench, names=["a", "b"])


def test_two_rows_of_one_name_are_refused_before_scoring():
    # The JSON report and --save-scores key routers by name: the second row replaced the first.
    from lmroute.exceptions import ConfigError

    bench = Benchmark(
        "b", ("a", "bb", "ccc"), {"s": np.array([1.0, 0, 1]), "w": np.array([0.0, 0, 1])}, "s", "w"
    )
    with pytest.raises(ConfigError, match="two rows of the results would be named 'length'"):
        evaluate([LengthRouter(), LengthRouter()], bench)
    with pytest.raises(ConfigError, match=r"named 'oracle': give each router once .*another path"):
        evaluate([LengthRouter()], bench, names=["oracle"])
    assert [r.router for r in evaluate([LengthRouter()], bench, names=["oracle"], oracle=False).results] == [
        "oracle"
    ]


def test_means_equal_but_for_rounding_are_equal_models():
    # 0.1 + 0.2 + 0.3 and 0.3 + 0.2 + 0.1 differ in the last bit: PGR would divide by 5.6e-17.
    strong, weak = np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.2, 0.1])
    assert strong.mean() != weak.mean()
    bench = Benchmark("b", ("a", "bb", "ccc"), {"s": strong, "w": weak}, "s", "w")
    with pytest.raises(DataError, match="equal mean quality"):
        evaluate([LengthRouter()], bench)


@pytest.mark.parametrize("routers", [["length"], LengthRouter(), [LengthRouter(), None]])
def test_routers_that_are_not_router_objects_are_a_config_error(routers):
    # evaluate(["length"], b) ended in AttributeError, evaluate(router, b) in TypeError.
    from lmroute.exceptions import ConfigError

    bench = Benchmark(
        "b", ("a", "bb", "ccc"), {"s": np.array([1.0, 0, 1]), "w": np.array([0.0, 0, 1])}, "s", "w"
    )
    with pytest.raises(ConfigError, match=r"evaluate\(\) takes a list of Router objects: .*load_router"):
        evaluate(routers, bench)


def test_the_oracle_sends_only_the_items_the_strong_model_does_better_on_to_it():
    # Its threshold was 0, so "strong when score >= threshold" sent every tie (both right, both
    # wrong) to the strong model: 'strong % @t' said 100% here (94.7% on MMLU, where the strong
    # model does better on 17.8%) and its cost at the threshold was the strong model's.
    bench = Benchmark(
        "b",
        ("a", "bb", "ccc", "dddd"),
        {"s": np.array([1.0, 1.0, 0.0, 1.0]), "w": np.array([1.0, 0.0, 0.0, 0.5])},
        "s",
        "w",
        costs={"s": np.full(4, 10.0), "w": np.full(4, 1.0)},
    )
    oracle = evaluate([LengthRouter()], bench).results[-1]
    assert oracle.router == "oracle"
    assert oracle.strong_share_at_threshold == 0.5 and oracle.cost_at_threshold == 5.5
    assert oracle.threshold == 0.5  # the least gain of the strong model: score >= it is strong
    never = Benchmark("n", ("a", "bb"), {"s": np.array([0.0, 1.0]), "w": np.array([1.0, 1.0])}, "s", "w")
    assert evaluate([LengthRouter()], never).results[-1].strong_share_at_threshold == 0.0
