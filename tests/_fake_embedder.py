"""A deterministic stand-in for a sentence embedder (hashed bag of words, unit rows), and a router
that scores through one."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from lmroute.embeddings.base import Embedder, normalize
from lmroute.routers.length import LengthRouter


class HashEmbedder(Embedder):
    """Each word adds ±1 to a hashed coordinate; prompts sharing words get similar vectors."""

    def __init__(self, dim: int = 64, *, name: str = "fake-hash"):
        self.dim = dim
        self.name = name
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % self.dim] += 1.0 if (value >> 32) & 1 else -1.0
        out[:, 0] += 1e-3  # an empty text still gets a unit vector
        return normalize(out)


class WordWindowEmbedder(Embedder):
    """Reads at most ``limit`` words of a text (hashed bag of words), and says so through
    ``pieces``: a stand-in for an embedder with an input limit, for the long-prompt policies."""

    name = "fake-words"
    piece_name = "words"

    def __init__(self, limit: int = 4, dim: int = 32):
        self.dim = dim
        self.window_size = limit
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.split()[: self.window_size]:
                value = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, value % self.dim] += 1.0
        out[:, 0] += 1e-3
        return normalize(out)

    def pieces(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        for text in texts:
            spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
            out.append(None if len(spans) <= self.window_size else np.array(spans))
        return out


class EmbeddingLengthRouter(LengthRouter):
    """A length router that passes each batch through ``embedder`` (a tap of the control's embedding
    summaries), named like :class:`HashEmbedder`: the summaries see what an embedding router reads."""

    embedder_name = "fake-hash"

    def __init__(self, embedder: Embedder):
        super().__init__()
        self.embedder = embedder

    def _score(self, prompts: list[str]) -> np.ndarray:
        self.embedder.embed(prompts)
        return super()._score(prompts)
