"""MiniLM embedding speed: ONNX Runtime backend vs the sentence-transformers (torch) backend.

One run embeds the same prompts with both backends (each warmed up first, no cache) and prints
prompts/s and the ONNX/torch ratio for three prompt sets: Arena-Hard questions and AlpacaEval
instructions (typical chat prompts) and a seeded sample of MMLU's 14k prompts (their length
distribution). Then it times the content-hash cache answering all 14,037 MMLU prompts, all hits.
Prompts come from ``$LMROUTE_DATA_DIR`` (default ``../shared/data``). The machine may be shared:
the load average is printed with the numbers, and only the ratio is comparable across runs.

    python benchmarks/bench_embeddings.py [--prompts 200] [--threads 2] [--batch-size N] [--no-torch]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _args import non_negative, positive

from lmroute.data.benchmarks import load_benchmark
from lmroute.embeddings.base import Embedder, normalize
from lmroute.embeddings.cache import CachedEmbedder
from lmroute.embeddings.minilm import DIM, OnnxMiniLM, TorchMiniLM


def data_dir() -> Path:
    path = Path(os.environ.get("LMROUTE_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
    for name in ("arena-hard/questions.jsonl", "alpaca-eval/judgments.jsonl"):
        if not (path / name).is_file():
            raise SystemExit(f"no {name} in {path}: set LMROUTE_DATA_DIR to the shared data folder")
    return path


def prompt_sets(count: int, seed: int) -> dict[str, list[str]]:
    root = data_dir()
    with (root / "arena-hard" / "questions.jsonl").open(encoding="utf-8") as f:
        arena = [json.loads(line)["prompt"] for line in f][:count]
    alpaca: dict[str, None] = {}
    with (root / "alpaca-eval" / "judgments.jsonl").open(encoding="utf-8") as f:
        for line in f:
            alpaca.setdefault(json.loads(line)["prompt"], None)
            if len(alpaca) >= count:
                break
    mmlu = load_benchmark("mmlu", data_dir=root).prompts
    picked = np.random.default_rng(seed).choice(len(mmlu), size=min(count, len(mmlu)), replace=False)
    return {"arena-hard": arena, "alpaca-eval": list(alpaca), "mmlu-sample": [mmlu[i] for i in picked]}


def throughput(embedder: Embedder, texts: list[str]) -> tuple[float, float]:
    """Prompts per wall-clock second and per CPU second of this process (all its threads)."""
    embedder.embed(["a short text to load the model and warm up"] * 8)
    wall, cpu = time.perf_counter(), time.process_time()
    embedder.embed(texts)
    return len(texts) / (time.perf_counter() - wall), len(texts) / (time.process_time() - cpu)


class _Instant(Embedder):
    name = "bench-instant"
    dim = DIM

    def embed(self, texts):
        return normalize(np.ones((len(texts), self.dim), dtype=np.float32))


def cache_lookup_ms(texts: list[str]) -> float:
    with tempfile.TemporaryDirectory() as folder:
        CachedEmbedder(_Instant(), directory=folder).embed(texts)
        cached = CachedEmbedder(_Instant(), directory=folder)  # a fresh process: reads from disk
        start = time.perf_counter()
        cached.embed(texts)
        return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=positive, default=200, help="prompts per set (default 200)")
    parser.add_argument(
        "--threads", type=positive, default=None, help="ONNX Runtime threads (default: all CPUs)"
    )
    parser.add_argument("--batch-size", type=positive, default=None, help="default: each backend's own")
    parser.add_argument("--seed", type=non_negative, default=0, help="of the MMLU sample")
    parser.add_argument("--no-torch", action="store_true", help="time only the ONNX backend")
    args = parser.parse_args()
    logging.getLogger("lmroute").setLevel(logging.ERROR)  # truncation is in the "cut" column

    sets = prompt_sets(args.prompts, args.seed)
    sizes = {} if args.batch_size is None else {"batch_size": args.batch_size}
    onnx = OnnxMiniLM(threads=args.threads, **sizes)
    torch = None if args.no_torch else TorchMiniLM(**sizes)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {args.prompts} prompts per set")
    print("prompts/s per wall-clock second, and per CPU second (less disturbed by other load)")
    print(
        f"{'prompts':<12} {'chars':>5} {'cut':>4} {'onnx/s':>7} {'torch/s':>7} {'ratio':>6}"
        f"  {'onnx/cpu-s':>10} {'torch/cpu-s':>11} {'ratio':>6}"
    )
    for label, texts in sets.items():
        before = onnx.truncated
        onnx_wall, onnx_cpu = throughput(onnx, texts)
        chars = np.mean([len(t) for t in texts])
        line = f"{label:<12} {chars:>5.0f} {onnx.truncated - before:>4} {onnx_wall:>7.1f}"
        if torch is None:
            print(f"{line} {'':>7} {'':>6}  {onnx_cpu:>10.1f}")
            continue
        torch_wall, torch_cpu = throughput(torch, texts)
        print(
            f"{line} {torch_wall:>7.1f} {onnx_wall / torch_wall:>5.2f}x"
            f"  {onnx_cpu:>10.1f} {torch_cpu:>11.1f} {onnx_cpu / torch_cpu:>5.2f}x"
        )
    mmlu = load_benchmark("mmlu", data_dir=data_dir()).prompts
    print(f"cache: {len(mmlu)} MMLU prompts, all hits, from disk in {cache_lookup_ms(mmlu):.0f} ms")


if __name__ == "__main__":
    main()
