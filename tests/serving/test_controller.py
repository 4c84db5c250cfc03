"""Controller / AsyncController: the openai.OpenAI shape, routing options, errors, config, chat."""

import asyncio
import io
import os
import signal
import threading

import httpx
import numpy as np
import openai
import pytest
import yaml
from fake_openai import free_port, serve_in_thread
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from lmroute import (
    AsyncController,
    ConfigError,
    Controller,
    InvalidModelNameError,
    UnknownRouterError,
    UpstreamError,
)
from lmroute.exceptions import RequestError
from lmroute.routers.base import Router
from lmroute.routers.length import LengthRouter
from lmroute.routers.mf import MFRouter
from lmroute.routers.random import RandomRouter
from lmroute.serving.app import create_app
from lmroute.serving.batcher import MicroBatcher
from lmroute.serving.chat import run_chat, server_client

MESSAGES = [{"role": "user", "content": "hello"}]


def tiers(upstreams, **options):
    return {
        "strong": {"base_url": upstreams.urls["strong"], "model": "big-model", "max_retries": 0, **options},
        "weak": {"base_url": upstreams.urls["weak"], "model": "small-model", "max_retries": 0, **options},
    }


@pytest.fixture(scope="module")
def controller(upstreams):
    with Controller(routers={"length": LengthRouter()}, **tiers(upstreams)) as c:
        yield c


def test_create_routes_like_openai(controller, upstreams):
    response = controller.chat.completions.create(model="router-length-0", messages=MESSAGES, temperature=0.5)
    assert isinstance(response, ChatCompletion)
    assert response.model == "big-model" and response.choices[0].message.content == "strong says hi"
    assert response.lmroute["decision"] == "strong" and response.lmroute["router"] == "length"
    assert response.lmroute["score"] == pytest.approx(LengthRouter().score(["hello"])[0])
    assert upstreams.strong.requests[-1]["temperature"] == 0.5

    response = controller.chat.completions.create(
        router="length", threshold=1.0, messages=MESSAGES, extra_body={"top_k": 2}
    )
    assert response.model == "small-model" and upstreams.weak.requests[-1]["top_k"] == 2


def test_streaming_yields_chunks(controller):
    chunks = list(controller.chat.completions.create(model="router-length-1", messages=MESSAGES, stream=True))
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content for c in chunks) == "weak says hi"
    assert chunks[0].lmroute["model"] == "small-model"


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"model": "gpt4"}, InvalidModelNameError, "neither router-<router>-<threshold>"),
        (
            {"model": "router-nope-0.5"},
            UnknownRouterError,
            "router 'nope' is not served here; available: length",
        ),
        ({"model": "router-length-1.5"}, InvalidModelNameError, r"outside \[0, 1\]"),
        ({"model": "router-length-abc"}, InvalidModelNameError, "not a decimal number"),
        ({"router": "length", "threshold": 1.5}, ConfigError, r"must be in \[0, 1\]"),
        ({"router": "length", "threshold": "abc"}, ConfigError, "must be a number"),
        ({"router": "length"}, ConfigError, "go together"),
        ({"model": "router-length-0.5", "router": "length", "threshold": 0.5}, ConfigError, "not both"),
        ({}, InvalidModelNameError, "no model given"),
        ({"model": "router-length-0.5", "messages": []}, ConfigError, "at least one message"),
        ({"model": "router-length-0.5", "timeout": 3}, ConfigError, "configure the upstream"),
        ({"model": 5}, InvalidModelNameError, "model must be a string"),
        ({"model": "router-length-0.5", "stop": {"a"}}, RequestError, "cannot be sent as JSON"),
        (
            {"model": "router-length-0.5", "messages": [{"role": "user", "content": "\ud800"}]},
            RequestError,
            "cannot be sent as JSON",
        ),
    ],
)
def test_errors_are_lmroute_errors(controller, upstreams, options, error, message):
    with pytest.raises(error, match=message):
        controller.chat.completions.create(**{"messages": MESSAGES, **options})
    assert not upstreams.strong.requests and not upstreams.weak.requests


