"""The real upstream servers answer the official openai client: plain and streaming chat completions."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.llm, pytest.mark.network_loopback]

openai = pytest.importorskip("openai")

PROMPT = [{"role": "user", "content": "Count from one to twenty in words, separated by commas."}]


@pytest.fixture(params=["strong", "weak"])
def server(request, llama_servers):
    return getattr(llama_servers, request.param)


def client_for(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)


def test_each_server_lists_only_its_own_model(llama_servers):
    for server in (llama_servers.strong, llama_servers.weak):
        assert [model.id for model in client_for(server).models.list()] == [server.model]
    assert llama_servers.strong.port != llama_servers.weak.port


def test_chat_completion_is_greedy_and_bounded(server):
    client = client_for(server)
    request = dict(model=server.model, messages=PROMPT, max_tokens=8, temperature=0, seed=0)
    first = client.chat.completions.create(**request)
    second = client.chat.completions.create(**request)

    assert first.model == server.model
    choice = first.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in {"stop", "length"}
    assert 1 <= first.usage.completion_tokens <= 8
    assert first.usage.prompt_tokens > 0
    assert second.choices[0].message.content == choice.message.content


def test_streaming_arrives_token_by_token_and_matches_the_plain_answer(server):
    client = client_for(server)
    request = dict(model=server.model, messages=PROMPT, max_tokens=24, temperature=0, seed=0)
    plain = client.chat.completions.create(**request).choices[0].message.content

    start = time.perf_counter()
    arrivals: list[float] = []
    pieces: list[str] = []
    finish_reasons = []
    for chunk in client.chat.completions.create(**request, stream=True):
        assert chunk.model == server.model
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if delta:
            arrivals.append(time.perf_counter())
            pieces.append(delta)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish_reasons.append(chunk.choices[0].finish_reason)
    end = time.perf_counter()

    assert "".join(pieces) == plain
    assert finish_reasons in (["stop"], ["length"])
    assert len(pieces) >= 5
    # A buffered reply would deliver every chunk at the end; generated tokens arrive spread over the
    # generation time, so the first content chunk comes well before the last.
    assert arrivals[-1] - arrivals[0] > 0.3 * (end - start)
