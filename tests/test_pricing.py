"""Request prices: list prices per million tokens and an estimated answer length."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lmroute.pricing import Price, estimate_tokens
from lmroute.upstream import UpstreamConfig


def test_a_request_costs_its_prompt_and_its_expected_answer():
    price = Price(input_per_1m=2.5, output_per_1m=10, output_tokens=300)
    assert price.request_cost(1000) == pytest.approx((1000 * 2.5 + 300 * 10) / 1e6)
    assert estimate_tokens("x" * 40) == 10 and estimate_tokens("") == 1


@pytest.mark.parametrize("bad", [{"input_per_1m": -1, "output_per_1m": 1}, {"input_per_1m": 1}])
def test_negative_or_missing_prices_are_refused(bad):
    with pytest.raises(ValidationError):
        Price(**bad)


def test_an_upstream_may_carry_its_price():
    config = UpstreamConfig(
        base_url="http://127.0.0.1:1/v1", model="m", price={"input_per_1m": 1, "output_per_1m": 2}
    )
    assert config.price == Price(input_per_1m=1, output_per_1m=2)
    assert UpstreamConfig(base_url="http://127.0.0.1:1/v1", model="m").price is None