def test_the_sdks_not_given_markers_leave_fields_out(controller, upstreams):
    # Code written for openai.OpenAI passes NOT_GIVEN (or omit) for options it does not set.
    response = controller.chat.completions.create(
        model="router-length-0", messages=MESSAGES, temperature=openai.NOT_GIVEN, top_p=openai.omit
    )
    assert response.choices[0].message.content == "strong says hi"
    assert "temperature" not in upstreams.strong.requests[-1] and "top_p" not in upstreams.strong.requests[-1]


def test_an_answers_message_goes_back_in_the_conversation_as_the_sdk_sends_it(controller, upstreams):
    # Code written for openai.OpenAI appends response.choices[0].message to its messages (the SDK
    # sends pydantic objects as JSON): the Controller refused it, "cannot be sent as JSON".
    first = controller.chat.completions.create(model="router-length-0", messages=MESSAGES)
    messages = [*MESSAGES, first.choices[0].message, {"role": "user", "content": "and again"}]
    second = controller.chat.completions.create(
        model="router-length-0", messages=messages, extra_body={"metadata": first.usage}
    )
    assert second.choices[0].message.content == "strong says hi"
    sent = upstreams.strong.requests[-1]
    assert sent["messages"][1] == {"role": "assistant", "content": "strong says hi"}
    assert sent["metadata"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


def test_route_takes_an_answers_message_as_create_does(controller):
    first = controller.chat.completions.create(model="router-length-0", messages=MESSAGES)
    messages = [*MESSAGES, first.choices[0].message, {"role": "user", "content": "and again"}]
    # was RequestError: "messages.1: Input should be a valid dictionary or instance of ChatMessage"
    decision = controller.route(messages, model="router-length-0.5")
    assert decision.router == "length" and decision.score == pytest.approx(
        LengthRouter().score(["and again"])[0]
    )


def test_route_refuses_an_upstream_model_as_the_server_does(controller, upstreams):
    # POST /v1/route answers 400 for a model asked for by name; route() gave a decision without a
    # score (strong, "big-model", score None): the same request, two answers.
    with serve_in_thread(create_app(upstreams.config(), routers={"length": LengthRouter()})) as url:
        answer = httpx.post(f"{url}/v1/route", json={"model": "big-model", "prompt": "hello"})
    assert answer.status_code == 400 and "scores with a router" in answer.json()["error"]["message"]
    with pytest.raises(InvalidModelNameError, match="scores with a router: use a model such as"):
        controller.route("hello", model="big-model")


def test_unknown_router_at_construction(upstreams):
    with pytest.raises(UnknownRouterError, match="unknown router 'nope'"):
        Controller(routers=["nope"], **tiers(upstreams))
    with pytest.raises(ConfigError, match="must be a list"):
        Controller(routers="length", **tiers(upstreams))
    with pytest.raises(ConfigError, match="base_url must start with http"):
        Controller(routers=["length"], strong={"base_url": "localhost:1", "model": "m"}, weak="gpt-4o-mini")
    for url in ("http://", "https://:8080/v1", "http://[::1/v1"):
        with pytest.raises(ConfigError, match="base_url needs a host"):
            Controller(routers=["length"], strong={"base_url": url, "model": "m"}, weak="gpt-4o-mini")
    with pytest.raises(ConfigError, match=r"an upstream is a mapping .*; got int"):
        Controller(routers=["length"], strong="gpt-4o", weak=5)


@pytest.mark.parametrize(
    "url, message",
    [
        # passed, then every request raised a bare ValueError ("Port out of range 0-65535")
        ("http://127.0.0.1:99999/v1", "base_url has a malformed port"),
        ("http://127.0.0.1:abc/v1", "base_url has a malformed port"),
        # passed, then every request went to .../v1?api-version=1/chat/completions: a 404
        ("http://127.0.0.1:8080/v1?api-version=1", "base_url cannot carry a query"),
        ("http://127.0.0.1:8080/v1#models", "base_url cannot carry a query"),
    ],
)
def test_a_base_url_that_no_request_could_use_is_refused_at_construction(url, message):
    weak = {"base_url": "http://127.0.0.1:1/v1", "model": "w"}
    with pytest.raises(ConfigError, match=message):
        Controller(routers=["length"], strong={"base_url": url, "model": "m"}, weak=weak)


def test_a_bad_upstream_option_names_its_tier(upstreams):
    # "invalid upstream: timeout: ..." said not which of the two upstreams was wrong.
    options = tiers(upstreams)
    with pytest.raises(ConfigError, match=r"^weak: invalid upstream: timeout: Input should be greater"):
        Controller(routers=["length"], strong=options["strong"], weak={**options["weak"], "timeout": 0})
    with pytest.raises(ConfigError, match=r"^strong: an upstream is a mapping .*; got int$"):
        Controller(routers=["length"], strong=5, weak=options["weak"])


def test_a_key_read_with_its_line_end_is_sent_without_it(upstreams, monkeypatch):
    # A key from a file (a Kubernetes secret, an env file with CRLF) ends in a line break, which
    # no HTTP header may carry: every request raised a bare ValueError ("Forbidden control
    # character detected in headers").
    monkeypatch.setenv("LINE_END_KEY", "sk-test-123\r\n")
    with Controller(routers=["length"], **tiers(upstreams, api_key_env="LINE_END_KEY")) as client:
        response = client.chat.completions.create(model="router-length-0", messages=MESSAGES)
    assert response.model == "big-model" and upstreams.strong.auth[-1] == "Bearer sk-test-123"
    monkeypatch.setenv("LINE_END_KEY", "sk-test\n123")
    with pytest.raises(ConfigError, match=r"LINE_END_KEY .*holds a line break or another control character"):
        Controller(routers=["length"], **tiers(upstreams, api_key_env="LINE_END_KEY"))


@pytest.mark.parametrize(
    "routers, message",
    [
        (None, "routers must be a list"),
        (5, "routers must be a list"),
        # served under a name that no model string reaches: router-x-share-0.5 is router x's share
        ({"x-share": LengthRouter()}, "router name 'x-share' ends in '-' or a mode word"),
        ({"": LengthRouter()}, "give a name"),
        ({"": "length"}, "give a name"),  # was served as 'length'
    ],
)
def test_routers_that_cannot_be_served_are_refused_at_construction(upstreams, routers, message):
    with pytest.raises(ConfigError, match=message):
        Controller(routers=routers, **tiers(upstreams))


def test_route_on_last_user_message_or_conversation(upstreams):
    messages = [
        {"role": "user", "content": "a long first question " * 20},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "short"},
    ]
    length = LengthRouter()
    with Controller(routers=["length"], **tiers(upstreams)) as last:
        decision = last.route(messages, model="router-length-0.1")
        assert decision.score == pytest.approx(length.score(["short"])[0]) and decision.tier == "weak"
        assert last.route("x" * 1000, router="length", threshold=0.5).model == "big-model"
    with Controller(routers=["length"], route_on="conversation", **tiers(upstreams)) as whole:
        decision = whole.route(messages, model="router-length-0.1")
        text = "\n\n".join(m["content"] for m in messages)
        assert decision.score == pytest.approx(length.score([text])[0]) and decision.tier == "strong"


