"""mf scoring speed including embedding (batched numpy) vs the reference's one-prompt torch forward;
optionally the training time on all shared training sources.

Prompts are AlpacaEval's instructions (typical chat prompts) from ``$LMROUTE_DATA_DIR`` when
present, else synthetic sentences. The embedder is MiniLM (``get_embedder("minilm", cache=False)``)
when installed, else a hashing stand-in (then the numbers say little about real use); the shipped
mf's row uses the embedder its checkpoint names (``minilm-int8``). The baseline
does what RouteLLM's ``MatrixFactorizationRouter`` does per request: embed one prompt, run the torch
model on (strong, weak), sigmoid of the difference. Including the embedding, it scores only the first
``--baseline-prompts`` prompts (AlpacaEval's first are shorter than the rest), so the ratio is taken
against lmroute on those same prompts.

    python benchmarks/bench_mf.py [--prompts 400] [--baseline-prompts 100]
    python benchmarks/bench_mf.py --train-epochs 2    # + time 2 epochs on all shared sources
    python benchmarks/bench_mf.py --long 200          # + the long-prompt policies on long prompts

``--long N`` scores N long prompts (GSM8K questions opened by the same eight others, about 700
word pieces each: a few-shot prompt) with the shipped mf under every long-prompt policy, the
embedding cache off, and prints each policy's rate and its cost relative to ``head``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from _args import non_negative, positive

from lmroute.data.battles import Battle
from lmroute.embeddings.base import Embedder, normalize
from lmroute.routers.mf import MFRouter

SOURCES = [
    "battles:arena-hard/battles.jsonl",
    "alpaca-eval",
    "gold:mmlu",
    "gold:gsm8k",
    "gold:mt-bench",
    "gold:zeroeval/crux.jsonl",
    "gold:zeroeval/math-l5.jsonl",
]


class HashingEmbedder(Embedder):
    """Fallback when MiniLM is not installed: hashed bag of words."""

    name = "hashing"
    dim = 384

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        out[:, 0] += 1e-3
        return normalize(out)


def data_dir() -> Path | None:
    path = Path(os.environ.get("LMROUTE_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
    return path if (path / "alpaca-eval").is_dir() else None


def chat_prompts(count: int) -> list[str]:
    folder = data_dir()
    if folder is None:
        return [f"Could you explain, in simple words, how topic number {i} works?" for i in range(count)]
    seen: dict[str, None] = {}
    with (folder / "alpaca-eval" / "judgments.jsonl").open(encoding="utf-8") as f:
        for line in f:
            seen.setdefault(json.loads(line)["prompt"], None)
            if len(seen) >= count:
                break
    return list(seen)


def get_embedder() -> Embedder:
    try:
        from lmroute.embeddings import get_embedder as named

        embedder = named("minilm", cache=False)
        embedder.embed(["warm up"])
        return embedder
    except Exception as exc:  # a benchmark falls back rather than fails
        print(f"MiniLM unavailable ({exc}); using a hashing embedder")
        return HashingEmbedder()


def shipped_default_embedder(fallback: Embedder) -> Embedder:
    """The embedder the shipped mf checkpoint names, uncached (``fallback`` when it is not installed)."""
    if isinstance(fallback, HashingEmbedder):
        return fallback
    from lmroute.embeddings import get_embedder as named

    embedder = named(MFRouter.pretrained().embedder_name, cache=False)
    embedder.embed(["warm up"])
    return embedder


def rate(fn, count: int, repeats: int = 3) -> float:
    """Items per second of ``fn()`` handling ``count`` items, best of ``repeats`` (the machine is shared)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return count / best


