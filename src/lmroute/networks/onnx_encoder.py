"""A fine-tuned ``bert`` router as an ONNX file, scored with ONNX Runtime: no torch needed.

The export merges the fine-tuned top layers into the base encoder's weights (numpy and
safetensors only) and writes the sentence-embedding graph of
:func:`lmroute.embeddings.minilm_onnx.build_onnx_model`: the encoder, mean pooling and L2
normalisation, exactly the features the router's head reads. The head (a few KB) stays in the
router's ``weights.safetensors`` and runs in numpy.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmroute._extras import missing
from lmroute._files import write_atomic
from lmroute.exceptions import CheckpointError, ConfigError
from lmroute.networks.base_models import BaseModel, file_sha256
from lmroute.networks.batching import Tokens, length_batches, pad_numpy

ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"


def export(state: dict[str, np.ndarray], base: BaseModel, directory: Path) -> dict[str, Any]:
    """Write ``model.onnx`` and ``tokenizer.json`` for the fine-tuned encoder into ``directory``."""
    from safetensors.numpy import load_file, save_file

    from lmroute.embeddings.minilm_onnx import build_onnx_model

    config = json.loads((base.path / "config.json").read_text("utf-8"))
    if config.get("model_type") != "bert":
        raise ConfigError(
            f"ONNX export supports BERT encoders (like MiniLM), not {config.get('model_type')!r}"
        )
    weights = load_file(str(base.path / "model.safetensors"))
    prefix = "bert." if any(k.startswith("bert.") for k in weights) else ""
    for key, value in state.items():
        if not key.startswith("layers."):
            continue
        _, index, rest = key.split(".", 2)
        target = f"{prefix}encoder.layer.{index}.{rest}"
        if target not in weights or weights[target].shape != value.shape:
            raise CheckpointError(f"fine-tuned weight {key} has no counterpart {target} in {base.name}")
        weights[target] = np.asarray(value, dtype=weights[target].dtype)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(base.path / "config.json", Path(tmp) / "config.json")
        save_file(weights, str(Path(tmp) / "model.safetensors"))
        data = build_onnx_model(Path(tmp)).SerializeToString()
    write_atomic(directory / ONNX_FILE, data)
    shutil.copy(base.path / "tokenizer.json", directory / TOKENIZER_FILE)
    return {"file": ONNX_FILE, "sha256": file_sha256(directory / ONNX_FILE), "tokenizer": TOKENIZER_FILE}


class OnnxEncoder:
    """Sentence features ``(n, hidden)`` of the exported encoder, batched by length."""

    def __init__(self, directory: Path, info: dict[str, Any], *, max_length: int):
        try:
            import onnxruntime as ort
        except ImportError:
            raise missing("onnxruntime", purpose="this bert router (exported to ONNX)") from None
        path = directory / str(info.get("file", ONNX_FILE))
        if path.parent.resolve() != directory.resolve() or not path.is_file():
            raise CheckpointError(f"{directory}: the ONNX file {info.get('file')!r} is missing")
        if file_sha256(path) != info.get("sha256"):
            raise CheckpointError(f"{path} is corrupted: its checksum does not match config.json")
        options = ort.SessionOptions()
        options.intra_op_num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokens = Tokens(directory / str(info.get("tokenizer", TOKENIZER_FILE)), max_length)

    def features(self, prompts: Sequence[str], *, batch_size: int) -> np.ndarray:
        ids = self.tokens(prompts)
        out: np.ndarray | None = None
        for batch in length_batches([len(x) for x in ids], batch_size):
            input_ids, mask = pad_numpy([ids[i] for i in batch], self.tokens.pad_id)
            (vectors,) = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})
            if out is None:
                out = np.zeros((len(ids), vectors.shape[1]), dtype=np.float64)
            out[batch] = vectors
        return out  # type: ignore[return-value]  # None only for no prompts, which score() never passes


def copy_files(source: Path, target: Path, info: dict[str, Any]) -> None:
    """Copy an exported router's ONNX and tokenizer files to another router directory (made if
    need be)."""
    if source.resolve() == target.resolve():
        return
    target.mkdir(parents=True, exist_ok=True)
    for name in (info.get("file", ONNX_FILE), info.get("tokenizer", TOKENIZER_FILE)):
        shutil.copy(source / str(name), target / str(name))