def test_async_controller_with_fallback(upstreams):
    async def main():
        strong_down = tiers(upstreams)
        strong_down["strong"]["base_url"] = f"http://127.0.0.1:{free_port()}/v1"
        async with AsyncController(routers={"length": LengthRouter()}, **strong_down) as client:
            response = await client.chat.completions.create(model="router-length-0", messages=MESSAGES)
            assert response.model == "small-model" and response.lmroute["fallback"] is True
            stream = await client.chat.completions.create(
                model="router-length-0", messages=MESSAGES, stream=True
            )
            return [chunk async for chunk in stream]

    chunks = asyncio.run(main())
    assert chunks[0].lmroute["fallback"] is True and chunks[-1].choices[0].delta.content == "hi"


def test_async_controller_closes_as_openai_async_client_does(upstreams, tmp_path):
    # openai.AsyncOpenAI closes with `await client.close()`; AsyncController had only aclose(), so
    # code moved over from the SDK failed with AttributeError and never saved the control state.
    state = tmp_path / "control.json"

    async def main() -> None:
        client = AsyncController(
            routers={"length": LengthRouter()}, control={"state_file": str(state)}, **tiers(upstreams)
        )
        await client.chat.completions.create(model="router-length-share-0.5", messages=MESSAGES)
        await client.close()

    asyncio.run(main())
    assert state.exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX's")
