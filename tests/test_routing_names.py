"""router-<name>-<threshold> model strings: parsing, formatting, and the errors users see."""

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lmroute import ConfigError, InvalidModelNameError
from lmroute.routing_names import (
    MODES,
    RouterSpec,
    format_model_name,
    parse_model_name,
    split_mode,
    unknown_mode_hint,
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
        ("router-mf-share-0.30", RouterSpec("mf", 0.3, "share")),
        ("router-my-router-share-1", RouterSpec("my-router", 1.0, "share")),
        ("router-mf-spend-2.5", RouterSpec("mf", 2.5, "spend")),
        ("router-mf-spend-1200", RouterSpec("mf", 1200.0, "spend")),
        # a router may be named after a mode: only a mode word before the value is a mode
        ("router-share-0.3", RouterSpec("share", 0.3)),
    ],
)
def test_parse(model, expected):
    assert parse_model_name(model) == expected


def test_only_the_threshold_mode_has_a_fixed_threshold():
    assert parse_model_name("router-mf-0.4").threshold == 0.4
    assert parse_model_name("router-mf-share-0.4").threshold is None
    assert parse_model_name("router-mf-share-0.4").model == "router-mf-share-0.4"


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
        # digits of other scripts (Arabic-Indic, fullwidth), which float() reads: not the grammar's
        ("router-mf-\u0660.\u0665", "not a decimal number"),
        ("router-mf-share-\uff11", "share '\uff11' in model 'router-mf-share-\uff11' is not a decimal"),
        ("router-mf-", "'' in model"),
        ("router-mf-share-1.5", "share 1.5 in model 'router-mf-share-1.5' is outside [0, 1]"),
        ("router-mf-share-x", "write it like 0.3"),
        ("router-mf-share--0.2", "share -0.2 is negative"),
        ("router-mf-spend--5", "spend -5 is negative"),
        ("router-mf-spend-abc", "write it like 2.5"),
        (
            "router-mf-spend-1000000001",
            "spend 1000000001 in model 'router-mf-spend-1000000001' must be a number",
        ),
        ("router-length--0.1", "threshold -0.1 is negative"),
        ("router--share-0.3", "lacks a router name"),
    ],
)
def test_parse_errors_show_the_expected_form(model, message):
    with pytest.raises(InvalidModelNameError) as info:
        parse_model_name(model)
    assert message in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_error_names_an_example():
    with pytest.raises(InvalidModelNameError, match=r"router-<router>-<threshold>, e\.g\. 'router-mf-0\.52'"):
        parse_model_name("gpt-4o")


@given(
    name=st.from_regex(r"[a-z][a-z0-9_\-]{0,12}", fullmatch=True),
    threshold=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
)
def test_format_parse_round_trip(name, threshold):
    assume(not name.endswith("-") and split_mode(name)[1] == "threshold")
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
    assert spec == expected and spec.threshold is None  # no fixed threshold: a policy's knob
    assert format_model_name(spec.router, spec.value, mode=spec.mode) == model


@pytest.mark.parametrize(
    "model, message",
    [
        ("router-mf-quality-1.5", "quality 1.5 in model 'router-mf-quality-1.5' is outside [0, 1]"),
        ("router-mf-lambda-x", "lambda 'x'"),
        ("router-mf-lambda-", "lambda ''"),
        ("router-mf-lambda--1", "lambda -1 is negative"),
        ("router--lambda-0.5", "lacks a router name"),
    ],
)
def test_n_model_mode_errors(model, message):
    with pytest.raises(InvalidModelNameError) as info:
        parse_model_name(model)
    assert message in str(info.value)


@given(
    name=st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
    mode=st.sampled_from(sorted(MODES)),
    value=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
)
def test_every_mode_round_trips(name, mode, value):
    assume(MODES[mode].check(value) is None)
    assert parse_model_name(format_model_name(name, value, mode=mode)) == RouterSpec(name, value, mode)


# "x-1e": router-x-1e-0.5 reads as a threshold with an exponent, refused by parse_model_name
@pytest.mark.parametrize("name", ["x-share", "a-", "mf-spend", "x-1e", "mf-2.5E"])
def test_format_refuses_router_names_that_would_not_read_back(name):
    with pytest.raises(InvalidModelNameError, match="ends in '-' or a mode word"):
        format_model_name(name, 0.5)


@pytest.mark.parametrize("alias", ["x-share", "mf-1e"])
def test_a_server_refuses_a_router_name_no_model_string_can_ask_for(alias):
    from lmroute.exceptions import ConfigError
    from lmroute.serving.loading import load_routers

    # router-x-share-0.5 is router x's share mode: a router served as "x-share" was unreachable,
    # and GET /v1/models, which writes its names, answered 400.
    with pytest.raises(ConfigError, match=f"router spec '{alias}=length': router name '{alias}'"):
        load_routers([f"{alias}=length"])


def test_an_unknown_mode_word_gets_a_hint_listing_the_modes():
    assert "the modes are share, spend, lambda, quality" in unknown_mode_hint("mf-budget")
    assert unknown_mode_hint("mf") is None and unknown_mode_hint("mf-v2") is None
