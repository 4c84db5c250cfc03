"""Conversations that stay on their model: the margin rule, keys from history, memory bounds."""

import tracemalloc

import pytest

from lmroute.control.conversations import ConversationMemory, explicit_key, history_keys


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_conversation_keeps_its_model_until_a_turn_crosses_the_threshold_by_the_margin():
    memory = ConversationMemory(margin=0.05)
    key = explicit_key("c1", source="header")
    turns = [(0.40, "weak", "new"), (0.52, "weak", "stayed"), (0.56, "strong", "switched")]
    turns += [(0.48, "strong", "stayed"), (0.44, "weak", "switched")]
    for score, tier, outcome in turns:
        assert memory.route(key, score, 0.5) == (tier, outcome)
    counts = memory.counts
    assert (counts.new, counts.stayed, counts.switched) == (1, 2, 2)
    assert counts.held == 2  # 0.52 alone would have gone strong, 0.48 weak
    assert counts.switch_rate == pytest.approx(0.5)


def test_history_keys_chain_the_turns_of_one_conversation():
    system = ["You are terse."]
    first = history_keys(system, ["hi"])
    second = history_keys(system, ["hi", "and then?"])
    assert first.lookup is None and second.lookup == first.store
    # another system prompt, or another tenant, is another conversation
    assert history_keys(["Be verbose."], ["hi", "and then?"]).lookup != first.store
    assert history_keys(system, ["hi", "and then?"], namespace="key2").lookup != first.store
    # turns are length-prefixed: splitting the same text differently is not the same history
    assert history_keys([], ["ab", "c", "x"]).lookup != history_keys([], ["a", "bc", "x"]).lookup
    assert history_keys(system, []) is None
    # a tool's result sent back goes on with the newest turn: it is looked up where that turn was stored
    again = history_keys(system, ["hi"], answered=True)
    assert again.lookup == again.store == first.store


def test_the_memory_forgets_the_oldest_and_the_idle():
    clock = Clock()
    memory = ConversationMemory(margin=0.1, capacity=2, ttl=60, clock=clock)
    a, b, c = (explicit_key(x, source="user") for x in "abc")
    memory.route(a, 0.9, 0.5)
    memory.route(b, 0.9, 0.5)
    memory.route(c, 0.9, 0.5)  # a is forgotten: over capacity
    assert len(memory) == 2 and memory.route(a, 0.45, 0.5) == ("weak", "new")
    clock.now = 61
    assert memory.route(c, 0.45, 0.5) == ("weak", "new")  # idle too long
    # the idle are forgotten, not only when asked for: status "tracked" counted them until the
    # capacity pushed them out (a steady stream of short chats showed the capacity, for good)
    assert len(memory) == 1
    clock.now = 200
    assert len(memory) == 0


def test_a_long_conversation_id_is_not_remembered_whole():
    # A request's `user` field may be as long as the body (1 MB by default): kept whole, the
    # memory's capacity bounded how many conversations it held, not how much memory they took.
    memory = ConversationMemory()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20):
            memory.route(explicit_key(f"{i}" + "x" * 1_000_000, source="user"), 0.9, 0.5)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(memory) == 20 and held < 1_000_000
    # still the same conversation for the same id, and another for another id, source or tenant
    same = explicit_key("0" + "x" * 1_000_000, source="user")
    assert memory.route(same, 0.49, 0.5) == ("strong", "stayed")
    assert explicit_key("c", source="user").store != explicit_key("c", source="header").store
    assert explicit_key("c", source="user").store != explicit_key("c", source="user", namespace="k").store
