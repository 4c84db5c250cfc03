"""Scoring throughput of the classifier routers (``bert``, ``causal_llm``) on typical chat prompts.

For each router, one run trains a small router on MMLU gold labels (the ``fast`` preset: scoring
runs the whole network whatever the preset, so the training recipe does not change the cost),
then scores the same Arena-Hard questions (real chat prompts, cut by the routers to their token
limits) three ways, each after a warm-up:

* ``batched``: ``router.score(prompts)``, batched and sorted by length (what lmroute does);
* ``unsorted``: the same batch size in arrival order, so padding follows the longest prompt;
* ``one-by-one``: ``router.score([prompt])`` per prompt (a naive server), on the first quarter of
  the prompts (at least 8), as it is the slowest;

and prints prompts/s and ratios against the baselines measured in the same run. ``bert`` is also
timed after ``export_onnx`` (ONNX Runtime, no torch). The machine may be shared: the load average
is printed with the numbers, and only ratios are comparable across runs.

    python benchmarks/bench_classifiers.py [--router bert|causal_llm|both] [--prompts 200] [--threads 2]
        [--bert-options JSON] [--llm-options JSON]    (router options, e.g. '{"num_layers": null}')
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _args import positive

from lmroute.data.battles import Battle
from lmroute.data.benchmarks import load_benchmark
from lmroute.exceptions import LmrouteError
from lmroute.registry import get_router_class, load_router


def data_dir() -> Path:
    path = Path(os.environ.get("LMROUTE_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not (path / "arena-hard/questions.jsonl").is_file():
        raise SystemExit(
            f"no arena-hard/questions.jsonl in {path}: set LMROUTE_DATA_DIR to the shared data folder"
        )
    return path


def arena_prompts(count: int) -> list[str]:
    with (data_dir() / "arena-hard" / "questions.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line)["prompt"] for line in f][:count]


def gold_battles(count: int) -> list[Battle]:
    bench = load_benchmark("mmlu", data_dir=data_dir())
    out = []
    for i in np.random.default_rng(0).choice(len(bench), size=count, replace=False):
        s, w = bench.strong[i], bench.weak[i]
        winner = "model_a" if s > w else "model_b" if w > s else "tie" if s > 0 else "tie (bothbad)"
        out.append(Battle(bench.prompts[i], bench.strong_model, bench.weak_model, winner, "gold:mmlu"))
    return out


def json_object(text: str) -> dict:
    """A JSON object of router options (a list or a number was a TypeError once the script ran)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object of router options, got {text!r}")
    return value


def rate(fn, prompts: list[str]) -> float:
    fn(prompts[:4])  # warm-up: load weights, first-call allocations
    started = time.perf_counter()
    fn(prompts)
    return len(prompts) / (time.perf_counter() - started)


def unsorted(router, batch_size: int):
    """Score in arrival order, ``batch_size`` at a time (each call sorts only within its batch)."""

    def score(prompts: list[str]) -> np.ndarray:
        return np.concatenate(
            [router.score(prompts[i : i + batch_size]) for i in range(0, len(prompts), batch_size)]
        )

    return score


def one_by_one(router):
    return lambda prompts: np.concatenate([router.score([p]) for p in prompts])


def bench(router, prompts: list[str], train: int, options: dict) -> None:
    name = router.name
    started = time.perf_counter()
    router.fit(gold_battles(train))
    print(f"{name} {options or ''}: trained on {train} gold battles in {time.perf_counter() - started:.0f} s")
    batch = router.config.score_batch_size
    rows = {
        "batched": rate(router.score, prompts),
        "unsorted": rate(unsorted(router, batch), prompts),
        "one-by-one": rate(one_by_one(router), prompts[: max(8, len(prompts) // 4)]),
    }
    if name == "bert":
        with tempfile.TemporaryDirectory() as tmp:
            onnx = load_router(router.export_onnx(Path(tmp) / "onnx"))
            rows["batched, ONNX Runtime"] = rate(onnx.score, prompts)
    for label, value in rows.items():
        print(
            f"  {label:<22} {value:8.1f} prompts/s   x{value / rows['one-by-one']:5.2f} vs one-by-one   "
            f"x{value / rows['unsorted']:5.2f} vs unsorted"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--router", choices=["bert", "causal_llm", "both"], default="both")
    parser.add_argument("--prompts", type=positive, default=200, help="Arena-Hard prompts to score (bert)")
    parser.add_argument("--llm-prompts", type=positive, default=64, help="prompts to score (causal_llm)")
    parser.add_argument("--train", type=positive, default=200, help="gold battles to train on")
    parser.add_argument("--threads", type=positive, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--bert-options", type=json_object, default={}, help="JSON, e.g. '{\"max_length\": 64}'"
    )
    parser.add_argument(
        "--llm-options", type=json_object, default={}, help="JSON, e.g. '{\"num_layers\": null}'"
    )
    args = parser.parse_args()
    chosen = {
        "bert": (args.prompts, args.bert_options),
        "causal_llm": (args.llm_prompts, args.llm_options),
    }
    routers = {}
    for name, (_, options) in chosen.items():
        if args.router in (name, "both"):
            try:  # before any training: a misspelt option of the second router is not minutes away
                routers[name] = get_router_class(name)({"preset": "fast", **options})
            except LmrouteError as exc:
                parser.error(str(exc))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.2f}, torch threads {torch.get_num_threads()}")
    for name, router in routers.items():
        count, options = chosen[name]
        bench(router, arena_prompts(count), args.train, options)


if __name__ == "__main__":
    main()
