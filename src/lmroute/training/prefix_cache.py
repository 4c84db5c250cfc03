"""Outputs of a model's frozen lower layers per prompt, kept in memory across fits.

The classifier routers fine-tune only their top layers; what the frozen layers compute for a
prompt never changes, so it is computed once and reused by every epoch and by every later fit in
the same process (cross-fitting trains ten routers on largely the same prompts). Entries hold no
label, so sharing them between folds leaks nothing. The cache is bounded in bytes and forgets the
least recently used entries first.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from lmroute.exceptions import ConfigError

#: Default budget; ``LMROUTE_PREFIX_CACHE_MB`` overrides it (0 disables caching).
DEFAULT_MAX_MB = 2048


class PrefixCache:
    """An LRU map ``(namespace, prompt) -> array`` bounded by the total size of its arrays."""

    def __init__(self, *, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Total size of the cached arrays."""
        return self._bytes

    def get(self, namespace: str, prompt: str) -> np.ndarray | None:
        with self._lock:
            value = self._entries.get((namespace, prompt))
            if value is not None:
                self._entries.move_to_end((namespace, prompt))
            return value

    def put(self, namespace: str, prompt: str, value: np.ndarray) -> None:
        if value.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop((namespace, prompt), None)
            if old is not None:
                self._bytes -= old.nbytes
            self._entries[(namespace, prompt)] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.nbytes

    def lookup(
        self,
        namespace: str,
        prompts: Sequence[str],
        compute: Callable[[list[str]], list[np.ndarray]],
    ) -> list[np.ndarray]:
        """The arrays of ``prompts``, computing (in one call) and caching the missing ones."""
        found = [self.get(namespace, p) for p in prompts]
        missing = sorted({p for p, v in zip(prompts, found, strict=True) if v is None})
        if missing:
            computed = dict(zip(missing, compute(missing), strict=True))
            for prompt, value in computed.items():
                self.put(namespace, prompt, value)
            found = [computed[p] if v is None else v for p, v in zip(prompts, found, strict=True)]
        return found  # type: ignore[return-value]


_shared: PrefixCache | None = None
_shared_lock = threading.Lock()


def shared_cache() -> PrefixCache:
    """The process-wide cache used when a router is given none (created on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            raw = os.environ.get("LMROUTE_PREFIX_CACHE_MB", str(DEFAULT_MAX_MB))
            try:
                mb = int(raw)
            except ValueError:
                raise ConfigError(
                    f"LMROUTE_PREFIX_CACHE_MB must be a whole number of MB, got {raw!r}"
                ) from None
            _shared = PrefixCache(max_bytes=max(0, mb) << 20)
        return _shared
