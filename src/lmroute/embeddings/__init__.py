"""Prompt embeddings: one batched interface, local and remote backends, a content-hash cache."""

from lmroute.embeddings.base import Embedder

__all__ = ["Embedder"]
