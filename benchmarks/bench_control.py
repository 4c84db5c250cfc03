"""Per-request cost of online control: the control hub's decision against a bare threshold compare.

Times, per request, what the server adds once a request's score is back
(:meth:`lmroute.control.hub.ControlHub.decide`): a fixed threshold with drift detection, a share
target (controller + drift), a spend target, and a share target with conversations and embedding
summaries. The baseline, timed in the same run, is the decision without control (``score >=
threshold``). The issue's budget is 0.1 ms per request; the script prints each mode's CPU time
(``time.process_time``, best of ``--repeats``) in microseconds per request, its ratio to the
baseline, whether it is within budget, and the load average (the figures need an idle machine).

    python benchmarks/bench_control.py [--requests 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
from _args import positive

from lmroute.control.config import ControlConfig
from lmroute.control.conversations import explicit_key
from lmroute.control.hub import ControlHub
from lmroute.pricing import Price
from lmroute.routing_names import parse_model_name

BUDGET_US = 100.0
PRICES = {
    "strong": Price(input_per_1m=10, output_per_1m=30),
    "weak": Price(input_per_1m=0.6, output_per_1m=0.6),
}


def _hub(**control: object) -> ControlHub:
    hub = ControlHub(ControlConfig.model_validate(control), prices=PRICES)
    rng = np.random.default_rng(1)
    hub.seed(
        "mf",
        rng.beta(2, 3, size=400),
        tokens=rng.integers(5, 500, size=400),
        summaries=rng.normal(size=(400, 64)),
    )
    return hub


def _cases(n: int) -> dict[str, Callable[[], None]]:
    rng = np.random.default_rng(0)
    scores = rng.beta(2, 3, size=n).tolist()
    tokens = rng.integers(5, 500, size=n).tolist()
    summaries = list(rng.normal(size=(n, 64)))
    users = [explicit_key(f"user-{i % 500}", source="user", namespace="") for i in range(n)]
    fixed, share, spend = (
        parse_model_name(m) for m in ("router-mf-0.5", "router-mf-share-0.3", "router-mf-spend-3")
    )

    def bare() -> None:
        threshold = 0.5
        for s in scores:
            _ = "strong" if s >= threshold else "weak"

    def run(
        hub: ControlHub, spec, *, with_summary: bool = False, with_user: bool = False
    ) -> Callable[[], None]:
        def go() -> None:
            for i, s in enumerate(scores):
                hub.decide(
                    spec,
                    s,
                    tokens=tokens[i],
                    summary=summaries[i] if with_summary else None,
                    conversation=users[i] if with_user else None,
                )

        return go

    return {
        "bare threshold (baseline)": bare,
        "fixed threshold + drift": run(_hub(), fixed),
        "share target": run(_hub(), share),
        "spend target": run(_hub(), spend),
        "share + summaries + conversations": run(
            _hub(conversations={"enabled": True}), share, with_summary=True, with_user=True
        ),
        "share + history conversations (server glue)": _with_history(
            _hub(conversations={"enabled": True}), share, scores
        ),
    }


def _with_history(hub: ControlHub, spec, scores: list[float]) -> Callable[[], None]:
    """What the server does per request besides scoring: a three-turn chat's conversation keys
    (hashes of its turns) and token estimate, then the hub's decision."""
    from lmroute.serving.control import conversation_keys, request_tokens
    from lmroute.serving.protocol import ChatMessage

    chats = [
        [
            ChatMessage(role="system", content="You are a helpful assistant."),
            ChatMessage(role="user", content=f"question {i % 500} " * 20),
            ChatMessage(role="assistant", content="an answer " * 40),
            ChatMessage(role="user", content=f"follow-up {i} " * 10),
        ]
        for i in range(len(scores))
    ]

    def go() -> None:
        for messages, s in zip(chats, scores, strict=True):
            keys = conversation_keys(messages, None, None)
            hub.decide(spec, s, tokens=request_tokens(messages), conversation=keys)

    return go


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=positive, default=20_000)
    parser.add_argument("--repeats", type=positive, default=3, help="best of this many runs")
    args = parser.parse_args()
    results = {}
    for name, case in _cases(args.requests).items():
        best = float("inf")
        for _ in range(args.repeats):
            start = time.process_time()
            case()
            best = min(best, time.process_time() - start)
        results[name] = 1e6 * best / args.requests
    base = results["bare threshold (baseline)"]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{args.requests:,} requests, best of {args.repeats}; load average {load}")
    for name, us in results.items():
        verdict = (
            "" if name.startswith("bare") else ("  within 0.1 ms" if us <= BUDGET_US else "  OVER 0.1 ms")
        )
        print(f"  {name:44s} {us:8.2f} us/request  x{us / base:8.1f}{verdict}")


if __name__ == "__main__":
    main()
