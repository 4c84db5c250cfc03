"""Deduplication of training battles and decontamination against evaluation prompts.

Prompts are compared after :func:`normalize_prompt` (Unicode NFKC, case folded, runs of
whitespace made one space). :func:`decontaminate` drops a training battle whose prompt matches an
evaluation prompt exactly after normalisation, or whose embedding has cosine similarity >=
``threshold`` with any evaluation prompt's.

The default cut-off, 0.90, is set for all-MiniLM-L6-v2 (the default embedder) from measurements
on the shared data. RouteLLM used 0.95 with OpenAI's text-embedding-3-small; with MiniLM, the 25
(train, eval) pairs RouteLLM itself found contaminated score 0.897-1.0, and 4 of them (MMLU
questions with reformatted options, GSM8K questions with "let's think step by step" appended or
an edited last sentence) fall below 0.95 but only one below 0.90. Meanwhile the nearest
non-duplicate between the shared training prompts (Arena-Hard, AlpacaEval, ZeroEval) and
GSM8K/MT-Bench scores at most 0.84, so 0.90 drops no extra training data there. A false
positive only costs a training prompt; a false negative leaks a test item. Another embedder
needs its own cut-off: the report lists the borderline cases on both sides to check it.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmroute.data.battles import Battle
from lmroute.embeddings.base import Embedder, normalize
from lmroute.exceptions import ConfigError

DEFAULT_THRESHOLD = 0.90
#: How far below its true value a cosine similarity of float32 unit vectors may come out: two
#: texts with the same embedding direction score 1 - 5e-7 about a third of the time, which missed
#: ``threshold=1``; so a similarity this close under the cut-off counts as at it.
SIMILARITY_ROUNDING = 1e-5
DUPLICATE = "duplicate of a battle from another source"
EXACT = "exact match of an evaluation prompt"
NEAR = "near duplicate of an evaluation prompt"


#: Invisible characters that copies of a text pick up (zero-width spaces and joiners, a stray BOM).
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def normalize_prompt(text: str) -> str:
    """``text`` in Unicode NFKC form without invisible characters, case folded, with whitespace
    collapsed: the key of exact matching. NFKC makes one text of its composed and decomposed
    accents (``é`` as one or two code points) and of compatibility forms (``ﬁ``, full-width
    letters), which look the same to a reader and so are the same prompt."""
    return " ".join(unicodedata.normalize("NFKC", text).translate(_INVISIBLE).casefold().split())


@dataclass
class FilterReport:
    """What a filter kept and dropped: per reason, per battle source."""

    total: int
    kept: int
    dropped: dict[str, Counter[str]] = field(default_factory=dict)
    threshold: float | None = None
    embedder: str | None = None
    #: Battles dropped because of each named set of evaluation prompts.
    matched: Counter[str] = field(default_factory=Counter)
    #: The dropped near duplicates with the lowest similarity and the kept prompts with the
    #: highest: ``{"similarity", "train", "eval"}`` each, to check the cut-off.
    borderline_dropped: list[dict[str, Any]] = field(default_factory=list)
    closest_kept: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"kept {self.kept:,} of {self.total:,} battles"
        parts = []
        for reason, by_source in self.dropped.items():
            sources = ", ".join(f"{s or '?'} {n:,}" for s, n in by_source.most_common())
            cut = f" (cosine >= {self.threshold})" if reason == NEAR else ""
            parts.append(f"{sum(by_source.values()):,} {reason}{cut} [{sources}]")
        return text + ("; dropped " + "; ".join(parts) if parts else "; dropped none")

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "kept": self.kept,
            "dropped": {reason: dict(by_source) for reason, by_source in self.dropped.items()},
            "threshold": self.threshold,
            "embedder": self.embedder,
            "matched": dict(self.matched),
            "borderline_dropped": self.borderline_dropped,
            "closest_kept": self.closest_kept,
        }


def _battle_key(b: Battle, norms: dict[str, str]) -> tuple[str, str, str, str]:
    """The same vote whichever side each model was shown on (``norms`` caches normalised prompts)."""
    prompt = norms.get(b.prompt)
    if prompt is None:
        prompt = norms[b.prompt] = normalize_prompt(b.prompt)
    if b.model_a <= b.model_b:
        return prompt, b.model_a, b.model_b, b.winner
    flipped = {"model_a": "model_b", "model_b": "model_a"}.get(b.winner, b.winner)
    return prompt, b.model_b, b.model_a, flipped


def deduplicate(
    battles: Sequence[Battle], *, origins: Sequence[Hashable] | None = None
) -> tuple[list[Battle], FilterReport]:
    """Drop copies of the same vote that come from different origins (default: ``battle.source``).

    Two battles are the same vote when their normalised prompts, models and winner agree (with
    sides swapped too). Within one origin repeated votes are kept: Arena-Hard judges each pair
    twice, several AlpacaEval annotators judge the same pair, Arena users vote on the same
    prompt. Across origins (the same data loaded twice, or an exported file next to its source)
    each vote is kept as many times as the origin that has it most often, in first-seen order.
    """
    if origins is None:
        origins = [b.source for b in battles]
    elif len(origins) != len(battles):
        raise ConfigError(f"deduplicate: {len(origins)} origins for {len(battles)} battles")
    norms: dict[str, str] = {}
    keys = [_battle_key(b, norms) for b in battles]
    allowed: dict[tuple, int] = {}
    for (key, _), n in Counter(zip(keys, origins, strict=True)).items():
        allowed[key] = max(n, allowed.get(key, 0))
    used: Counter[tuple] = Counter()
    kept: list[Battle] = []
    dropped: Counter[str] = Counter()
    for key, b in zip(keys, battles, strict=True):
        if used[key] < allowed[key]:
            used[key] += 1
            kept.append(b)
        else:
            dropped[b.source] += 1
    report = FilterReport(len(battles), len(kept), {DUPLICATE: dropped} if dropped else {})
    return kept, report


def decontaminate(
    battles: Sequence[Battle],
    eval_prompts: Sequence[str] | Mapping[str, Sequence[str]],
    *,
    embedder: Embedder | None = None,
    threshold: float | None = DEFAULT_THRESHOLD,
    chunk_bytes: int = 64 * 2**20,
    examples: int = 3,
) -> tuple[list[Battle], FilterReport]:
    """Drop battles whose prompt (nearly) duplicates an evaluation prompt.

    ``eval_prompts`` is a list of prompts, or a mapping ``name -> prompts`` so the report counts
    what each evaluation set caused to be dropped. Exact: equal after :func:`normalize_prompt`.
    Near: cosine similarity of ``embedder`` vectors >= ``threshold`` (see the module docstring
    for the default; ``threshold=None``: exact matching only, no embedder needed). Without an
    ``embedder``, all-MiniLM-L6-v2 is loaded (``lmroute.embeddings.get_embedder("minilm")``).
    Each distinct prompt is embedded once and similarities are computed in row chunks of about
    ``chunk_bytes`` (100k training x 15k evaluation prompts fits in the default 64 MiB at a time).
    """
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise ConfigError(f"threshold must be in (0, 1], got {threshold}")
    named = dict(eval_prompts) if isinstance(eval_prompts, Mapping) else {"eval": eval_prompts}
    eval_names: dict[str, set[str]] = defaultdict(set)  # normalised prompt -> evaluation sets
    eval_text: dict[str, str] = {}
    for name, prompts in named.items():
        for p in prompts:
            norm = normalize_prompt(p)
            if norm:
                eval_names[norm].add(name)
                eval_text.setdefault(norm, p)
    norms = [normalize_prompt(b.prompt) for b in battles]
    reason_of: dict[str, str] = {}  # normalised training prompt -> why it is dropped
    matched_eval: dict[str, str] = {}  # normalised training prompt -> normalised eval prompt
    for norm in norms:
        if norm in eval_names:
            reason_of[norm], matched_eval[norm] = EXACT, norm
    report = FilterReport(len(battles), 0, threshold=threshold)
    if threshold is not None and eval_text:
        left = list(dict.fromkeys(n for n in norms if n not in reason_of))
        if left:
            if embedder is None:
                from lmroute.embeddings import get_embedder

                embedder = get_embedder("minilm")
            report.embedder = embedder.name
            rep: dict[str, str] = {}
            for b, norm in zip(battles, norms, strict=True):
                rep.setdefault(norm, b.prompt)
            eval_keys = list(eval_text)
            best_sim, best_idx = max_similarity(
                _embed(embedder, [rep[n] for n in left]),
                _embed(embedder, [eval_text[k] for k in eval_keys]),
                chunk_bytes=chunk_bytes,
            )
            near = best_sim >= threshold - SIMILARITY_ROUNDING
            for i in np.flatnonzero(near):
                reason_of[left[i]], matched_eval[left[i]] = NEAR, eval_keys[best_idx[i]]

            def example(i: int) -> dict[str, Any]:
                return {
                    "similarity": round(float(best_sim[i]), 4),
                    "train": rep[left[i]],
                    "eval": eval_text[eval_keys[best_idx[i]]],
                }

            order = np.argsort(best_sim, kind="stable")
            report.borderline_dropped = [example(i) for i in order[near[order]][:examples]]
            report.closest_kept = [example(i) for i in order[~near[order]][::-1][:examples]]
    kept: list[Battle] = []
    dropped: dict[str, Counter[str]] = {}
    for b, norm in zip(battles, norms, strict=True):
        reason = reason_of.get(norm)
        if reason is None:
            kept.append(b)
            continue
        dropped.setdefault(reason, Counter())[b.source] += 1
        report.matched.update(eval_names[matched_eval[norm]])
    report.kept, report.dropped = len(kept), {r: dropped[r] for r in (EXACT, NEAR) if r in dropped}
    return kept, report


def max_similarity(
    queries: np.ndarray, references: np.ndarray, *, chunk_bytes: int = 64 * 2**20
) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the highest cosine similarity to any reference row and its index.

    Rows must be unit vectors. Computed ``chunk`` query rows at a time so at most about
    ``chunk_bytes`` of similarities exist at once.
    """
    n, m = len(queries), len(references)
    best_sim = np.full(n, -np.inf, dtype=np.float32)
    best_idx = np.zeros(n, dtype=np.int64)
    if n == 0 or m == 0:
        return best_sim, best_idx
    rows = max(1, chunk_bytes // (4 * m))
    for start in range(0, n, rows):
        sims = queries[start : start + rows] @ references.T
        best_idx[start : start + rows] = sims.argmax(axis=1)
        best_sim[start : start + rows] = sims.max(axis=1)
    return best_sim, best_idx


def _embed(embedder: Embedder, texts: list[str]) -> np.ndarray:
    vectors = np.asarray(embedder.embed(texts))
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise ConfigError(
            f"embedder {getattr(embedder, 'name', embedder)!r} returned shape {vectors.shape} "
            f"for {len(texts)} texts; expected ({len(texts)}, dim)"
        )
    return normalize(vectors)
