"""The embedding contract: ``embed(texts) -> (n, d)`` float32 rows of unit length."""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

from lmroute.exceptions import ConfigError


class Embedder(abc.ABC):
    """Turns a batch of texts into L2-normalised vectors.

    ``name`` identifies the model and everything that changes its vectors (backend-independent
    where the vectors agree), so caches and router checkpoints can record and check it.
    """

    name: str
    dim: int

    @abc.abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts: a float32 array of shape ``(len(texts), dim)`` with unit-norm rows."""


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def check_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list of strings, or a ConfigError that says what was wrong."""
    if isinstance(texts, (str, bytes)):
        raise ConfigError("embed() takes a sequence of texts; wrap a single text in a list")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ConfigError(f"text {i} is a {type(text).__name__}, not a str")
    return texts
