"""MiniLM fp32 vs int8 (``minilm`` vs ``minilm-int8``): speed, memory, and the shipped mf's APGR.

One command: ``python benchmarks/bench_minilm_int8.py`` (options: ``--prompts``, ``--threads``,
``--no-apgr``). In one run it prints

- prompts/s of each precision on short prompts (AlpacaEval instructions, median ~80 characters)
  and on a seeded MMLU sample, embedding alone and the shipped ``mf`` scoring including the
  embedding (no embedding cache), best of 3 rounds taken in turn, with the int8/fp32 ratio;
- the resident memory of a fresh process per precision: after importing, after loading the model,
  and after embedding the prompts (the ONNX Runtime session options are the embedder's own);
- the shipped ``mf``'s APGR on MMLU, GSM8K and MT-Bench with each precision (the evaluator's paper
  protocol; fp32 vectors come from the disk cache when present, int8 ones are cached after the
  first run), the difference, and whether it is within 0.005 on all three.

Prompts come from ``$LMROUTE_DATA_DIR`` (default ``../shared/data``). Timing needs an idle machine:
the load average is printed before and after, and the ratio is the comparable figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _args import positive

APGR_TOLERANCE = 0.005
BENCHMARKS = ("mmlu", "gsm8k", "mt-bench")
_RSS_CODE = """
import json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
from lmroute.embeddings import get_embedder
import lmroute.serving.app  # what a server imports anyway
texts = json.load(sys.stdin)
imported = rss()
embedder = get_embedder(sys.argv[1], cache=False)
embedder.embed(texts[:1])
loaded = rss()
for start in range(0, len(texts), 64):  # the server's batches are at most this big
    embedder.embed(texts[start : start + 64])
print(json.dumps([imported, loaded, rss()]))
"""


def data_dir() -> Path:
    path = Path(os.environ.get("LMROUTE_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not (path / "alpaca-eval/judgments.jsonl").is_file():
        raise SystemExit(
            f"no alpaca-eval/judgments.jsonl in {path}: set LMROUTE_DATA_DIR to the shared data folder"
        )
    return path


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def int8_instructions() -> str:
    """The CPU's int8 dot-product instruction sets: ONNX Runtime picks its int8 kernels by them, so
    int8 speed and the last digits of int8 results depend on them."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next(line for line in lines if line.startswith("flags"))
    except (OSError, StopIteration):
        return "CPU flags unknown"
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return "CPU: " + (" ".join(f for f in wanted if f in flags.split()) or "none of " + ", ".join(wanted))


def short_prompts(count: int) -> list[str]:
    seen: dict[str, None] = {}
    with (data_dir() / "alpaca-eval" / "judgments.jsonl").open(encoding="utf-8") as f:
        for line in f:
            seen.setdefault(json.loads(line)["prompt"], None)
            if len(seen) >= count:
                break
    return list(seen)


def mmlu_sample(count: int) -> list[str]:
    from lmroute.data.benchmarks import load_benchmark

    prompts = load_benchmark("mmlu", data_dir=data_dir()).prompts
    picked = np.random.default_rng(0).choice(len(prompts), size=min(count, len(prompts)), replace=False)
    return [prompts[i] for i in picked]


