"""Prompt embeddings: one batched interface, local and remote backends, a content-hash cache.

``get_embedder(name)`` builds one by name; every embedder has ``embed(texts) -> (n, dim)`` float32
unit rows. Importing this package loads neither onnxruntime, torch nor httpx.
"""

from __future__ import annotations

from typing import Any

from lmroute._extras import available
from lmroute.embeddings.base import Embedder
from lmroute.exceptions import ConfigError

__all__ = ["Embedder", "approximated", "embedder_names", "get_embedder"]

#: Embedders whose vectors approximate another's (a quantised copy of the same model).
_APPROXIMATES = {"minilm-int8": "minilm"}


def embedder_names() -> list[str]:
    """The names :func:`get_embedder` knows (``openai:<model>`` stands for any model)."""
    return ["minilm", "minilm-int8", "minilm-onnx", "minilm-torch", "openai:<model>"]


def approximated(name: str) -> str:
    """The embedder whose vectors the one named ``name`` gives or approximates (``minilm-int8``:
    ``minilm``; any other: itself). A router trained with one scores with the other."""
    return _APPROXIMATES.get(name, name)


def _onnxruntime_available() -> bool:
    return available("onnxruntime") and available("onnx")


def get_embedder(name: str = "minilm", *, cache: bool = True, **options: Any) -> Embedder:
    """An embedder by name, wrapped in the on-disk content-hash cache unless ``cache=False``.

    - ``minilm``: all-MiniLM-L6-v2 (384 dimensions) on ONNX Runtime when ``onnxruntime`` and
      ``onnx`` are installed, else through sentence-transformers (same vectors either way);
    - ``minilm-onnx`` / ``minilm-torch``: that backend only;
    - ``minilm-int8``: the ONNX backend on an int8 quantised graph (a quarter of the memory, about
      twice the speed, cosine to ``minilm``'s vectors ~0.99);
    - ``openai:<model>``: an OpenAI-compatible endpoint; options ``base_url``, ``api_key_env``
      (the NAME of the variable holding the key), ``dimensions``, ``dim``, ``max_chars``, ...
      Options written as ``openai:<model>?dimensions=256&max_chars=4000`` (an embedder's
      ``name``) are accepted too.

    Other ``options`` go to the backend's constructor (e.g. ``batch_size``, ``threads``,
    ``model_dir``); ``cache_dir`` sets the cache folder, ``cache_max_bytes`` caps the size of the
    embedder's shards there (the oldest are deleted; see :mod:`lmroute.embeddings.cache`).
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"embedder name must be a non-empty string, got {name!r}")
    directory = options.pop("cache_dir", None)
    max_bytes = options.pop("cache_max_bytes", None)
    if name == "minilm-int8":
        from lmroute.embeddings import minilm

        embedder: Embedder = minilm.OnnxMiniLM(precision="int8", **options)
    elif name in ("minilm", "minilm-onnx", "minilm-torch"):
        from lmroute.embeddings import minilm

        # Without either backend, the ONNX one is chosen so that its error names the [embed] extra.
        onnx = name == "minilm-onnx" or (
            name == "minilm" and (_onnxruntime_available() or not available("sentence_transformers"))
        )
        embedder = minilm.OnnxMiniLM(**options) if onnx else minilm.TorchMiniLM(**options)
    elif name.startswith("openai:"):
        from lmroute.embeddings.openai import OpenAIEmbedder, options_from_query

        model, _, query = name[len("openai:") :].partition("?")
        for key, value in options_from_query(query).items():
            options.setdefault(key, value)
        embedder = OpenAIEmbedder(model, **options)
    else:
        raise ConfigError(f"unknown embedder {name!r}; known: {', '.join(embedder_names())}")
    if not cache:
        return embedder
    from lmroute.embeddings.cache import CachedEmbedder

    return CachedEmbedder(embedder, directory=directory, max_bytes=max_bytes)
