"""Tokenising prompts and batching them by length for the classifier networks (no torch)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from lmroute.embeddings.base import encodable


class Tokens:
    """Token ids of prompts from a ``tokenizer.json``, truncated to ``max_length``, unpadded."""

    def __init__(self, tokenizer_file: str | Path, max_length: int):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.pad_id: int = next(
            (i for i in map(self.tokenizer.token_to_id, ("[PAD]", "<pad>")) if i is not None), 0
        )

    def __call__(self, prompts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(encodable(list(prompts)))]


def length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """Indices in batches of similar length (longest first), so little compute goes to padding."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def pad_numpy(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded int64 ``(input_ids, attention_mask)`` arrays for a batch of token lists."""
    width = max(len(x) for x in ids)
    out = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, x in enumerate(ids):
        out[i, : len(x)] = x
        mask[i, : len(x)] = 1
    return out, mask