def test_a_controller_made_before_a_fork_says_so_in_the_child(upstreams):
    # A server that forks its workers after import (gunicorn --preload, a multiprocessing pool)
    # left each child a copy without the controller's thread: every call waited forever.
    client = Controller(routers={"length": LengthRouter()}, **tiers(upstreams))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        signal.alarm(10)  # the old code waited forever
        try:
            client.chat.completions.create(model="router-length-0", messages=MESSAGES)
            said = "answered"
        except BaseException as exc:
            said = f"{type(exc).__name__}: {exc}"
        client.close()  # the parent's to close: nothing to do here, at once
        os.write(write, said.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        said = pipe.read()
    os.waitpid(pid, 0)
    assert said.startswith("ConfigError: this Controller was made in another process")
    assert client.chat.completions.create(model="router-length-0", messages=MESSAGES).model == "big-model"
    client.close()


def test_a_closed_async_controller_refuses_calls(upstreams):
    # As a closed Controller does; it called the model on a new connection pool, never closed.
    async def main() -> None:
        client = AsyncController(routers={"length": LengthRouter()}, **tiers(upstreams))
        await client.chat.completions.create(model="router-length-0", messages=MESSAGES)
        await client.close()
        await client.close()  # twice is fine, as for openai.AsyncOpenAI
        with pytest.raises(ConfigError, match="this AsyncController is closed"):
            await client.chat.completions.create(model="router-length-0", messages=MESSAGES)
        with pytest.raises(ConfigError, match="this AsyncController is closed"):
            await client.route("hello", model="router-length-0")

    asyncio.run(main())
    assert len(upstreams.strong.requests) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_closing_an_async_controller_during_a_call_opens_no_new_connection_pool(upstreams, stream):
    # A retry (or a fallback) that came after close() opened a new connection pool that nothing
    # closed, and the call was answered by the weak model after the controller had closed.
    upstreams.strong.mode = "status"
    options = tiers(upstreams)
    options["strong"].update(max_retries=1, retry_backoff=0.5)

    async def main() -> None:
        client = AsyncController(routers={"length": LengthRouter()}, **options)
        call = asyncio.ensure_future(
            client.chat.completions.create(model="router-length-0", messages=MESSAGES, stream=stream)
        )
        while not upstreams.strong.requests:
            await asyncio.sleep(0.01)
        await client.close()
        with pytest.raises(ConfigError, match="this AsyncController was closed during the call"):
            await call
        assert all(u.client._session is None for u in client._service.upstreams.values())

    asyncio.run(main())
    assert upstreams.weak.requests == []


def _soon(condition) -> bool:
    for _ in range(200):
        if condition():
            return True
        threading.Event().wait(0.01)
    return False


def test_closing_a_controller_ends_the_calls_other_threads_wait_for(upstreams):
    # close() stopped the event loop under calls in flight: their threads waited forever.
    upstreams.strong.mode, upstreams.strong.delay = "hang", 5.0
    upstreams.weak.mode, upstreams.weak.delay = "slow_stream", 5.0
    client = Controller(routers={"length": LengthRouter()}, **tiers(upstreams))
    stream = client.chat.completions.create(model="router-length-1", messages=MESSAGES, stream=True)
    assert next(stream).choices[0].delta.content == "weak "
    errors: list[BaseException] = []

    def call(ask) -> None:
        try:
            ask()
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(
            target=call,
            args=(lambda: client.chat.completions.create(model="router-length-0", messages=MESSAGES),),
            daemon=True,
        ),
        threading.Thread(target=call, args=(lambda: next(stream),), daemon=True),
    ]
    for thread in threads:
        thread.start()
    assert _soon(lambda: len(upstreams.strong.requests) == 1)
    client.close()
    for thread in threads:
        thread.join(timeout=3)
    assert not any(thread.is_alive() for thread in threads)
    assert len(errors) == 2 and all(isinstance(e, ConfigError) for e in errors)
    assert all("closed" in str(e) for e in errors)
    stream.close()  # after the controller: nothing left to close, and no error
    assert _soon(lambda: upstreams.strong.cut == 1 and upstreams.weak.cut == 1)


