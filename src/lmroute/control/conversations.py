"""Conversations that stay put: a multi-turn chat keeps the model its first turn was routed to.

A conversation is identified by an explicit id (a header, or the request's ``user`` field), or else
by the hash of its earlier turns (:func:`history_keys`): the system prompt and user messages
before the newest one name the conversation a turn belongs to, and the same messages with the
newest one name it for the next turn. A request that goes on with the newest user message's turn
(an agent sending a tool's result back) belongs to the conversation that message named. Assistant
turns are left out of the hash: the answer is not known when a turn is routed, and clients may
reformat it.

A known conversation keeps its model unless the new turn's score crosses the threshold by more
than ``margin``: a weak conversation moves to the strong model when ``score >= threshold +
margin``, a strong one to the weak model when ``score < threshold - margin``. The memory is
bounded (least recently seen conversations are forgotten first) and forgets conversations idle
for ``ttl`` seconds.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from lmroute.routers.base import Decision

Outcome = Literal["new", "stayed", "switched"]
DEFAULT_MARGIN = 0.02
DEFAULT_CAPACITY = 100_000
DEFAULT_TTL = 3600.0


@dataclass(frozen=True)
class ConversationKeys:
    """Where a turn's conversation is looked up (None: a first turn) and stored for the next turn."""

    lookup: str | None
    store: str
    #: How the conversation was identified: "header", "user" or "history".
    source: str


def explicit_key(conversation_id: str, *, source: str, namespace: str = "") -> ConversationKeys:
    """Keys for a conversation named by its client (a header or the ``user`` field): a digest, as
    the id may be as long as a request (a ``user`` field of a megabyte), and the memory's capacity
    counts conversations, not bytes. "id:" keeps it apart from every history key."""
    key = "id:" + _digest(namespace, (source,), (conversation_id,))
    return ConversationKeys(key, key, source)


def history_keys(
    system: Sequence[str], user_turns: Sequence[str], *, namespace: str = "", answered: bool = False
) -> ConversationKeys | None:
    """Keys from the conversation's text: its system prompt(s) and user turns, the newest last
    (None when there is no user turn). ``answered``: the newest user turn was answered already
    (a tool call and its result follow it), so the request goes on with that turn."""
    if not user_turns:
        return None
    store = _digest(namespace, system, user_turns)
    if answered:
        return ConversationKeys(store, store, "history")
    earlier = _digest(namespace, system, user_turns[:-1]) if len(user_turns) > 1 else None
    return ConversationKeys(earlier, store, "history")


def _digest(namespace: str, system: Sequence[str], turns: Sequence[str]) -> str:
    h = hashlib.sha256(namespace.encode("utf-8", "surrogatepass"))
    for part in (*system, "\0turns", *turns):
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little") + data)  # length-prefixed: no two splits collide
    return h.hexdigest()


@dataclass
class ConversationCounts:
    """Turns by outcome since the start; the switch rate is switched / (stayed + switched)."""

    new: int = 0
    stayed: int = 0
    switched: int = 0
    #: Later turns whose own score would have gone to the other model (stickiness changed them).
    held: int = 0

    @property
    def switch_rate(self) -> float | None:
        later = self.stayed + self.switched
        return self.switched / later if later else None


class ConversationMemory:
    """The model each conversation is on, with the margin rule of the module docstring."""

    def __init__(
        self,
        *,
        margin: float = DEFAULT_MARGIN,
        capacity: int = DEFAULT_CAPACITY,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.margin = margin
        self.capacity = capacity
        self.ttl = ttl
        self.counts = ConversationCounts()
        self._clock = clock
        self._tiers: OrderedDict[str, tuple[Decision, float]] = OrderedDict()

    def __len__(self) -> int:
        """The conversations remembered: those seen within ``ttl`` seconds."""
        self._forget_idle(self._clock())
        return len(self._tiers)

    def route(self, keys: ConversationKeys, score: float, threshold: float) -> tuple[Decision, Outcome]:
        """The model for this turn and whether it is a new conversation, stayed or switched."""
        now = self._clock()
        own: Decision = "strong" if score >= threshold else "weak"
        before = self._recall(keys.lookup, now)
        tier: Decision
        outcome: Outcome
        if before is None:
            tier, outcome = own, "new"
        elif before == "weak" and score >= threshold + self.margin:
            tier, outcome = "strong", "switched"
        elif before == "strong" and score < threshold - self.margin:
            tier, outcome = "weak", "switched"
        else:
            tier, outcome = before, "stayed"
        if outcome == "stayed" and tier != own:
            self.counts.held += 1
        setattr(self.counts, outcome, getattr(self.counts, outcome) + 1)
        self._remember(keys.store, tier, now)
        return tier, outcome

    def _recall(self, key: str | None, now: float) -> Decision | None:
        if key is None or key not in self._tiers:
            return None
        tier, seen = self._tiers[key]
        if now - seen > self.ttl:
            del self._tiers[key]
            return None
        return tier

    def _remember(self, key: str, tier: Decision, now: float) -> None:
        self._tiers[key] = (tier, now)
        self._tiers.move_to_end(key)
        while len(self._tiers) > self.capacity:
            self._tiers.popitem(last=False)
        self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        # Least recently seen first: the idle ones are at the front. Kept, they were counted as
        # tracked (and held memory) until the capacity pushed them out.
        while self._tiers:
            _, seen = next(iter(self._tiers.values()))
            if now - seen <= self.ttl:
                break
            self._tiers.popitem(last=False)
