"""The embedding contract: ``embed(texts) -> (n, d)`` float32 rows of unit length."""

from __future__ import annotations

import abc
import logging
import re
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from lmroute.exceptions import ConfigError

#: A surrogate code point: in a str it is always unpaired (a pair is one code point).
_SURROGATE = re.compile("[\ud800-\udfff]")


class Embedder(abc.ABC):
    """Turns a batch of texts into L2-normalised vectors.

    ``name`` identifies the model and everything that changes its vectors (backend-independent
    where the vectors agree), so caches and router checkpoints can record and check it.

    An embedder that reads at most so much of a text says how it reads a long one through
    :meth:`pieces` and ``window_size``, so that a long-prompt policy
    (:mod:`lmroute.embeddings.long_prompts`) can choose which windows of it to embed.
    """

    name: str
    dim: int
    #: Pieces (``piece_name``) in one window of a long text as a long-prompt policy cuts it: a
    #: few fewer than the model reads, so that a window embedded on its own is read whole.
    window_size: int = 0
    piece_name: str = "characters"

    @property
    def cache_name(self) -> str:
        """The name a disk cache files this embedder's vectors under: :attr:`name`, plus the
        version of anything that changes the vectors without changing the name (a rebuilt graph)."""
        return self.name

    @abc.abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts: a float32 array of shape ``(len(texts), dim)`` with unit-norm rows."""

    def embed_parts(self, texts: Sequence[str]) -> Iterator[np.ndarray]:
        """The rows :meth:`embed` gives, in consecutive parts (of ``len(texts)`` rows together),
        each as soon as it is computed: a cache keeps those computed before a failure. One part
        by default; an embedder that pays per request (:mod:`~lmroute.embeddings.openai`) gives
        one per request."""
        yield self.embed(texts)

    def pieces(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Per text: None when the model reads it whole, else the ``(n, 2)`` character spans
        ``[start, end)`` of the pieces (word pieces, characters) it would be read in, in order.

        The default reads every text whole: an embedder with a limit overrides this.
        """
        return [None] * len(check_texts(texts))

    def observe(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Hear the vectors a long-prompt policy made of ``texts`` from this embedder's windows:
        texts it never embedded whole. Nothing by default; a tap that keeps what a router embedded
        (:mod:`lmroute.control.taps`) keeps these too."""
        return None


class PassThroughEmbedder(Embedder):
    """An embedder in front of ``inner`` that gives ``inner``'s vectors (a cache, a tap).

    It reads a long text as ``inner`` does and passes on what it observes, so that a long-prompt
    policy sees through it: without this a cache in front of MiniLM would look like an embedder
    that reads every text whole, and the policy would quietly embed heads only.
    """

    inner: Embedder

    @property
    def window_size(self) -> int:  # type: ignore[override]
        return self.inner.window_size

    @property
    def piece_name(self) -> str:  # type: ignore[override]
        return self.inner.piece_name

    @property
    def cache_name(self) -> str:
        return self.inner.cache_name

    def pieces(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        return self.inner.pieces(texts)

    def observe(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        self.inner.observe(texts, vectors)


class CountsTruncation:
    """Counts the texts an embedder embedded (``embedded``) and cut to its limit (``truncated``).

    The first call that cuts any text logs a warning, later ones a debug line, so a long run says
    once that something was lost without flooding the log. Embedders call :meth:`_count` once a batch.
    """

    embedded: int = 0
    truncated: int = 0
    # one lock for all embedders: a count is two additions, contention cannot matter
    _count_lock = threading.Lock()

    def _count(self, n: int, cut: int, logger: logging.Logger, cut_means: str) -> None:
        """Add a batch of ``n`` texts of which ``cut`` were truncated; ``cut_means`` completes
        "N of M texts ..." in the log line (what was cut, and what of such a text is embedded)."""
        with self._count_lock:
            first = cut and not self.truncated
            self.embedded += n
            self.truncated += cut
            total = self.truncated
        if cut:
            log = logger.warning if first else logger.debug
            log(
                "%s: %d of %d texts %s; %d truncated so far",
                getattr(self, "name", "?"),
                cut,
                n,
                cut_means,
                total,
            )


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


def encodable(texts: list[str]) -> list[str]:
    """``texts`` with each unpaired UTF-16 surrogate as U+FFFD, what a UTF-8 decoder shows for broken
    bytes. JSON may escape half an emoji (``"\\ud83d"``, as JavaScript cuts text); such a str cannot
    be UTF-8 encoded, so neither a tokenizer nor an HTTP body takes it. One character stands for
    one, so character offsets stay; other texts are returned as they are."""
    return [_SURROGATE.sub("\ufffd", text) for text in texts]
