"""Long-prompt policies: which part of a prompt longer than the embedder's input is embedded.

MiniLM reads at most 254 word pieces. Prompts that open with a long shared prefix (few-shot
examples, a system prompt, a retrieved document) then all embed alike, although the question that
tells them apart is at their end. A policy decides what a long prompt's vector describes:

======== ============================================================ ==============================
policy   the vector of a long prompt                                  embeddings per long prompt
======== ============================================================ ==============================
head     its first window (what the embedder does by itself)          1
tail     its last window, where the question usually is               1
head_tail the mean of its first and its last window                   2
windows  the mean of ceil(n / size) windows spread evenly over all of  ceil(n / size), at most
         it, the first at its start and the last at its end           ``MAX_WINDOWS`` (8)
======== ============================================================ ==============================

A prompt the embedder reads whole costs one embedding and gets the same vector under every
policy. Windows are cut at the embedder's pieces (MiniLM: word pieces) and embedded as text, so
the embedding cache keeps them like any prompt. Long prompts are counted (``embedder.truncated``)
and the first call that meets one logs a warning, as truncation is logged. The inner embedder hears
the vectors made of a long prompt's windows (``observe``): a drift tap keeps their summaries.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np

from lmroute.embeddings.base import CountsTruncation, Embedder, check_texts, normalize
from lmroute.exceptions import ConfigError

logger = logging.getLogger(__name__)

LongPromptPolicy = Literal["head", "tail", "head_tail", "windows"]
POLICIES: tuple[str, ...] = get_args(LongPromptPolicy)
#: Most windows the ``windows`` policy embeds of one prompt: it bounds the cost of a huge prompt
#: (beyond it, the windows are spread evenly with gaps between them).
MAX_WINDOWS = 8


def window_starts(pieces: int, size: int, policy: str) -> list[int]:
    """First piece of each window of ``size`` pieces a policy embeds of a text of ``pieces`` pieces."""
    if pieces <= size:
        return [0]
    last = pieces - size
    if policy == "head":
        return [0]
    if policy == "tail":
        return [last]
    if policy == "head_tail":
        return [0, last]
    if policy == "windows":
        count = min(math.ceil(pieces / size), MAX_WINDOWS)
        return sorted({round(float(x)) for x in np.linspace(0, last, count)})
    raise ConfigError(f"unknown long-prompt policy {policy!r}; known: {', '.join(POLICIES)}")


def window_texts(text: str, spans: np.ndarray | None, size: int, policy: str) -> list[str]:
    """The parts of ``text`` a policy embeds; ``spans``: its pieces' character spans (None: the
    text is read whole)."""
    if spans is None:
        return [text]
    return [
        text[int(spans[start, 0]) : int(spans[min(start + size, len(spans)) - 1, 1])]
        for start in window_starts(len(spans), size, policy)
    ]


_WHAT = {
    "head": "only their start is embedded",
    "tail": "their last {size} {unit} are embedded",
    "head_tail": "the mean of their first and last {size} {unit} is embedded",
    "windows": f"the mean of up to {MAX_WINDOWS} windows of {{size}} {{unit}} over all of it is embedded",
}


class LongPromptEmbedder(CountsTruncation, Embedder):
    """``inner``, with long texts embedded as ``policy`` says (``head``: ``inner``'s vectors).

    ``truncated`` counts the texts longer than ``inner`` reads, under every policy (under ``head``
    too: the inner embedder's own count misses the texts a cache in front of it answers).
    """

    def __init__(self, inner: Embedder, policy: str):
        if policy not in POLICIES:
            raise ConfigError(f"unknown long-prompt policy {policy!r}; known: {', '.join(POLICIES)}")
        self.inner = inner
        self.policy = policy
        self.dim = inner.dim
        self.name = inner.name if policy == "head" else f"{inner.name} (long prompts: {policy})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts: ``(len(texts), dim)`` float32 unit rows, long ones by the policy."""
        texts = check_texts(texts)
        if not texts:
            return self.inner.embed(texts)
        spans = self.inner.pieces(texts)
        long = sum(s is not None for s in spans)
        size = self.inner.window_size
        what = _WHAT[self.policy].format(size=size, unit=self.inner.piece_name)
        self._count(len(texts), long, logger, f"were longer than the embedder reads; {what}")
        if not long or self.policy == "head":
            return self.inner.embed(texts)
        if size < 1:
            raise ConfigError(f"embedder {self.inner.name!r} cuts long texts but gives no window size")
        parts: list[str] = []
        owner: list[int] = []
        for i, (text, pieces) in enumerate(zip(texts, spans, strict=True)):
            windows = window_texts(text, pieces, size, self.policy)
            parts.extend(windows)
            owner.extend([i] * len(windows))
        vectors = np.asarray(self.inner.embed(parts), dtype=np.float32)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        np.add.at(out, np.asarray(owner), vectors)
        out = normalize(out)
        cut = [i for i, s in enumerate(spans) if s is not None]
        self.inner.observe([texts[i] for i in cut], out[cut])
        return out


def embeddings_per_text(spans: Sequence[np.ndarray | None], size: int, policy: str) -> np.ndarray:
    """How many embeddings a policy computes for each text (its cost relative to ``head``)."""
    return np.array([1 if s is None else len(window_starts(len(s), size, policy)) for s in spans])
