"""What a router reads of a conversation (``route_on``), and MT-Bench's second turns."""

import pytest

from lmroute.data.conversations import DEFAULT_ROUTE_ON, ROUTE_ON, routing_text
from lmroute.data.mt_bench_turns import mt_bench_second_turns
from lmroute.exceptions import ConfigError

MESSAGES = [
    ("system", "You are a careful assistant."),
    ("user", "first question"),
    ("assistant", "an answer"),
    ("tool", "a tool result"),
    ("user", "second question"),
]


@pytest.mark.parametrize(
    "route_on, text",
    [
        ("last_user", "second question"),
        ("last_user_with_system", "You are a careful assistant.\n\nsecond question"),
        ("user_turns", "first question\n\nsecond question"),
        ("conversation_without_system", "first question\n\nan answer\n\na tool result\n\nsecond question"),
        (
            "conversation",
            "You are a careful assistant.\n\nfirst question\n\nan answer\n\na tool result\n\nsecond question",
        ),
    ],
)
def test_each_setting_by_hand(route_on, text):
    assert routing_text(MESSAGES, route_on) == text


def test_without_a_user_message_the_last_message_is_read():
    assert routing_text([("system", "rules"), ("assistant", "hello")], "last_user") == "hello"
    assert routing_text([("system", "rules")], "last_user_with_system") == "rules"  # read once
    assert routing_text([], "last_user") == ""


@pytest.mark.parametrize(
    "route_on, text",
    [
        ("user_turns", "first\n\nsecond"),
        ("conversation_without_system", "first\n\nan answer\n\ncall\n\nresult\n\nsecond"),
        ("conversation", "rules\n\nfirst\n\nan answer\n\ncall\n\nresult\n\nsecond"),
    ],
)
def test_the_last_user_message_stays_last_after_a_tool_call_and_a_late_system_prompt(route_on, text):
    # A long-prompt policy reads the end of the text: the question, not a tool's result.
    messages = [
        ("user", "first"),
        ("assistant", "an answer"),
        ("user", "second"),
        ("assistant", "call"),
        ("tool", "result"),
        ("system", "rules"),
    ]
    assert routing_text(messages, route_on) == text


def test_unknown_setting_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known: last_user, last_user_with_system"):
        routing_text(MESSAGES, "everything")
    assert DEFAULT_ROUTE_ON in ROUTE_ON


def test_mt_bench_second_turns(data_dir):
    conversations = mt_bench_second_turns(data_dir)
    bench = conversations.benchmark
    assert len(bench) == len(conversations.messages) == 72
    first, answer, second = conversations.messages[0]
    assert [first[0], answer[0], second[0]] == ["user", "assistant", "user"]
    # question 81 is among the contaminated ones RouteLLM drops
    assert first[1].startswith("Draft a professional email") and answer[1].startswith("Subject: Request")
    assert bench.prompts[0] == second[1] == "Take a moment to evaluate and critique your own response."
    assert bench.weak.min() >= 1 and bench.strong.max() <= 10
    # second turns only: the first-turn mean the benchmark routes on is another number
    assert bench.strong.mean() == pytest.approx(9.0417, abs=1e-4)
    routed = conversations.routed("user_turns", system_prompt="Be brief.", name="x")
    assert routed.name == "x" and routed.prompts[0] == f"{first[1]}\n\n{second[1]}"
    assert (
        conversations.routed("conversation", system_prompt="Be brief.").prompts[0].startswith("Be brief.\n\n")
    )
