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
    system = [text for role, text in messages if role in SYSTEM_ROLES]
    if route_on in ("last_user", "last_user_with_system"):
        last = next((text for role, text in reversed(messages) if role == "user"), None)
        if last is None:
            last = messages[-1][1] if messages else ""
        parts = [*system, last] if route_on == "last_user_with_system" else [last]
    elif route_on == "user_turns":
        parts = [text for role, text in messages if role == "user"]
    elif route_on == "conversation_without_system":
        parts = [text for role, text in messages if role not in SYSTEM_ROLES]
    else:
        parts = [text for _, text in messages]
    return "\n\n".join(part for part in parts if part)
