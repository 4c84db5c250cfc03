"""The all-MiniLM-L6-v2 encoder as an ONNX graph, written from its safetensors weights without torch.

Exporting through torch would make torch a requirement of the ONNX backend; instead
:func:`build_onnx_model` writes the graph directly with the ``onnx`` package (standard opset-17
operators that ONNX Runtime fuses into its attention / layer-norm / GELU kernels), and
:func:`onnx_model_path` builds it once per model and graph version into the user cache.

**int8.** :func:`quantize_model` makes an int8 copy of that graph with ONNX Runtime's dynamic
quantisation (weights int8 per output channel, activations quantised per call): a quarter of the
weights' memory and about twice the speed on CPUs with int8 dot products. The output projections
of attention and feed-forward blocks are the exception: with their inputs quantised per call as
well they cost the most accuracy (cosine to the fp32 vectors at worst 0.983 instead of 0.989 on
400 AlpacaEval prompts, and the shipped mf's APGR moved by up to 0.014 instead of 0.002 on
MT-Bench and GSM8K), so they hold int8 weights in blocks of 128 input rows, each block with its
own scale (ONNX Runtime's ``MatMulNBits``), and quantise their inputs per row and block as well:
4.5 MB instead of 18 MB as float32, and faster. The shipped mf's APGR with them stays within
0.003 of fp32's on MMLU, GSM8K and MT-Bench (blocks of 32: within 0.002 but 12% slower; of 64:
MT-Bench, 72 prompts, moved by 0.010).
``onnx_model_path(model_dir, "int8")`` caches it beside the fp32 file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lmroute import _paths
from lmroute._extras import missing
from lmroute._files import write_atomic
from lmroute.exceptions import ConfigError

logger = logging.getLogger(__name__)

#: Changes whenever :func:`build_onnx_model` would write a different graph (part of the cache key).
GRAPH_VERSION = 1
#: Changes whenever :func:`quantize_model` would write a different int8 graph (part of its cache key).
QUANT_VERSION = 3
#: The precisions :func:`onnx_model_path` builds.
PRECISIONS = ("fp32", "int8")
_OPSET = 17
_IR_VERSION = 8  # the IR version of opset 17, so older ONNX Runtime releases can read the file


def onnx_model_path(model_dir: Path, precision: str = "fp32") -> Path:
    """The ONNX file for the model in ``model_dir``, built into the user cache on first use.

    The cache key covers the graph (and for int8 the quantisation) version, the model's config and
    the weights' content (:func:`_weights_digest`), so a changed model or a new graph layout gets a
    new file, while the same wheel installed in two environments shares one. ``precision`` is
    ``fp32`` or ``int8`` (quantised from the fp32 graph built afresh, so a damaged fp32 file cannot
    spoil it and int8 alone never writes the 90 MB fp32 file).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    key = _model_key(model_dir)
    # the two kinds have distinct prefixes, so clearing one kind's stale files keeps the other's
    kind = f"g{GRAPH_VERSION}" if precision == "fp32" else f"int8-q{QUANT_VERSION}-g{GRAPH_VERSION}"
    target = _paths.cache_dir() / "onnx" / f"all-MiniLM-L6-v2-{kind}-{key}.onnx"
    if target.is_file():
        return target
    logger.info("building the MiniLM ONNX graph (%s) into %s (once)", precision, target)
    graph = build_onnx_model(model_dir)
    data = graph.SerializeToString() if precision == "fp32" else quantize_model(graph)
    write_atomic(target, data)
    # files for an older graph or a reinstalled model are 23-90 MB each and never read again
    stale_prefix = "all-MiniLM-L6-v2-g" if precision == "fp32" else "all-MiniLM-L6-v2-int8-"
    for stale in target.parent.glob(f"{stale_prefix}*.onnx"):
        if stale != target:
            with contextlib.suppress(OSError):
                stale.unlink()
    return target


def _model_key(model_dir: Path) -> str:
    """The graph version, the config and the weights' content (:func:`_weights_digest`), hashed."""
    weights = model_dir / "model.safetensors"
    stat = weights.stat()
    config = (model_dir / "config.json").read_text(encoding="utf-8")
    digest = _weights_digest(str(weights.resolve()), stat.st_size, stat.st_mtime_ns)
    return hashlib.sha256(json.dumps([GRAPH_VERSION, _OPSET, config, digest]).encode()).hexdigest()[:16]


@functools.cache
def _weights_digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of the weights file, once per process and file version (~0.1 s for MiniLM's 90 MB).

    The content, not the path or the time of installation: keyed by those, two environments with
    the same wheel (a development and a serving venv) had keys of their own, and each one's build
    removed the other's file as stale, so every start in the other one rebuilt the graph.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def quantize_model(model: Any) -> bytes:
    """The int8 copy of an fp32 MiniLM graph (an ``onnx.ModelProto``, changed in place), serialised.

    Dynamic quantisation: MatMul weights int8 per output channel (``MatMulConstBOnly``: the
    attention products of two activations stay float), the word-embedding table int8; the
    output projections of attention and feed-forward blocks (``*.output.dense``) get block-wise
    int8 weights instead (:func:`_blockwise_int8`).
    """
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise missing("onnx", purpose="MiniLM's int8 ONNX graph") from None
    import onnx

    for node in model.graph.node:  # quantize_dynamic excludes nodes by name; ours have none
        node.name = node.name or node.output[0]
    projections = [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul" and node.input[1].endswith(".output.dense.weight.T")
    ]
    with tempfile.TemporaryDirectory(prefix="lmroute-int8-") as folder:
        out = Path(folder) / "int8.onnx"
        quantize_dynamic(
            model,
            out,
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=projections,
            extra_options={"MatMulConstBOnly": True},
        )
        quantized = onnx.load(str(out))
    _blockwise_int8(quantized, set(projections))
    return quantized.SerializeToString()


#: Input rows per scale of a block-wise quantised projection.
_BLOCK = 128


def _blockwise_int8(model: Any, names: set[str]) -> None:
    """Replace the MatMul nodes ``names`` of ``model`` by ``MatMulNBits`` with 8-bit weights.

    Each output column's weights are cut into blocks of :data:`_BLOCK` input rows, each scaled by
    its largest magnitude to -127..127 and stored offset by 128 (the operator's default zero
    point); ``accuracy_level`` 4 quantises the inputs per block as well and uses int8 kernels.
    """
    from onnx import helper, numpy_helper

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    for i, node in enumerate(model.graph.node):
        if node.name not in names:
            continue
        weights = numpy_helper.to_array(initializers[node.input[1]])  # (in, out)
        rows, cols = weights.shape
        blocks = weights.T.reshape(cols, rows // _BLOCK, _BLOCK)
        scales = np.abs(blocks).max(axis=2) / 127.0
        scales[scales == 0] = 1.0
        codes = np.clip(np.rint(blocks / scales[..., None]), -127, 127).astype(np.int16) + 128
        model.graph.initializer.remove(initializers[node.input[1]])
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(codes.astype(np.uint8), f"{node.input[1]}.int8"),
                numpy_helper.from_array(scales.astype(np.float32).ravel(), f"{node.input[1]}.scales"),
            ]
        )
        model.graph.node[i].CopyFrom(
            helper.make_node(
                "MatMulNBits",
                [node.input[0], f"{node.input[1]}.int8", f"{node.input[1]}.scales"],
                list(node.output),
                name=node.name,
                domain="com.microsoft",
                K=rows,
                N=cols,
                bits=8,
                block_size=_BLOCK,
                accuracy_level=4,
            )
        )
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


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
        raise missing("onnx", purpose="MiniLM's ONNX graph") from None
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
