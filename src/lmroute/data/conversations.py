"""Conversations: what a router reads of a multi-turn request (cheap to import: no numpy).

A chat request is a list of messages; a router scores one text. ``route_on`` says which text:

=============================== ===================================================================
``last_user``                   the last user message (the paper's choice)
``last_user_with_system``       the system prompt(s), then the last user message
``user_turns``                  every user message, oldest first
``conversation_without_system`` every user and assistant (and tool) message, oldest first
``conversation``                every message, the system prompt first
=============================== ===================================================================

Parts are joined by a blank line, the last user message always last, so that a long-prompt policy
that reads the end of a long text (:mod:`lmroute.embeddings.long_prompts`) reads the question.
The default is measured on MT-Bench's second turns (:mod:`lmroute.data.mt_bench_turns`; README,
"Conversations and system prompts").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from lmroute.exceptions import ConfigError

RouteOn = Literal[
    "last_user", "last_user_with_system", "user_turns", "conversation_without_system", "conversation"
]
ROUTE_ON: tuple[str, ...] = get_args(RouteOn)
#: What a request is routed on unless configured otherwise (measured; see the module notes).
DEFAULT_ROUTE_ON: RouteOn = "last_user"
SYSTEM_ROLES = frozenset({"system", "developer"})

#: A message as the router sees it: (role, text).
Message = tuple[str, str]


def routing_text(messages: Sequence[Message], route_on: str) -> str:
    """The text a router scores for a conversation of ``(role, text)`` messages (see above)."""
    if route_on not in ROUTE_ON:
        raise ConfigError(f"unknown route_on {route_on!r}; known: {', '.join(ROUTE_ON)}")
    users = [i for i, (role, _) in enumerate(messages) if role == "user"]
    # The last user message, else the last message; the conversation modes move it to the end, after
    # what followed it (a tool call and its result), so that it stays the end of the text.
    at = users[-1] if users else len(messages) - 1
    last = messages[at][1] if messages else ""
    others = [(role, text) for i, (role, text) in enumerate(messages) if i != at]
    system = [text for role, text in others if role in SYSTEM_ROLES]
    before = [text for role, text in others if role not in SYSTEM_ROLES]
    if route_on == "last_user":
        parts = [last]
    elif route_on == "last_user_with_system":
        parts = [*system, last]
    elif route_on == "user_turns":
        parts = [text for i, (role, text) in enumerate(messages) if role == "user" and i != at] + [last]
    elif route_on == "conversation_without_system":
        parts = [*before, last]
    else:
        parts = [*system, *before, last]
    return "\n\n".join(part for part in parts if part)
