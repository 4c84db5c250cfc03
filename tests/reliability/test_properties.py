"""Property-based tests: the model-name parser, the request models and the data readers take any
input and either succeed with a well-formed result or raise lmroute's own error, nothing else.

Every example asserts something: a test whose claim covers both outcomes checks each of them
(``try``/``except``/``else``), and one whose claim holds only for some inputs draws only those.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from lmroute.data.conversations import ROUTE_ON
from lmroute.exceptions import InvalidModelNameError, LmrouteError, RequestError
from lmroute.routing_names import MODES, RouterSpec, format_model_name, parse_model_name, split_mode
from lmroute.serving.protocol import ChatCompletionRequest, RouteRequest, parse_body, validate

pytestmark = pytest.mark.reliability

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- model names -------------------------------------------------------------------------------------

ROUTER_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,11}(-[a-z][a-z0-9_]{0,7}){0,2}", fullmatch=True)


@FAST
@given(st.text(max_size=60))
def test_any_model_string_parses_or_says_why(text):
    try:
        spec = parse_model_name(text)
    except InvalidModelNameError as exc:
        assert repr(text) in str(exc)  # the error quotes the string it refuses
    else:
        assert isinstance(spec, RouterSpec) and spec.router and text.startswith("router-")
        assert MODES[spec.mode].check(spec.value) is None


@FAST
@given(st.from_regex(r"router-[\w.-]{0,20}-[0-9.eE+-]{0,12}", fullmatch=True))
def test_near_miss_model_strings_parse_or_say_why(text):
    try:
        spec = parse_model_name(text)
    except InvalidModelNameError as exc:
        assert repr(text) in str(exc)
    else:
        assert spec.router and MODES[spec.mode].check(spec.value) is None and math.isfinite(spec.value)
        infix = "" if spec.mode == "threshold" else f"{spec.mode}-"
        assert text == f"router-{spec.router}-{infix}{text.rpartition('-')[2]}"


@FAST
@given(ROUTER_NAMES, st.floats(min_value=0.0, max_value=1.0))
def test_format_then_parse_gives_back_router_and_threshold(name, threshold):
    assume(split_mode(name)[1] == "threshold")  # "x-share" or "x-lambda" would read as router x's mode
    assert parse_model_name(format_model_name(name, threshold)) == RouterSpec(name, threshold)


#: Every float or integer outside [0, 1]: below it (down to -inf), above it (up to inf), and NaN.
OUTSIDE_UNIT_INTERVAL = st.one_of(
    st.floats(max_value=-math.ulp(0.0)),
    st.floats(min_value=math.nextafter(1.0, math.inf)),
    st.just(math.nan),
    st.integers(max_value=-1),
    st.integers(min_value=2),
)


@FAST
@given(OUTSIDE_UNIT_INTERVAL)
def test_format_refuses_thresholds_outside_the_unit_interval(threshold):
    with pytest.raises(InvalidModelNameError):
        format_model_name("mf", threshold)


# -- request bodies ----------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
ROLES = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "robot", "", 5])
CONTENT = st.one_of(
    st.text(max_size=40),
    st.none(),
    st.lists(
        st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", 3])}, optional={"text": JSON}),
        max_size=3,
    ),
    JSON,
)
MESSAGE = st.fixed_dictionaries({"role": ROLES}, optional={"content": CONTENT, "name": JSON})
CHAT_BODY = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(st.sampled_from(["router-mf-0.5", "router-length-1", "gpt-4o"]), JSON),
        "messages": st.one_of(st.lists(MESSAGE, max_size=4), JSON),
        "stream": st.one_of(st.booleans(), JSON),
        "temperature": JSON,
    },
)
ROUTE_BODY = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(st.text(max_size=20), JSON),
        "router": st.one_of(st.text(max_size=10), JSON),
        "threshold": st.one_of(st.floats(), JSON),
        "prompt": st.one_of(st.text(max_size=20), JSON),
        "messages": st.one_of(st.lists(MESSAGE, max_size=3), JSON),
    },
)


@FAST
@given(st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_any_body_bytes_parse_to_an_object_or_a_400(raw):
    try:
        body = parse_body(raw)
    except RequestError as exc:
        assert exc.status == 400 and exc.code == "invalid_json"
    else:
        assert isinstance(body, dict)
        json.dumps(body, ensure_ascii=False).encode()  # whatever is accepted can be sent upstream


@FAST
@given(CHAT_BODY)
@example({"model": "router-mf-0.5", "messages": [{"role": "user"}], "stream": None})  # null: no stream
def test_any_chat_body_validates_or_names_the_field(body):
    try:
        request = validate(ChatCompletionRequest, body)
    except RequestError as exc:
        assert exc.status == 400 and exc.code == "invalid_value" and str(exc)
    else:
        assert isinstance(request.model, str) and request.messages
        assert all(isinstance(m.text(), str) for m in request.messages)
        assert isinstance(request.stream, bool)


@FAST
@given(ROUTE_BODY)
def test_any_route_body_validates_or_names_the_field(body):
    try:
        request = validate(RouteRequest, body)
    except RequestError as exc:
        assert exc.status == 400 and str(exc)
    else:
        assert request.threshold is None or isinstance(request.threshold, float)
        assert request.prompt is None or isinstance(request.prompt, str)


#: Messages the server accepts: a known role, and content that is text, absent, or a list of parts
#: whose text (required for text parts) is a string.
VALID_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"])},
    optional={
        "content": st.one_of(
            st.text(max_size=40),
            st.none(),
            st.lists(
                st.one_of(
                    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)}),
                    st.fixed_dictionaries(
                        {"type": st.sampled_from(["image_url", "input_audio"])},
                        optional={"text": st.none() | st.text(max_size=20)},
                    ),
                ),
                max_size=3,
            ),
        ),
        "name": JSON,
    },
)


@FAST
@given(st.lists(VALID_MESSAGE, min_size=1, max_size=5), st.sampled_from(ROUTE_ON))
def test_routing_text_of_any_valid_conversation_is_text(messages, route_on):
    from lmroute.serving.service import routing_text

    request = validate(ChatCompletionRequest, {"model": "m", "messages": messages})
    text = routing_text(request.messages, route_on)
    assert isinstance(text, str)
    texts = [m.text() for m in request.messages]
    if route_on == "conversation":
        assert all(t in text for t in texts)
    elif route_on == "last_user":
        assert text in texts
    users = [m.text() for m in request.messages if m.role == "user"]
    if route_on.startswith("last_user") and users and users[-1]:
        assert text.endswith(users[-1])  # the question comes last


# -- data readers ------------------------------------------------------------------------------------

TEXT_LINES = st.lists(
    st.one_of(
        st.text(max_size=30),
        JSON.map(json.dumps),
        st.fixed_dictionaries(
            {},
            optional={
                "prompt": JSON,
                "model_a": JSON,
                "model_b": JSON,
                "winner": JSON,
                "preference": JSON,
                "annotator": JSON,
                "scores": JSON,
                "cost": JSON,
                "source": JSON,
                "id": JSON,
            },
        ).map(json.dumps),
    ),
    max_size=6,
)
FILES = st.one_of(
    st.binary(max_size=300),
    TEXT_LINES.map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")),
)


def _readers():
    from lmroute.data.arena import read_arena
    from lmroute.data.battles import read_alpaca_eval, read_battles_jsonl
    from lmroute.data.benchmarks import load_custom
    from lmroute.data.prompts import read_prompts
    from lmroute.labeling import read_items

    return {
        "prompts.jsonl": read_prompts,
        "prompts.txt": read_prompts,
        "battles.jsonl": read_battles_jsonl,
        "judgments.jsonl": read_alpaca_eval,
        "arena.csv": read_arena,
        "bench.jsonl": load_custom,
        "bench.csv": load_custom,
        "items.jsonl": read_items,
    }


@pytest.mark.parametrize("filename", list(_readers()))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=FILES)
def test_data_readers_read_or_raise_a_data_error(filename, data):
    reader = _readers()[filename]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / filename
        path.write_bytes(data)
        try:
            result = reader(path)
        except LmrouteError as exc:
            assert str(exc)
        else:
            assert result is not None
