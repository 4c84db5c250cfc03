"""What the routing service adds around the control hub: the request's conversation keys and
input tokens, calibration at start-up, and saving the state without blocking the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from lmroute.control.config import ControlConfig
from lmroute.control.conversations import ConversationKeys, explicit_key, history_keys
from lmroute.control.hub import ControlHub
from lmroute.control.state import check_state_path
from lmroute.control.taps import EmbeddingSummaries
from lmroute.exceptions import ConfigError, DataError
from lmroute.pricing import estimate_tokens
from lmroute.routers.base import Router
from lmroute.serving.protocol import ChatMessage

log = logging.getLogger("lmroute.serving")
#: Roles of the messages that answer a user turn (a reply, a tool call's result).
_ANSWER_ROLES = frozenset({"assistant", "tool", "function"})


def conversation_keys(
    messages: Sequence[ChatMessage] | str, explicit: tuple[str, str] | None, tenant: str | None
) -> ConversationKeys | None:
    """The keys of a request's conversation: its explicit id ``(id, source)`` if it has one, else
    its system prompt and user turns (None for a bare prompt)."""
    if explicit is not None:
        return explicit_key(explicit[0], source=explicit[1], namespace=tenant or "")
    if isinstance(messages, str):
        return None
    system = [m.text() for m in messages if m.role in ("system", "developer")]
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    # A tool's result sent back (or an assistant message to continue) goes on with the last user turn.
    answered = bool(users) and any(m.role in _ANSWER_ROLES for m in messages[users[-1] + 1 :])
    return history_keys(
        system, [messages[i].text() for i in users], namespace=tenant or "", answered=answered
    )


def request_tokens(messages: Sequence[ChatMessage] | str) -> float:
    """Estimated input tokens: every message is read by the model, so every one is paid for."""
    if isinstance(messages, str):
        return estimate_tokens(messages)
    return estimate_tokens("\n".join(m.text() for m in messages))


def check_control_files(config: ControlConfig) -> None:
    """The control section's files, checked before a server or Controller starts (and loads its
    routers): in the app's start-up a missing calibration file or a state file that is a folder would
    be a traceback, not one line naming the setting."""
    if config.state_file is not None:
        check_state_path(config.state_file)
    if config.calibration_prompts:
        from lmroute.data.prompts import read_prompts

        try:
            read_prompts(config.calibration_prompts)
        except DataError as exc:
            raise ConfigError(f"control.calibration_prompts: {exc}") from None


def api_key_tenant(key: str) -> str:
    """The tenant of an API key's controllers (``per_api_key``): a digest, which names them without
    keeping the key itself in memory, the state file or the metrics."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def prepare_control(
    hub: ControlHub,
    routers: Mapping[str, Router],
    summaries: EmbeddingSummaries | None,
    api_keys: Sequence[str] = (),
) -> None:
    """Restore ``hub``'s state file, less what no request can reach (a router not among
    ``routers``, an API key not among ``api_keys``, the server's), and calibrate each router on its
    ``calibration_prompts``."""
    per_key = hub.config.per_api_key and api_keys
    hub.load(routers, {api_key_tenant(key) for key in api_keys} if per_key else {None})
    path = hub.config.calibration_prompts
    if path:
        from lmroute.data.prompts import read_prompts

        prompts = read_prompts(path)
        for name, router in routers.items():
            hub.calibrate(name, router, prompts, summaries=summaries)


class StateSaver:
    """Saves a hub's state every ``save_every`` decisions in a worker thread, one save at a time.

    The snapshot is taken on the event loop, where decisions are made, so it is consistent; only
    the writing happens in the thread. A failed write is logged and shown in the status
    (``state.problem``, until a save succeeds), never raised into a request or the shutdown.
    """

    def __init__(self, hub: ControlHub):
        self.hub = hub
        self._pending: asyncio.Future[None] | None = None

    def save_if_due(self) -> None:
        if not self.hub.save_due or (self._pending is not None and not self._pending.done()):
            return
        state = self.hub.snapshot()
        self._pending = asyncio.get_running_loop().run_in_executor(None, self._write, state)

    async def final_save(self) -> None:
        """Wait for a save under way, then save the state as it is now."""
        if self._pending is not None:
            await asyncio.wait([self._pending])
        self._write(self.hub.snapshot())

    def _write(self, state: dict[str, Any]) -> None:
        try:
            self.hub.save(state)
        except OSError as exc:  # a full disk must not take the requests down
            log.warning("cannot save the control state: %s", exc)