def reference_forward(router: MFRouter):
    """RouteLLM's per-request computation as a function of one prompt embedding (torch), for a
    single-fit router (``members=1``)."""
    import torch

    stored = router._arrays()
    arrays = {name: stored[name][0] for name in ("model_embeddings", "text_proj", "classifier")}
    P = torch.from_numpy(arrays["model_embeddings"])
    W = torch.nn.Linear(arrays["text_proj"].shape[1], arrays["text_proj"].shape[0], bias=False)
    W.weight.data = torch.from_numpy(arrays["text_proj"])
    c = torch.nn.Linear(arrays["classifier"].size, 1, bias=False)
    c.weight.data = torch.from_numpy(arrays["classifier"][None, :])
    ids = [router.models.index(router.config.strong_model), router.models.index(router.config.weak_model)]

    @torch.no_grad()
    def forward(vector: np.ndarray) -> float:
        logits = c(torch.nn.functional.normalize(P[ids], p=2, dim=1) * W(torch.from_numpy(vector))).squeeze()
        return torch.sigmoid(logits[0] - logits[1]).item()

    return forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=positive, default=400)
    parser.add_argument("--baseline-prompts", type=positive, default=100)
    parser.add_argument(
        "--train-epochs", type=non_negative, default=0, help="also train on all shared sources for N epochs"
    )
    parser.add_argument(
        "--long", type=non_negative, default=0, help="also time the long-prompt policies on N long prompts"
    )
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the start")

    embedder = get_embedder()
    prompts = chat_prompts(args.prompts)
    rng = np.random.default_rng(0)
    models = ["gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1", "other"]
    battles = [
        Battle(p, *rng.permutation(models)[:2].tolist(), winner=str(rng.choice(["model_a", "model_b"])))
        for p in prompts[:100]
    ]
    router = MFRouter(embedder=embedder, epochs=1).fit(battles)  # weights only matter for the timing
    vectors = embedder.embed(prompts)
    with tempfile.TemporaryDirectory() as folder:  # load reads the weights into memory
        core = MFRouter.load(router.save(folder), embedder=Memo(embedder, prompts, vectors))
    forward = reference_forward(router)
    # what `lmroute score --router mf` runs (with the checkpoint's own embedder, minilm-int8), with
    # the embedding cache off so every prompt is embedded
    shipped_embedder = shipped_default_embedder(embedder)
    shipped = MFRouter.pretrained(embedder=shipped_embedder)
    few = prompts[: args.baseline_prompts]

    def embed_one(prompt: str) -> np.ndarray:
        return embedder.embed([prompt])[0]

    lengths = [len(p) for p in prompts]
    print(
        f"{len(prompts)} prompts (median {int(np.median(lengths))} chars), embedder {embedder.name}; "
        "best of 3 runs each"
    )
    n = len(prompts)
    rows = [
        ("embedding alone (batched)", rate(lambda: embedder.embed(prompts), n)),
        ("mf score incl. embedding (lmroute)", rate(lambda: router.score(prompts), n)),
        (f"shipped mf score incl. {shipped_embedder.name}", rate(lambda: shipped.score(prompts), n)),
        (
            "reference per prompt incl. embedding",
            rate(lambda: [forward(embed_one(p)) for p in few], len(few)),
        ),
        ("mf score, embeddings given (lmroute)", rate(lambda: core.score(prompts), n)),
        ("reference per prompt, embeddings given", rate(lambda: [forward(v) for v in vectors], n)),
        # the reference's prompts are the first ones, which are shorter: its ratio is taken on them
        (f"mf score incl. embedding, first {len(few)}", rate(lambda: router.score(few), len(few))),
    ]
    for label, value in rows:
        print(f"{label:40s} {value:12.1f} prompts/s")
    print(
        f"ratio incl. embedding (the same {len(few)} prompts): {rows[6][1] / rows[3][1]:.1f}x; "
        f"ratio of the router's own work: {rows[4][1] / rows[5][1]:.0f}x"
    )

    if args.long:
        long_prompts(embedder, args.long)
    if args.train_epochs:
        train(embedder, args.train_epochs)
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")


def long_prompts(embedder: Embedder, count: int) -> None:
    """The shipped mf under each long-prompt policy on few-shot GSM8K prompts."""
    from lmroute.data.benchmarks import load_benchmark
    from lmroute.embeddings.long_prompts import POLICIES, embeddings_per_text

    folder = data_dir()
    if folder is None:
        print("no shared data: skipping the long-prompt measurement")
        return
    questions = load_benchmark("gsm8k", data_dir=folder).prompts
    prefix = "\n\n".join(questions[:8])
    prompts = [f"{prefix}\n\n{q}" for q in questions[8 : 8 + count]]
    shipped = MFRouter.pretrained(embedder=embedder)
    spans = embedder.pieces(prompts)
    pieces = [len(s) if s is not None else 0 for s in spans]
    print(f"{len(prompts)} long prompts (median {int(np.median(pieces))} word pieces)")
    rates = {}
    for policy in POLICIES:
        router = shipped.with_long_prompts(policy)
        rates[policy] = rate(lambda r=router: r.score(prompts), len(prompts), repeats=2)
        windows = embeddings_per_text(spans, embedder.window_size, policy).mean()
        print(
            f"{policy:10s} {rates[policy]:8.1f} prompts/s  {windows:.2f} embeddings a prompt  "
            f"cost {rates['head'] / rates[policy]:.2f}x head"
        )


class Memo(Embedder):
    """Vectors embedded once, so training time and embedding time are measured apart."""

    def __init__(self, inner: Embedder, texts: list[str], vectors: np.ndarray):
        self.name, self.dim = inner.name, inner.dim
        self.table = dict(zip(texts, vectors, strict=True))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])


def train(embedder: Embedder, epochs: int) -> None:
    from lmroute.data.sources import load_sources

    folder = data_dir()
    if folder is None:
        print("no shared data: skipping the training measurement")
        return
    battles, _ = load_sources(SOURCES, data_dir=folder)
    prompts = sorted({b.prompt for b in battles})
    started = time.perf_counter()
    vectors = embedder.embed(prompts)
    embed_seconds = time.perf_counter() - started
    full = MFRouter.config_class().epochs
    router = MFRouter(
        embedder=Memo(embedder, prompts, vectors),
        epochs=epochs,
        strong_model="gpt-4-0314",
        weak_model="gpt-3.5-turbo-0301",
    )
    started = time.perf_counter()
    router.fit(battles, progress=True)
    per_epoch = (time.perf_counter() - started) / epochs
    used = router.metadata["battles"]["used"]
    print(f"{len(battles):,} battles ({used:,} decisive), {len(prompts):,} prompts")
    print(f"embedding the prompts: {embed_seconds:.0f} s; training: {per_epoch:.1f} s/epoch")
    print(
        f"estimated full training ({full} epochs, embedding included): "
        f"{(embed_seconds + full * per_epoch) / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