def test_closing_a_stream_stops_the_upstream_call_read_or_not(controller, upstreams):
    # As with the openai SDK's Stream: close() (or a with block) ends the upstream call, which would
    # otherwise go on generating (and billing) until the Controller closes.
    upstreams.strong.mode, upstreams.strong.delay = "slow_stream", 5.0
    stream = controller.chat.completions.create(model="router-length-0", messages=MESSAGES, stream=True)
    stream.close()
    assert _soon(lambda: upstreams.strong.cut == 1)
    with controller.chat.completions.create(model="router-length-0", messages=MESSAGES, stream=True) as read:
        assert next(read).lmroute["model"] == "big-model"
    assert _soon(lambda: upstreams.strong.cut == 2)
    assert list(read) == []  # closed: no more chunks
    for _ in controller.chat.completions.create(model="router-length-0", messages=MESSAGES, stream=True):
        break
    assert _soon(lambda: upstreams.strong.cut == 3)  # a stream dropped unfinished is closed too

    async def unread(client: AsyncController) -> None:
        stream = await client.chat.completions.create(model="router-length-0", messages=MESSAGES, stream=True)
        await stream.aclose()
        assert await asyncio.to_thread(_soon, lambda: upstreams.strong.cut == 4)
        async with await client.chat.completions.create(
            model="router-length-0", messages=MESSAGES, stream=True
        ) as stream:
            assert (await anext(stream)).lmroute["model"] == "big-model"
        assert await asyncio.to_thread(_soon, lambda: upstreams.strong.cut == 5)

    async def main() -> None:
        async with AsyncController(routers={"length": LengthRouter()}, **tiers(upstreams)) as client:
            await unread(client)

    asyncio.run(main())


@pytest.mark.parametrize(
    "mode, message", [("drop", "broke off the stream"), ("cut_short", "before the answer was finished")]
)
def test_stream_failure_raises_upstream_error(controller, upstreams, mode, message):
    upstreams.strong.mode = mode
    stream = controller.chat.completions.create(model="router-length-0", messages=MESSAGES, stream=True)
    with pytest.raises(UpstreamError, match=message):
        list(stream)


def test_from_config_yaml(upstreams, tmp_path, monkeypatch):
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({**tiers(upstreams, api_key_env="WEAK_KEY_VAR"), "routers": ["length"]}))
    monkeypatch.setenv("WEAK_KEY_VAR", "secret-weak")
    with Controller.from_config(path) as client:
        response = client.chat.completions.create(model="router-length-1", messages=MESSAGES)
    assert response.model == "small-model" and upstreams.weak.auth[-1] == "Bearer secret-weak"

    monkeypatch.delenv("WEAK_KEY_VAR")
    with pytest.raises(ConfigError, match="environment variable WEAK_KEY_VAR"):
        Controller.from_config(path)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"strong": {"base_url": "http://x", "model": "m", "api_key": "sk-1"}}, "'api_key' is not allowed"),
        (
            {
                "models": [
                    {"base_url": "http://x/v1", "model": m, "api_key": "sk-1", "price": {"input_per_1m": 1}}
                    for m in ("a", "b")
                ]
            },
            "'api_key' is not allowed",
        ),
        ({"strong": {"base_url": "http://x", "model": "m"}}, "has no 'weak' section"),
        (
            {"strong": {"base_url": "http://x", "model": "m"}, "weak": "w", "fallback": "sometimes"},
            "fallback",
        ),
        (
            {"strong": {"base_url": "http://x", "model": "m", "api_key_env": "sk-abc/123"}, "weak": "w"},
            "NAME of an environment variable",
        ),
        ({"strong": "s", "weak": "w", "thresholds": {"mf": 1.5}}, "outside [0, 1]"),
        ({"strong": "s", "weak": "w", "thresholds": {"mf": True}}, "thresholds.mf.0"),
        ({"strong": "s", "weak": "w", "thresholds": {"mf": [0.5, "0.6"]}}, "thresholds.mf.1"),
        ({"strong": "s", "weak": "w", "thresholds": {"mf": []}}, "thresholds.mf"),
        ({"strong": "s", "weak": "w", "colour": "blue"}, "colour"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_config_file_errors(tmp_path, content, message):
    from lmroute.serving.config import build_config

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError) as info:
        build_config(path)
    assert message in str(info.value)
    assert "sk-1" not in str(info.value)


