"""mf scoring among N candidate models vs its two-model score, both including the embedding.

The issue-14 promise: routing among 20 models costs no more than 5% of the two-model rate, because
each prompt is embedded once and every model's logit is one more column of one matrix product.
The shipped mf router (56 models) scores ``--prompts`` AlpacaEval instructions (synthetic sentences
without the shared data) with MiniLM and no embedding cache, so every prompt is embedded; it also
reports the router's own work with the embeddings given. Best of ``--repeats`` runs each, the two
interleaved so a busy machine slows both alike; the load average is printed beside the figures.

    python benchmarks/bench_n_models.py [--prompts 400] [--models 20] [--batch 32]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _args import positive
from bench_mf import Memo, chat_prompts, get_embedder

from lmroute.routers.mf import MFRouter


def best_rate(fns: dict[str, object], count: int, repeats: int) -> dict[str, float]:
    """Items per second of each function, best of ``repeats`` rounds that run each once in turn."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for label, fn in fns.items():
            started = time.perf_counter()
            fn()  # type: ignore[operator]
            best[label] = min(best[label], time.perf_counter() - started)
    return {label: count / seconds for label, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=positive, default=400)
    parser.add_argument("--models", type=positive, default=20)
    parser.add_argument(
        "--batch", type=positive, default=32, help="prompts per call (a server batches a few)"
    )
    parser.add_argument("--repeats", type=positive, default=9)
    args = parser.parse_args()

    embedder = get_embedder()
    router = MFRouter.pretrained(embedder=embedder)
    prompts = chat_prompts(args.prompts)
    models = list(router.vocabulary[: args.models])
    batches = [prompts[i : i + args.batch] for i in range(0, len(prompts), args.batch)]

    def two() -> None:
        for batch in batches:
            router.score(batch)

    def many() -> None:
        for batch in batches:
            router.predict_quality(batch, models)

    core = MFRouter.pretrained(embedder=Memo(embedder, prompts, embedder.embed(prompts)))

    def core_two() -> None:
        for batch in batches:
            core.score(batch)

    def core_many() -> None:
        for batch in batches:
            core.predict_quality(batch, models)

    print(
        f"{len(prompts)} prompts in batches of {args.batch}, embedder {embedder.name}, {len(models)} models; "
        f"best of {args.repeats}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    rates = best_rate(
        {"score (2 models)": two, f"predict_quality ({len(models)} models)": many}, len(prompts), args.repeats
    )
    core_rates = best_rate(
        {"score, embeddings given": core_two, "predict_quality, embeddings given": core_many},
        len(prompts),
        args.repeats,
    )
    for label, value in {**rates, **core_rates}.items():
        print(f"{label:40s} {value:10.1f} prompts/s")
    two_rate, many_rate = rates.values()
    print(
        f"{len(models)}-model rate / two-model rate incl. embedding: {many_rate / two_rate:.3f} "
        "(promise: >= 0.95)"
    )
    print(f"router's own work alone: {np.divide(*list(core_rates.values())[::-1]):.3f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
