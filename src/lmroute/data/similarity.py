"""How much a set of prompts looks like training data: the benchmark–dataset similarity score.

For prompts P and a training set D, a prompt's *nearest-neighbour similarity* is the largest
cosine similarity between its embedding and the embedding of any prompt of D. The *similarity
score* of P against D is the mean of these over P's prompts (RouteLLM, Ong et al., 2024, §5,
which finds the gains of augmented training data largest where this score is high). Its
distribution says how many prompts have a near neighbour: the share at or above 0.9, 0.8, ...

Against several sources, the overall nearest neighbour of a prompt is the nearest over all of
them, so the overall figures are computed from the per-source ones without another search; so are
the figures against all sources but one (:meth:`SimilarityReport.without`): how much the prompts
look like the training data when that source is left out, as in a leave-one-source-out run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lmroute.data.decontaminate import max_similarity
from lmroute.embeddings.base import normalize
from lmroute.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    from lmroute.embeddings.base import Embedder

#: Nearest-neighbour similarities at which the distribution is reported (share of prompts >= cut).
DEFAULT_CUTS = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5)
#: The label of the figures against every source at once.
ALL_SOURCES = "all sources"


def nearest_similarities(
    queries: np.ndarray, corpus: np.ndarray, *, chunk_bytes: int = 64 * 2**20
) -> np.ndarray:
    """For each row of ``queries`` (n, d), the largest cosine similarity to any row of ``corpus``
    (m, d): a float32 array of shape (n,).

    Rows are normalised here. One matrix product per chunk of query rows, each chunk's
    similarities taking at most about ``chunk_bytes``.
    """
    queries, corpus = np.asarray(queries), np.asarray(corpus)
    if queries.ndim != 2 or corpus.ndim != 2 or queries.shape[1] != corpus.shape[1]:
        raise ConfigError(
            f"queries and corpus must be 2-d arrays of one width, got {queries.shape} and {corpus.shape}"
        )
    if len(corpus) == 0:
        raise ConfigError("the corpus has no rows: a nearest neighbour needs at least one")
    best, _ = max_similarity(normalize(queries), normalize(corpus), chunk_bytes=chunk_bytes)
    return best


@dataclass(frozen=True)
class SimilarityStats:
    """Nearest-neighbour similarities of some prompts against one training set (or all of them)."""

    source: str
    #: Distinct training prompts searched (None: not counted).
    train_prompts: int | None
    #: Each prompt's nearest-neighbour similarity, in the prompts' order.
    nearest: np.ndarray
    cuts: tuple[float, ...] = DEFAULT_CUTS

    @property
    def score(self) -> float:
        """The similarity score: the mean nearest-neighbour similarity."""
        return float(np.mean(self.nearest))

    @property
    def median(self) -> float:
        return float(np.median(self.nearest))

    @property
    def shares(self) -> dict[float, float]:
        """The share of prompts whose nearest neighbour is at least each cut."""
        return {cut: float(np.mean(self.nearest >= cut)) for cut in self.cuts}

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "train_prompts": self.train_prompts,
            "score": round(self.score, 6),
            "median": round(self.median, 6),
            "share_at_least": {f"{cut:g}": round(share, 6) for cut, share in self.shares.items()},
        }


@dataclass(frozen=True)
class SimilarityReport:
    """The similarity of one set of prompts against each source and against all of them."""

    name: str
    prompts: int
    embedder: str
    overall: SimilarityStats
    sources: list[SimilarityStats]

    def without(self, source: str) -> SimilarityStats:
        """The figures against every source but ``source`` (its nearest over the others)."""
        others = [s for s in self.sources if s.source != source]
        if len(others) == len(self.sources):
            known = ", ".join(s.source for s in self.sources)
            raise ConfigError(f"{source!r} is not one of the sources: {known}")
        if not others:
            raise ConfigError(f"{source!r} is the only source: nothing is left without it")
        nearest = np.max([s.nearest for s in others], axis=0)
        return SimilarityStats(f"all but {source}", None, nearest, self.overall.cuts)

    def to_dict(self) -> dict[str, Any]:
        several = len(self.sources) > 1

        def source_dict(stats: SimilarityStats) -> dict[str, Any]:
            if not several:
                return stats.to_dict()
            without = self.without(stats.source).to_dict()
            return {**stats.to_dict(), "without": {k: v for k, v in without.items() if k != "train_prompts"}}

        return {
            "prompts_of": self.name,
            "prompts": self.prompts,
            "embedder": self.embedder,
            "overall": self.overall.to_dict(),
            "sources": [source_dict(s) for s in self.sources],
        }

    def describe(self) -> str:
        """A fixed-width table: one row per source (with the overall score without it, when there
        are several), then the overall row."""
        cuts = self.overall.cuts
        several = len(self.sources) > 1
        head = ["source", "train prompts", "score", "median", *(f">={c:g}" for c in cuts)]
        head += ["all but it"] if several else []
        body = [head]
        for stats in [*self.sources, self.overall]:
            without = ""
            if several and stats is not self.overall:
                without = f"{self.without(stats.source).score:.4f}"
            body.append(
                [
                    stats.source,
                    "" if stats.train_prompts is None else f"{stats.train_prompts:,}",
                    f"{stats.score:.4f}",
                    f"{stats.median:.4f}",
                    *(f"{100 * s:.1f}%" for s in stats.shares.values()),
                    *([without] if several else []),
                ]
            )
        widths = [max(len(row[i]) for row in body) for i in range(len(head))]
        lines = [f"{self.name}: {self.prompts:,} prompts, nearest training prompt by {self.embedder}"]
        for k, row in enumerate(body):
            cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]
            lines.append("  ".join(cells))
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)


def similarity_report(
    prompts: Sequence[str],
    sources: Mapping[str, Sequence[str]],
    *,
    embedder: Embedder,
    name: str = "prompts",
    cuts: Sequence[float] = DEFAULT_CUTS,
    chunk_bytes: int = 64 * 2**20,
) -> SimilarityReport:
    """The similarity of ``prompts`` against each training set of ``sources`` (name -> its
    prompts) and against all of them together. Each distinct text is embedded once."""
    cuts = check_cuts(cuts)
    prompts = list(prompts)
    if not prompts:
        raise DataError(f"{name}: no prompts to compare")
    if not sources:
        raise ConfigError("no training sources to compare the prompts with")
    queries = _embed(embedder, prompts)
    per_source = []
    union: set[str] = set()
    for source, texts in sources.items():
        distinct = list(dict.fromkeys(texts))
        if not distinct:
            raise DataError(f"source {source!r} has no prompts")
        union.update(distinct)
        nearest = nearest_similarities(queries, _embed(embedder, distinct), chunk_bytes=chunk_bytes)
        per_source.append(SimilarityStats(source, len(distinct), nearest, cuts))
    overall = np.max([s.nearest for s in per_source], axis=0)
    return SimilarityReport(
        name,
        len(prompts),
        embedder.name,
        SimilarityStats(ALL_SOURCES, len(union), overall, cuts),
        per_source,
    )


def check_cuts(cuts: Sequence[float]) -> tuple[float, ...]:
    """``cuts`` as floats; a :class:`ConfigError` unless they are some numbers in [-1, 1]."""
    values = tuple(float(c) for c in cuts)
    if not values or not all(-1.0 <= c <= 1.0 for c in values):
        raise ConfigError(f"similarity cuts must be numbers in [-1, 1], got {list(cuts)}")
    return values


def _embed(embedder: Embedder, texts: list[str]) -> np.ndarray:
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise ConfigError(f"embedder {embedder.name!r} returned shape {vectors.shape} for {len(texts)} texts")
    return vectors