def test_flags_override_the_file(tmp_path, monkeypatch):
    from lmroute.serving.config import build_config

    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({"strong": "gpt-4o", "weak": {"base_url": "http://h/v1", "model": "w"}}))
    monkeypatch.setenv("LMROUTE_API_KEYS", "a,b")
    config = build_config(
        path, overrides={"weak": {"model": "w2", "timeout": None}, "server": {"port": 7000}}
    )
    assert (
        config.strong.base_url == "https://api.openai.com/v1"
        and config.strong.api_key_env == "OPENAI_API_KEY"
    )
    assert config.weak.model == "w2" and config.weak.base_url == "http://h/v1" and config.weak.timeout == 60
    assert config.server.port == 7000 and config.server.host == "127.0.0.1"
    assert [k.get_secret_value() for k in config.server.api_keys] == ["a", "b"]
    assert "a" not in repr(config.server.api_keys)
    assert build_config(path, api_keys=["c"]).server.api_keys[0].get_secret_value() == "c"


def test_flags_on_a_bare_model_name_or_a_section_that_is_no_mapping(tmp_path, monkeypatch):
    # `lmroute serve --config f --timeout 30` merged the flag into 'gpt-4o' and crashed (TypeError).
    from lmroute.serving.config import build_config

    monkeypatch.delenv("LMROUTE_API_KEYS", raising=False)
    path = tmp_path / "serve.yaml"
    path.write_text("strong: gpt-4o\nweak: gpt-4o-mini\n")
    config = build_config(path, overrides={"strong": {"timeout": 30.0}, "weak": {"max_retries": 0}})
    assert (config.strong.model, config.strong.timeout, config.strong.api_key_env) == (
        "gpt-4o",
        30.0,
        "OPENAI_API_KEY",
    )
    assert config.weak.base_url == "https://api.openai.com/v1" and config.weak.max_retries == 0

    for section, got in [("server:\n", "got nothing"), ("server: [7000]\n", "got list")]:
        path.write_text("strong: gpt-4o\nweak: gpt-4o-mini\n" + section)
        for kwargs in ({"overrides": {"server": {"port": 7000}}}, {"api_keys": ["k"]}):
            with pytest.raises(ConfigError, match=f"in {path}: server: expected a mapping .*{got}"):
                build_config(path, **kwargs)


def test_chat_shows_the_model_and_score(controller):
    lines = iter(["hello", "/reset", "again", "/quit"])
    out = io.StringIO()
    assert run_chat(controller, model="router-length-0.001", read=lambda prompt: next(lines), out=out) == 0
    text = out.getvalue()
    assert text.count("strong says hi") == 2
    assert "[length score 0.0099 >= 0.001: strong model big-model]" in text

    out = io.StringIO()
    lines = iter(["hello"])

    def read(prompt):
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    assert run_chat(controller, model="router-nope-0.5", read=read, out=out) == 0
    assert "error: router 'nope' is not served here" in out.getvalue()


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_chat_takes_the_servers_url_with_or_without_v1(upstreams, suffix):
    # /v1 is how the openai client is given the server (quickstart): every turn answered 404.
    with serve_in_thread(create_app(upstreams.config())) as url, server_client(url + suffix) as client:
        lines, out = iter(["hello", "/quit"]), io.StringIO()
        assert run_chat(client, model="router-length-0", read=lambda _: next(lines), out=out) == 0
    assert "strong says hi\n[length score" in out.getvalue(), out.getvalue()


def test_chat_refuses_a_line_that_is_not_utf8_and_goes_on(upstreams):
    # Standard input decodes bad bytes to lone surrogates, which the openai client cannot encode:
    # chat with a server ended in a UnicodeEncodeError traceback.
    with serve_in_thread(create_app(upstreams.config())) as url, server_client(url) as client:
        lines, out = iter(["caf\udce9", "hello", "/quit"]), io.StringIO()
        assert run_chat(client, model="router-length-0", read=lambda _: next(lines), out=out) == 0
    assert "error: that line is not UTF-8 text" in out.getvalue()
    assert "strong says hi" in out.getvalue() and len(upstreams.strong.requests) == 1
    assert upstreams.strong.requests[0]["messages"] == [{"role": "user", "content": "hello"}]
    with pytest.raises(ConfigError, match="system message is not UTF-8"):
        run_chat(client, model="router-length-0", system="caf\udce9", read=lambda _: "hello")


