"""``lmroute chat``: a terminal chat that shows, for each answer, the model chosen and the score."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

from openai import APIConnectionError, OpenAI, OpenAIError

from lmroute.exceptions import ConfigError, LmrouteError

HELP = "/reset starts a new conversation, /quit (or Ctrl-D) ends"


def describe(info: dict[str, Any] | None) -> str:
    """One line about a routing decision, from an answer's ``lmroute`` object."""
    if not info:
        return "no routing information in the answer"
    model = info.get("model")
    if info.get("router") is None:
        text = f"{model} (asked by name)"
    elif info.get("mode") is not None:  # routed among N models: a policy, no score or threshold
        quality = next(
            (c.get("predicted_quality") for c in info.get("candidates", ()) if c.get("model") == model), None
        )
        if quality is None:  # the router failed: the models were tried by price
            text = f"router {info['router']} failed: model {model}"
        else:
            policy = f"{info['router']} {info['mode']} {info['value']:g}"
            text = f"{policy}: model {model}, predicted quality {quality:.4f}"
    elif info.get("score") is None:
        text = f"router {info['router']} failed: {info['decision']} model {model}"
    else:
        above = info["score"] >= info["threshold"]
        text = (
            f"{info['router']} score {info['score']:.4f} {'>=' if above else '<'} {info['threshold']:g}: "
            f"{info['decision']} model {model}"
        )
        held = (info.get("conversation") or {}).get("outcome") == "stayed"
        if held and above != (info.get("decision") == "strong"):
            text += " (the conversation stays on it)"
    if info.get("fallback"):
        text += f" (fallback: {info.get('routed_model')} failed)"
    return text


def server_client(url: str, *, api_key: str | None = None) -> OpenAI:
    """An OpenAI client of the lmroute server at ``url`` (its API is under ``/v1``; a URL ending in
    ``/v1``, the base URL an openai client is given, is the same server); without a key, a
    placeholder, which a server without authentication accepts (the SDK refuses no key at all)."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--url {url}: give a URL such as http://127.0.0.1:6060")
    root = url.rstrip("/").removesuffix("/v1")
    return OpenAI(base_url=root + "/v1", api_key=api_key or "no-key")


def run_chat(
    client: Any,
    *,
    model: str,
    system: str | None = None,
    read: Callable[[str], str] = input,
    out: TextIO | None = None,
) -> int:
    """Chat until end of input. ``client`` is an ``openai.OpenAI`` pointed at an lmroute server, or a
    :class:`lmroute.Controller`; each answer is streamed, then a line says who answered and why."""
    out = out or sys.stdout
    if system and not _utf8(system):
        raise ConfigError("the system message is not UTF-8 text (is the terminal set to UTF-8?)")
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    out.write(f"chatting with {model}; {HELP}\n")
    while True:
        try:
            line = read("you> ")
        except EOFError:
            out.write("\n")
            return 0
        command = line.strip()
        if not command:
            continue
        if command in ("/quit", "/exit"):
            return 0
        if command == "/reset":
            history = list(start)
            out.write("(new conversation)\n")
            continue
        if not _utf8(line):
            out.write("error: that line is not UTF-8 text (is the terminal set to UTF-8?)\n")
            continue
        history.append({"role": "user", "content": line})
        try:
            text, info = _ask(client, model, history, out)
        except APIConnectionError as exc:  # the SDK's message ("Connection error.") says not where
            out.write(f"\nerror: no answer from the lmroute server at {client.base_url}: {exc}\n")
            history.pop()
            continue
        except (LmrouteError, OpenAIError) as exc:  # a failed turn (upstream down, bad model): go on
            out.write(f"\nerror: {exc}\n")
            history.pop()
            continue
        history.append({"role": "assistant", "content": text})
        out.write(f"\n[{describe(info)}]\n")


def _utf8(text: str) -> bool:
    """Whether ``text`` can be sent: bytes that are not UTF-8 are read (from standard input, from
    the command line) as lone surrogates, which no JSON encoder sends."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ask(client: Any, model: str, history: list[dict[str, str]], out: TextIO) -> tuple[str, dict | None]:
    parts: list[str] = []
    info = None
    for chunk in client.chat.completions.create(model=model, messages=history, stream=True):
        extra = chunk.model_extra or {}
        if info is None and "lmroute" in extra:
            info = extra["lmroute"]
        for choice in chunk.choices:
            text = choice.delta.content if choice.delta else None
            if text:
                parts.append(text)
                out.write(text)
                out.flush()
    return "".join(parts), info
