"""The catalogue of deployed models and price files: costs, served names, and bad prices."""

import numpy as np
import pytest

from lmroute.budget import calibrate_policy, knob_for_budget, knob_for_quality
from lmroute.catalogue import Catalogue, CatalogueModel, parse_model_specs, read_prices
from lmroute.exceptions import ConfigError, UnknownModelError
from lmroute.pricing import Price

PRICES = """
big: {input_per_1m: 10, output_per_1m: 30, source: "https://example.com", as_of: "2024-11", estimated: false}
small: {input_per_1m: 0.1, output_per_1m: 0.2, output_tokens: 100}
"""


def test_price_file_keeps_its_facts(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(PRICES)
    prices = read_prices(path)
    assert prices["big"].price == Price(input_per_1m=10, output_per_1m=30)
    assert prices["big"].facts == {"source": "https://example.com", "as_of": "2024-11", "estimated": False}
    assert prices["small"].price.output_tokens == 100


def test_other_prices_of_a_model_are_facts_not_misspelt_fields(tmp_path):
    """batch_input_per_1m (a provider's batch price) read as a misspelt input_per_1m: an error."""
    path = tmp_path / "p.yaml"
    path.write_text(
        "m: {input_per_1m: 2.5, output_per_1m: 10, batch_input_per_1m: 1.25, cached-input-per-1m: 1}"
    )
    listing = read_prices(path)["m"]
    assert listing.facts == {"batch_input_per_1m": 1.25, "cached-input-per-1m": 1}
    assert listing.price == Price(input_per_1m=2.5, output_per_1m=10)


def test_shipped_example_prices_cover_the_shared_data(data_dir):
    """examples/prices.yaml prices every model of the multi-model files, with source and date."""
    from lmroute.data.custom import read_custom

    prices = read_prices(REPO / "examples" / "prices.yaml")
    for name in (
        "mmlu-pro/outcomes.jsonl",
        "llmrouter/outcomes.jsonl",
        "zeroeval/crux.jsonl",
        "arena-hard/scores.jsonl",
    ):
        missing = [m for m in read_custom(data_dir / name).models if m not in prices]
        assert not missing, (name, missing)
    assert all({"source", "as_of", "estimated"} <= set(p.facts) for p in prices.values())


@pytest.mark.parametrize(
    "text, message",
    [
        ("m: {output_per_1m: 1}", "model 'm': missing input_per_1m"),
        ("m: {input_per_1m: 1}", "missing output_per_1m"),
        (
            "m: {input_per_1m: -1, output_per_1m: 1}",
            "input_per_1m: Input should be greater than or equal to 0",
        ),
        ("m: {input_per_1m: cheap, output_per_1m: 1}", "input_per_1m"),
        ("m: 3", "expected a mapping"),
        ("[1, 2]", "must map model names to prices"),
        ("m: {input_per_1m: 1, output_per_1m: 1, output_tokens: 0}", "output_tokens"),
        # kept as a fact, it left every answer at the default 300 tokens
        (
            "m: {input_per_1m: 1, output_per_1m: 1, output_token: 3000}",
            "model 'm': 'output_token' is not a price field; did you mean output_tokens?",
        ),
        ("m: {input_per_1m: 1, output_per_1m: 1, Output-Tokens: 3000}", "did you mean output_tokens"),
        # reported as "missing input_per_1m and output_per_1m", the keys given not named
        (
            "m: {input_per_1M: 2.5, output_per_1M: 10}",
            "model 'm': 'input_per_1M' is not a price field; did you mean input_per_1m?",
        ),
        ("m: {input_per_1k: 0.0025, output_per_1m: 1}", "'input_per_1k' is not a price field"),
        # YAML's yes/true: pydantic took it for a price of $1
        (
            "m: {input_per_1m: yes, output_per_1m: 1}",
            "input_per_1m: a number is wanted, not the boolean True",
        ),
        ("m: {input_per_1m: 1, output_per_1m: 1, output_tokens: false}", "output_tokens: a number is wanted"),
    ],
)
def test_bad_price_files(tmp_path, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        read_prices(path)
    assert str(path) in str(info.value)


def test_catalogue_maps_served_names_and_estimates_costs():
    prices = {
        "big": Price(input_per_1m=10, output_per_1m=30),
        "small": Price(input_per_1m=0.1, output_per_1m=0.2),
    }
    cat = Catalogue.from_prices(["gpt=big", "small"], prices)
    assert cat.names == ["gpt", "small"] and cat.vocabulary == ["big", "small"]
    # a 400-character prompt is 100 tokens: big (100 * 10 + 300 * 30) / 1e6 $ = 0.01 $ = 10 $ per 1,000
    np.testing.assert_allclose(cat.costs(["x" * 400]), [[10.0, (100 * 0.1 + 300 * 0.2) / 1e3]])
    assert cat.subset(["small"]).names == ["small"]
    with pytest.raises(ConfigError, match=r"model .tiny. has no price in p\.yaml: add an entry") as plain:
        Catalogue.from_prices(["tiny"], prices, where="p.yaml")
    assert str(plain.value).endswith("for 'tiny'")  # it said "for 'tiny' or 'tiny'"
    with pytest.raises(ConfigError, match=r"for 'mine' or 'tiny'$"):
        Catalogue.from_prices(["mine=tiny"], prices, where="p.yaml")
    # an entry spelt in another case was not named: "add an entry" for a model the file seemed to have
    with pytest.raises(ConfigError, match=r"model 'Big' has no price in p\.yaml \(it has 'big': names must"):
        Catalogue.from_prices(["Big"], prices, where="p.yaml")
    with pytest.raises(ConfigError, match=r"\(it has 'small': names must match exactly\)"):
        Catalogue.from_prices(["mine=SMALL"], prices, where="p.yaml")
    with pytest.raises(UnknownModelError, match="not in the catalogue"):
        cat.subset(["nope"])


@pytest.mark.parametrize(
    "specs, message",
    [(["a="], "write NAME or SERVED=VOCABULARY"), (["a", "a=b"], "named twice: a"), ([], "no models")],
)
def test_bad_model_specs(specs, message):
    with pytest.raises(ConfigError, match=message):
        parse_model_specs(specs)


def test_catalogue_refuses_duplicates_and_nothing():
    price = Price(input_per_1m=1, output_per_1m=1)
    with pytest.raises(ConfigError, match="at least one model"):
        Catalogue([])
    with pytest.raises(ConfigError, match="listed twice"):
        Catalogue([CatalogueModel("a", "a", price), CatalogueModel("a", "b", price)])


QUALITY = np.array([[0.5, 0.9], [0.8, 0.82], [0.4, 0.7], [0.6, 0.6]])
COST = np.tile([1.0, 10.0], (4, 1))


def test_budget_and_target_quality_by_hand():
    # budget 5.5 $/1k: half the prompts may go dear; the two with the largest gains (0.4, 0.3) do
    value, choices = knob_for_budget("lambda", QUALITY, COST, 5.5)
    assert choices.tolist() == [1, 0, 1, 0]
    assert 0.02 / 9 < value < 0.3 / 9  # any lambda there makes these choices; not a tie point
    # target mean quality 0.7: cheapest knob reaching it; (0.9 + 0.8 + 0.7 + 0.6) / 4 = 0.75 reaches it
    _, choices = knob_for_quality("lambda", QUALITY, COST, 0.7)
    assert np.take_along_axis(QUALITY, choices[:, None], 1).mean() >= 0.7
    assert choices.tolist() == [1, 0, 1, 0]


def test_a_budget_below_the_cheapest_model_is_an_error_naming_the_least_cost():
    with pytest.raises(ConfigError, match=r"below the least these models can cost on these prompts: \$1 "):
        knob_for_budget("lambda", QUALITY, COST, 0.5)
    with pytest.raises(ConfigError, match=r"best reachable is 0\.7550"):
        knob_for_quality("quality", QUALITY, COST, 0.99)
    with pytest.raises(ConfigError, match="either a budget"):
        calibrate_policy(None, None, ["p"], budget=1.0, target_quality=0.5)  # type: ignore[arg-type]


def test_a_budget_the_quality_policy_cannot_meet_names_what_it_spends():
    # A shrunk quality below 0 is below every tau: the first prompt never goes to its cheap model,
    # so the quality policy spends at least $2 where the models' least is $1. A budget of $1.5 is
    # not "below the least these models can cost: $1".
    quality = np.array([[-0.1, 0.5], [0.2, 0.6]])
    cost = np.array([[1.0, 3.0], [1.0, 3.0]])
    with pytest.raises(ConfigError, match=r"least the quality policy spends on these prompts: \$2 "):
        knob_for_budget("quality", quality, cost, 1.5)
    assert knob_for_budget("lambda", quality, cost, 1.5)[1].tolist() == [0, 0]
    assert knob_for_budget("quality", quality, cost, 2.0)[1].tolist() == [1, 0]


from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def test_calibrating_on_many_prompts_keeps_one_choice_per_prompt_in_memory():
    # Every knob value's choices were kept at once (400 values x 8 bytes per prompt, three times
    # over): 640 MB for these 100,000 prompts, 6 GB for a million logged prompts of one's own traffic.
    import tracemalloc

    rng = np.random.default_rng(0)
    quality = rng.uniform(size=(100_000, 3))
    cost = np.tile([1.0, 3.0, 10.0], (100_000, 1)) * rng.uniform(0.5, 1.5, size=(100_000, 1))
    tracemalloc.start()
    try:
        value, choices = knob_for_budget("lambda", quality, cost, 4.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100e6, peak
    assert cost[np.arange(100_000), choices].mean() <= 4.0 < cost.max(axis=1).mean()
    assert value > 0