def speeds(prompt_sets: dict[str, list[str]], threads: int | None) -> None:
    from lmroute.embeddings import get_embedder
    from lmroute.routers.mf import MFRouter

    options = {} if threads is None else {"threads": threads}
    embedders = {p: get_embedder(name, cache=False, **options) for p, name in PRECISIONS.items()}
    routers = {p: MFRouter.pretrained(embedder=e) for p, e in embedders.items()}
    for embedder in embedders.values():
        embedder.embed(["a short text to load the model and warm up"] * 8)
    print("prompts/s per wall-clock second, and per CPU second of this process (less disturbed by load)")
    print(
        f"{'prompts':<12} {'chars':>5} {'what':<26} {'fp32/s':>8} {'int8/s':>8} {'int8/fp32':>9}"
        f"  {'fp32/cpu-s':>10} {'int8/cpu-s':>10} {'int8/fp32':>9}"
    )
    for label, texts in prompt_sets.items():
        chars = int(np.median([len(t) for t in texts]))
        jobs = {
            "embedding alone": lambda p, texts=texts: embedders[p].embed(texts),
            "shipped mf incl. embedding": lambda p, texts=texts: routers[p].score(texts),
        }
        for what, job in jobs.items():
            wall = dict.fromkeys(PRECISIONS, float("inf"))
            cpu = dict.fromkeys(PRECISIONS, float("inf"))
            for _ in range(3):  # in turn, so a burst of load from elsewhere hits both alike
                for precision in PRECISIONS:
                    started, cpu_started = time.perf_counter(), time.process_time()
                    job(precision)
                    wall[precision] = min(wall[precision], time.perf_counter() - started)
                    cpu[precision] = min(cpu[precision], time.process_time() - cpu_started)
            fp32, int8 = (len(texts) / wall[p] for p in PRECISIONS)
            fp32_cpu, int8_cpu = (len(texts) / cpu[p] for p in PRECISIONS)
            print(
                f"{label:<12} {chars:>5} {what:<26} {fp32:>8.1f} {int8:>8.1f} {int8 / fp32:>8.2f}x"
                f"  {fp32_cpu:>10.1f} {int8_cpu:>10.1f} {int8_cpu / fp32_cpu:>8.2f}x"
            )


def memory(texts: list[str]) -> None:
    print("\nresident memory of a fresh process (MB): after imports, model loaded, after embedding")
    for precision, name in PRECISIONS.items():
        out = subprocess.run(
            [sys.executable, "-c", _RSS_CODE, name],
            input=json.dumps(texts),
            capture_output=True,
            text=True,
            check=True,
        )
        imported, loaded, after = json.loads(out.stdout)
        print(f"{precision}: {imported:.0f} -> {loaded:.0f} -> {after:.0f} ({len(texts)} prompts)")


def apgr() -> bool:
    from lmroute.data.benchmarks import load_benchmark
    from lmroute.embeddings import get_embedder
    from lmroute.evaluation.evaluator import evaluate
    from lmroute.routers.mf import MFRouter

    routers = [MFRouter.pretrained(embedder=get_embedder(name)) for name in PRECISIONS.values()]
    print("\nshipped mf APGR (paper protocol), fp32 vs int8 embeddings:")
    within = True
    for name in BENCHMARKS:
        benchmark = load_benchmark(name, data_dir=data_dir())
        result = evaluate(routers, benchmark, names=list(PRECISIONS), oracle=False)
        fp32, int8 = (r.apgr for r in result.results)
        ok = abs(int8 - fp32) <= APGR_TOLERANCE
        within &= ok
        print(
            f"{name:<9} {len(benchmark.prompts):>6} prompts: fp32 {fp32:.4f}  int8 {int8:.4f}  "
            f"difference {int8 - fp32:+.4f} {'within' if ok else 'NOT within'} {APGR_TOLERANCE}"
        )
    return within


PRECISIONS = {"fp32": "minilm", "int8": "minilm-int8"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=positive, default=400, help="prompts per set (default 400)")
    parser.add_argument(
        "--threads", type=positive, default=None, help="ONNX Runtime threads (default: all CPUs)"
    )
    parser.add_argument("--no-apgr", action="store_true", help="skip the APGR comparison")
    args = parser.parse_args()
    logging.getLogger("lmroute").setLevel(logging.ERROR)  # truncation warnings

    print(f"load average before: {load_average()}; {os.cpu_count()} CPUs; {int8_instructions()}")
    short = short_prompts(args.prompts)
    speeds({"alpaca-eval": short, "mmlu-sample": mmlu_sample(args.prompts)}, args.threads)
    memory(short)
    within = True if args.no_apgr else apgr()
    print(f"\nload average after: {load_average()}")
    if not args.no_apgr:
        print(
            f"target: APGR difference within {APGR_TOLERANCE} on all three: {'met' if within else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
