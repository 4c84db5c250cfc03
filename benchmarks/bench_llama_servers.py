"""Speed of the real llama.cpp servers the end-to-end tests start (SmolLM2-135M-Instruct Q4_1, CPU).

One command: ``python benchmarks/bench_llama_servers.py`` (needs ``bash .ci/install-llama.sh`` first).
Prints start-up time and resident memory per server, and generation speed in tokens/s for one server
with 1 and 2 threads and for two servers generating at the same time, each with 1 and 2 threads; the
ratios are against one server with 1 thread, measured in the same run. Numbers on a shared machine vary.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _args import positive, stop_on_sigterm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from llama_servers import (
    LlamaServer,
    launch_server,
    missing_requirements,
    running_servers,
    smollm2_gguf,
    stop_server,
    wait_ready,
)

PROMPT = "Write a long story about a dragon who learns to bake bread."


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def generate(server: LlamaServer, max_tokens: int) -> tuple[int, float]:
    """Completion tokens generated and seconds taken for one greedy chat completion."""
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    start = time.perf_counter()
    response = client.chat.completions.create(
        model=server.model,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=max_tokens,
        temperature=0,
        seed=0,
    )
    return response.usage.completion_tokens, time.perf_counter() - start


def tokens_per_second(servers: list[LlamaServer], max_tokens: int, repeats: int) -> float:
    """Mean per-server tokens/s with all ``servers`` generating at the same time."""
    rates = []
    with ThreadPoolExecutor(len(servers)) as pool:
        for _ in range(repeats):
            for tokens, seconds in pool.map(lambda s: generate(s, max_tokens), servers):
                rates.append(tokens / seconds)
    return sum(rates) / len(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=positive, default=64)
    parser.add_argument("--repeats", type=positive, default=2)
    args = parser.parse_args()
    missing = missing_requirements()
    if missing:
        raise SystemExit(missing)

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        server = launch_server("bench-a", gguf=smollm2_gguf(), log_dir=log_dir, n_threads=1)
        try:
            results["start-up, launch to /v1/models answering (s)"] = wait_ready(server)
            results["memory after load, RSS (MiB)"] = rss_mib(server.process.pid)
            generate(server, 8)  # warm-up
            results["one server, 1 thread (tok/s)"] = tokens_per_second(
                [server], args.max_tokens, args.repeats
            )
            results["memory after generating, RSS (MiB)"] = rss_mib(server.process.pid)
        finally:
            stop_server(server)
        for count, threads in ((1, 2), (2, 1), (2, 2)):
            models = [f"bench-{i}" for i in range(count)]
            with running_servers(models, log_dir=log_dir, n_threads=threads) as servers:
                for each in servers:
                    generate(each, 8)
                label = "one server" if count == 1 else "two servers at once, per server"
                results[f"{label}, {threads} thread{'s' * (threads > 1)} (tok/s)"] = tokens_per_second(
                    servers, args.max_tokens, args.repeats
                )

    baseline = results["one server, 1 thread (tok/s)"]
    for name, value in results.items():
        ratio = f"  ({value / baseline:.2f}x one server, 1 thread)" if "tok/s" in name else ""
        print(f"{name:52s} {value:8.2f}{ratio}")


if __name__ == "__main__":
    stop_on_sigterm()
    main()
