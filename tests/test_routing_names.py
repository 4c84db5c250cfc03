"""router-<name>-<threshold> model strings: parsing, formatting, and the errors users see."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmroute import ConfigError, InvalidModelNameError
from lmroute.routing_names import (
    RouterSpec,
    check_mode,
    format_mode_name,
    format_model_name,
    parse_model_name,
)


@pytest.mark.parametrize(
    "model, expected",
    [
        ("router-mf-0.1159", RouterSpec("mf", 0.1159)),
        ("router-sw_ranking-0.5", RouterSpec("sw_ranking", 0.5)),
        ("router-causal_llm-1", RouterSpec("causal_llm", 1.0)),
        ("router-my-router-v2-0", RouterSpec("my-router-v2", 0.0)),
        ("router-bert-.25", RouterSpec("bert", 0.25)),
        ("router-bert-1.0", RouterSpec("bert", 1.0)),
    ],
)
def test_parse(model, expected):
    assert parse_model_name(model) == expected


@pytest.mark.parametrize(
    "model, message",
    [
        ("gpt4", "does not start with 'router-'"),
        ("router-mf", "lacks a router name or threshold"),
        ("router--0.5", "lacks a router name or threshold"),
        ("router-mf-abc", "'abc' in model 'router-mf-abc' is not a decimal number"),
        ("router-mf-1.5", "outside [0, 1]"),
        ("router-mf-1e-05", "without an exponent"),
        ("router-mf-nan", "not a decimal number"),
        ("router-mf-0_5", "not a decimal number"),
        ("router-mf-", "'' in model"),
    ],
)
def test_parse_errors_show_the_expected_form(model, message):
    with pytest.raises(InvalidModelNameError) as info:
        parse_model_name(model)
    assert message in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_error_names_an_example():
    with pytest.raises(
        InvalidModelNameError, match=r"router-<router>-<threshold>, e\.g\. 'router-mf-0\.1159'"
    ):
        parse_model_name("gpt-4o")


@given(
    name=st.from_regex(r"[a-z][a-z0-9_\-]{0,12}", fullmatch=True),
    threshold=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
)
def test_format_parse_round_trip(name, threshold):
    model = format_model_name(name, threshold)
    assert "e" not in model.rsplit("-", 1)[1]
    assert parse_model_name(model) == RouterSpec(name, threshold)


def test_format_is_short_and_checked():
    assert format_model_name("mf", 0.1159) == "router-mf-0.1159"
    assert format_model_name("mf", 1e-05) == "router-mf-0.00001"
    assert format_model_name("mf", 1) == "router-mf-1"
    with pytest.raises(InvalidModelNameError):
        format_model_name("mf", 1.5)
    with pytest.raises(InvalidModelNameError):
        format_model_name("", 0.5)


@pytest.mark.parametrize(
    "model, expected",
    [
        ("router-mf-lambda-0.02", RouterSpec("mf", 0.02, "lambda")),
        ("router-mf-lambda-3", RouterSpec("mf", 3.0, "lambda")),
        ("router-sw_ranking-quality-0.6", RouterSpec("sw_ranking", 0.6, "quality")),
        ("router-my-router-quality-1", RouterSpec("my-router", 1.0, "quality")),
    ],
)
def test_parse_n_model_modes(model, expected):
    spec = parse_model_name(model)
    assert spec == expected and spec.value == expected.threshold
    assert format_mode_name(spec.router, spec.mode, spec.value) == model


@pytest.mark.parametrize(
    "model, message",
    [
        ("router-mf-quality-1.5", "quality value 1.5 in model 'router-mf-quality-1.5' must be [0, 1]"),
        ("router-mf-lambda-x", "lambda value 'x'"),
        ("router-mf-lambda-", "lambda value ''"),
        ("router--lambda-0.5", "lacks a router name"),
    ],
)
def test_mode_errors(model, message):
    with pytest.raises(InvalidModelNameError) as info:
        parse_model_name(model)
    assert message in str(info.value)


def test_an_unknown_mode_lists_the_known_ones():
    spec = parse_model_name("router-mf-budget-0.5")  # syntactically a router named "mf-budget"
    with pytest.raises(
        InvalidModelNameError, match="unknown routing mode 'budget'; known modes: lambda, quality"
    ):
        check_mode(spec.router, {"mf", "bert"})
    check_mode("mf", {"mf"})  # a known router passes
    check_mode("my-router", {"mf"})  # an unknown router is left to the caller's error