def test_chat_names_the_server_it_cannot_reach_and_refuses_a_url_without_a_scheme():
    # Each turn said only "error: Connection error.", with no word of where it tried.
    url = f"http://127.0.0.1:{free_port()}"
    with server_client(url) as client:
        lines, out = iter(["hello", "/quit"]), io.StringIO()
        assert run_chat(client, model="router-length-0", read=lambda _: next(lines), out=out) == 0
    assert f"error: no answer from the lmroute server at {url}/v1/: Connection error." in out.getvalue()
    with pytest.raises(
        ConfigError, match=r"--url 127\.0\.0\.1:6060: give a URL such as http://127\.0\.0\.1:6060"
    ):
        server_client("127.0.0.1:6060")


def test_chat_says_when_a_conversation_stays_on_its_model(upstreams):
    # The turn held on the weak model read "score 0.1667 < 0.05", which is false.
    long = "x" * 100
    score = LengthRouter().score([long])[0]
    control = {"conversations": {"enabled": True, "margin": 0.5}}
    with Controller(routers=["length"], control=control, **tiers(upstreams)) as controller:
        lines, out = iter(["hi", long, "/quit"]), io.StringIO()
        assert run_chat(controller, model="router-length-0.05", read=lambda _: next(lines), out=out) == 0
    assert f"[length score {score:.4f} >= 0.05: weak model small-model (the conversation stays on it)]" in (
        out.getvalue()
    )


class _Recording(Router):
    name = "recording"

    def __init__(self):
        super().__init__()
        self.batches = []

    def _score(self, prompts):
        self.batches.append(list(prompts))
        return np.array([len(p) / 100 for p in prompts])


def test_micro_batcher_batches_concurrent_prompts_and_caps_the_size():
    async def main(max_batch, max_wait, n):
        router = _Recording()
        batcher = MicroBatcher(router, max_batch=max_batch, max_wait=max_wait)
        scores = await asyncio.gather(*(batcher.score("x" * i) for i in range(n)))
        return router.batches, scores

    batches, scores = asyncio.run(main(64, 0.0, 10))
    assert batches == [["x" * i for i in range(10)]] and scores == [i / 100 for i in range(10)]
    batches, _ = asyncio.run(main(4, 0.0, 10))
    assert [len(b) for b in batches] == [4, 4, 2]
    batches, _ = asyncio.run(main(64, 0.01, 5))
    assert [len(b) for b in batches] == [5]


def test_micro_batcher_passes_router_errors_to_every_caller():
    class Broken(Router):
        name = "broken"

        def _score(self, prompts):
            raise RuntimeError("scoring failed")

    async def main():
        batcher = MicroBatcher(Broken())
        return await asyncio.gather(batcher.score("a"), batcher.score("b"), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in results)


def test_micro_batcher_scores_a_fast_router_on_the_event_loop():
    import threading

    class Fast(_Recording):
        fast_scoring = True

        def _score(self, prompts):
            self.threads = getattr(self, "threads", set()) | {threading.current_thread().name}
            return super()._score(prompts)

    async def main(router):
        sizes = []
        batcher = MicroBatcher(router, on_batch=sizes.append)
        scores = await asyncio.gather(*(batcher.score("x" * i) for i in range(3)))
        return scores, sizes

    router = Fast()
    scores, sizes = asyncio.run(main(router))
    assert scores == [0.0, 0.01, 0.02] and sizes == [1, 1, 1]
    assert router.threads == {threading.main_thread().name}  # no hop to a scoring thread
    assert LengthRouter.fast_scoring and RandomRouter.fast_scoring and not MFRouter.fast_scoring


def test_micro_batcher_keeps_two_batches_in_flight():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    release = threading.Event()

    class Gate(_Recording):
        def _score(self, prompts):
            scores = super()._score(prompts)
            release.wait(5)
            return scores

    async def main(router, executor):
        batcher = MicroBatcher(router, executor=executor)
        tasks = []
        for i in range(6):
            tasks.append(asyncio.create_task(batcher.score(f"p{i}")))
            await asyncio.sleep(0.02)
        started = [len(b) for b in router.batches]  # two in the pool, the other four wait
        release.set()
        await asyncio.gather(*tasks)
        return started, [len(b) for b in router.batches]

    with ThreadPoolExecutor(2) as executor:
        started, batches = asyncio.run(main(Gate(), executor))
    assert started == [1, 1] and batches == [1, 1, 4]
