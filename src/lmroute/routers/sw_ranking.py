"""Similarity-weighted ranking: a Bradley–Terry fit per prompt, weighting battles by prompt similarity.

The paper's ``sw_ranking`` router. Training models are bucketed into ``num_tiers`` tiers by their
Elo ratings on all battles. To score a prompt, every training battle gets the weight
``10 * base ** (sim / max_sim)`` (``sim``: cosine similarity of its prompt to the query, ``max_sim``:
the largest such similarity, ``base`` = 10 as in the paper), a weighted Bradley–Terry model over the
tiers is fitted, and the score is ``sigmoid(r_strong_tier - r_weak_tier)``: the strong model's
expected win rate against the weak one.

The reference refits a logistic regression over all battles for each prompt. The likelihood
depends on the battles only through the weighted win counts of each (tier, tier) cell, so here
one matrix product gives the similarities of a batch of prompts to all training prompts, a gather
and segmented sum turn the weights into per-prompt count matrices, and one batched Newton solve on
those tiny problems gives every prompt's ratings (:mod:`lmroute.training.bradley_terry`). The
result equals the reference's fit (see the tests); battles of one prompt are stored once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from lmroute.data.battles import Battle, sample_prompts
from lmroute.embeddings.base import normalize
from lmroute.exceptions import CheckpointError, ConfigError
from lmroute.routers._embedding_pair import EmbeddingPairConfig, EmbeddingPairRouter, unchanged_on_failure
from lmroute.training import bradley_terry as bt
from lmroute.training.battle_index import checked_battles, index_battles

logger = logging.getLogger(__name__)

#: Per-chunk budget of (query, training prompt or entry) elements when scoring: ~32 MB of float64.
_CHUNK_ELEMENTS = 1 << 22
#: A query whose best similarity is not positive would flip the weighting; clamp it.
_MIN_MAX_SIMILARITY = 1e-6


class SWRankingConfig(EmbeddingPairConfig):
    #: Models are bucketed into at most this many tiers of adjacent Elo (the paper: 10).
    num_tiers: int = Field(default=10, ge=2, le=1000)
    #: Battle weight ``10 * similarity_base ** (sim / max_sim)``; 1 weights all battles alike. At most
    #: 1e38: the weights are float32, and a larger base made them infinite (a ValueError at each score).
    similarity_base: float = Field(default=10.0, ge=1.0, le=1e38)
    #: Battles between two models of one tier: "anchor" keeps them as the reference's design
    #: matrix does (that tier against a fixed Elo-1000 opponent), "drop" ignores them.
    same_tier_battles: Literal["anchor", "drop"] = "anchor"
    #: Ridge on ratings as a fraction of the total battle weight; 0 is the reference's unpenalised
    #: fit, a small value keeps ratings finite when a tier never loses.
    l2: float = Field(default=1e-6, ge=0.0)
    #: Storage of the training prompts' embeddings in the checkpoint: 2, 4 or 1 byte(s) a number
    #: ("int8": scaled per prompt; similarities then move by about 1e-3).
    embedding_dtype: Literal["float16", "float32", "int8"] = "float16"
    #: Weight of the prompt's standardised log length, appended to its embedding before the
    #: similarities are taken (0: off, as in the paper), so battles on prompts of a similar length
    #: count more: unit-length sentence embeddings lose length, which alone routes well. At most
    #: 1e6 (length alone decides long before): at 1e20 the float32 norms overflowed and every
    #: prompt scored alike.
    length_weight: float = Field(default=0.0, ge=0.0, le=1e6)


class SWRankingRouter(EmbeddingPairRouter[SWRankingConfig]):
    """Similarity-weighted Elo ranking over model tiers (RouteLLM's ``sw_ranking``), batched."""

    name = "sw_ranking"
    config_class = SWRankingConfig

    @unchanged_on_failure
    def fit(self, battles: Sequence[Battle], *, progress: bool = False) -> SWRankingRouter:
        """Rate and tier the models, embed the battles' prompts and store per-prompt tier counts."""
        battles = sample_prompts(checked_battles(battles), self.config.max_train_prompts, seed=0)
        data = index_battles(battles)
        self.models = data.models
        cfg = self.config
        num_models = len(self.models)
        wins = bt.count_wins(data.a, data.b, data.outcome, num_models, weights=data.weight)
        ratings = bt.fit_ratings(wins, l2=cfg.l2)
        tiers = bt.compute_tiers(ratings, cfg.num_tiers)
        strong, weak = self._check_pair(self.models)
        if tiers[strong] == tiers[weak]:
            logger.warning(
                "%s and %s fall in one Elo tier of %d: this router will refuse to score them; "
                "train with a larger num_tiers or compare other models (with_models)",
                cfg.strong_model,
                cfg.weak_model,
                cfg.num_tiers,
            )
        self._fit_length(data.prompts, enabled=cfg.length_weight > 0)
        embeddings = self._features(data.prompts, weight=cfg.length_weight, progress=progress)
        self._set_state(
            **_stored_embeddings(embeddings, cfg.embedding_dtype),
            ratings=ratings,
            tiers=tiers,
            **_prompt_tier_counts(
                data.prompt,
                tiers[data.a],
                tiers[data.b],
                data.outcome,
                data.weight,
                num_prompts=len(data.prompts),
                num_tiers=int(tiers.max()) + 1,
                same_tier=cfg.same_tier_battles,
            ),
        )
        self._save_vocabulary()
        self.metadata["battles"] = {"used": len(data.a), "self_battles_dropped": data.self_battles}
        self.metadata["tiers"] = {m: int(t) for m, t in zip(self.models, tiers, strict=True)}
        self.metadata["elo"] = {
            m: round(float(e), 1) for m, e in zip(self.models, bt.to_elo(ratings), strict=True)
        }
        return self

    # -- scoring -----------------------------------------------------------------------------
    def _score(self, prompts: list[str]) -> np.ndarray:
        strong, weak = self._tier_pair()
        queries = normalize(
            self._features(prompts, weight=self.config.length_weight, width=self._embeddings.shape[1])
        )
        size = max(self._embeddings.shape[0], self._entry_prompt.size, 1)
        chunk = max(1, min(1024, _CHUNK_ELEMENTS // size))
        out = np.empty(len(prompts))
        for start in range(0, len(prompts), chunk):
            counts = self.query_counts(queries[start : start + chunk])
            ratings = bt.fit_ratings(counts, l2=self.config.l2)
            out[start : start + chunk] = _sigmoid(ratings[:, strong] - ratings[:, weak])
        return out

    def _predict_quality(self, prompts: list[str], models: list[str]) -> np.ndarray:
        self._require_fitted()
        tiers = self._tiers[self.model_indices(models)]
        reference = self._tiers[self._reference_models()]
        out = np.empty((len(prompts), len(models)))
        for start, ratings in self._prompt_ratings(prompts):
            # a model's rating on a prompt is its tier's; the reference is the trained models' mean
            mean = ratings[:, reference].mean(axis=1, keepdims=True)
            out[start : start + len(ratings)] = _sigmoid(ratings[:, tiers] - mean)
        return out

    def _prompt_ratings(self, prompts: list[str]) -> Iterator[tuple[int, np.ndarray]]:
        """Per chunk of prompts, its first index and each prompt's tier ratings ``(chunk, T + 1)``."""
        self._require_fitted()
        queries = normalize(
            self._features(prompts, weight=self.config.length_weight, width=self._embeddings.shape[1])
        )
        size = max(self._embeddings.shape[0], self._entry_prompt.size, 1)
        chunk = max(1, min(1024, _CHUNK_ELEMENTS // size))
        for start in range(0, len(prompts), chunk):
            yield start, bt.fit_ratings(self.query_counts(queries[start : start + chunk]), l2=self.config.l2)

    def query_counts(self, queries: np.ndarray) -> np.ndarray:
        """Similarity-weighted tier win matrices ``(n, T + 1, T + 1)`` for embedded queries.

        ``C[q, i, j]`` is the weighted number of battles tier ``i`` won against tier ``j`` for
        query ``q`` (a tie counts ½ each way; the last row and column is the anchor).
        """
        self._require_fitted()
        sims = np.asarray(queries, dtype=np.float32) @ self._embeddings.T
        max_sim = np.maximum(sims.max(axis=1, keepdims=True), _MIN_MAX_SIMILARITY)
        # 10 * base ** (sim / max_sim), computed in place on the similarity matrix
        sims *= (math.log(self.config.similarity_base) / max_sim).astype(np.float32)
        np.exp(sims, out=sims)
        weights = sims
        width = self._num_tiers + 1
        counts = np.zeros((len(queries), width * width))
        if self._entry_prompt.size:
            gathered = weights[:, self._entry_prompt].astype(np.float64)
            gathered *= 10.0 * self._entry_amount
            counts[:, self._cells] = np.add.reduceat(gathered, self._cell_starts, axis=1)
        return counts.reshape(len(queries), width, width)

    def _tier_pair(self) -> tuple[int, int]:
        self._require_fitted()
        strong, weak = self._check_pair(self.models)
        ts, tw = int(self._tiers[strong]), int(self._tiers[weak])
        if ts == tw:
            raise ConfigError(
                f"{self.config.strong_model!r} and {self.config.weak_model!r} are in the same Elo "
                f"tier ({ts}), so every prompt would score 0.5; train with a larger num_tiers "
                f"(now {self.config.num_tiers}) or compare other models"
            )
        return ts, tw

    def _require_fitted(self) -> None:
        if not hasattr(self, "_embeddings"):
            raise ConfigError("this sw_ranking router is not trained: call fit() or load a checkpoint")

    # -- state -------------------------------------------------------------------------------
    def _set_state(
        self,
        *,
        embeddings: np.ndarray,
        scales: np.ndarray | None = None,
        ratings: np.ndarray,
        tiers: np.ndarray,
        entry_prompt: np.ndarray,
        entry_cell: np.ndarray,
        entry_amount: np.ndarray,
    ) -> None:
        # Indices of another type were cast (booleans to 0 and 1): other battles, silently.
        if (
            embeddings.ndim != 2
            or tiers.ndim != 1
            or any(x.dtype.kind not in "iu" for x in (tiers, entry_prompt, entry_cell))
            or not (embeddings.dtype.kind == "f" or embeddings.dtype == np.int8)
        ):
            raise CheckpointError("the sw_ranking arrays are inconsistent with each other")
        num_prompts = embeddings.shape[0]
        num_tiers = int(tiers.max()) + 1 if tiers.size else 0
        width = num_tiers + 1
        # Non-finite or negative numbers load, then fail every score (in a server, every request);
        # so does a gap in the tiers' numbers (a tier of 10**6 asked terabytes at the first score).
        if (
            ratings.shape != tiers.shape
            or not np.array_equal(np.unique(tiers), np.arange(num_tiers))
            or (embeddings.dtype == np.int8) != (scales is not None)
            or (scales is not None and (scales.shape != (num_prompts,) or not np.isfinite(scales).all()))
            or not np.isfinite(embeddings).all()
            or np.any(tiers < 0)
            or not entry_prompt.shape == entry_cell.shape == entry_amount.shape
            or not (np.isfinite(entry_amount).all() and np.all(entry_amount >= 0))
            or np.any((entry_prompt < 0) | (entry_prompt >= num_prompts))
            or np.any((entry_cell < 0) | (entry_cell >= width * width))
        ):
            raise CheckpointError("the sw_ranking arrays are inconsistent with each other")
        self._stored = {"prompt_embeddings": embeddings}
        # a copy: float32 embeddings were normalised in place through _stored, so each save held
        # them normalised once more and scores moved by ~1e-8 in a round trip
        self._embeddings = np.array(embeddings, dtype=np.float32)
        if scales is not None:
            self._stored["prompt_scales"] = scales
            self._embeddings *= scales.astype(np.float32)[:, None]
        norms = np.linalg.norm(self._embeddings, axis=1, keepdims=True)
        self._embeddings /= np.maximum(norms, 1e-12)
        self._ratings = ratings.astype(np.float64)
        self._tiers = tiers.astype(np.int64)
        self._num_tiers = num_tiers
        order = np.argsort(entry_cell, kind="stable")
        cells = entry_cell[order].astype(np.int64)
        self._entry_prompt = entry_prompt[order].astype(np.int64)
        self._entry_amount = entry_amount[order].astype(np.float64)
        starts = np.flatnonzero(np.diff(cells, prepend=-1))
        self._cells = cells[starts]
        self._cell_starts = starts

    def _arrays(self) -> dict[str, np.ndarray]:
        self._require_fitted()
        cells = np.repeat(self._cells, np.diff(np.append(self._cell_starts, self._entry_prompt.size)))
        return {
            **self._stored,
            "model_ratings": self._ratings,
            "model_tiers": self._tiers.astype(np.int32),
            "entry_prompt": self._entry_prompt.astype(np.int32),
            "entry_cell": cells.astype(np.int32),
            "entry_amount": self._entry_amount.astype(np.float32),
            **({"length_stats": self._length_stats} if self._length_stats.size else {}),
        }

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        expected = {
            "prompt_embeddings",
            "model_ratings",
            "model_tiers",
            "entry_prompt",
            "entry_cell",
            "entry_amount",
        } | ({"prompt_scales"} if "prompt_scales" in arrays else set())
        if self.config.length_weight > 0:
            expected.add("length_stats")
        if set(arrays) != expected:
            raise CheckpointError(f"sw_ranking weights need {sorted(expected)}, found {sorted(arrays)}")
        self._load_length_stats(arrays)
        self._set_state(
            embeddings=arrays["prompt_embeddings"],
            scales=arrays.get("prompt_scales"),
            ratings=arrays["model_ratings"],
            tiers=arrays["model_tiers"],
            entry_prompt=arrays["entry_prompt"],
            entry_cell=arrays["entry_cell"],
            entry_amount=arrays["entry_amount"],
        )
        self._load_vocabulary(len(self._tiers))


def _stored_embeddings(embeddings: np.ndarray, dtype: str) -> dict[str, np.ndarray]:
    """Embeddings as stored: cast, or for int8 rounded to 127 steps of each row's largest value.
    Cast rows are scaled to unit length first, as scoring uses them: the length column of a large
    ``length_weight`` (1e4 times a standardised log length) overflowed float16 to inf, and training
    ended in a CheckpointError that called the arrays inconsistent. int8 rows keep their scale (a
    float32 per row cannot overflow), so a retrained shipped router's arrays equal the shipped ones."""
    if dtype != "int8":
        return {"embeddings": normalize(embeddings).astype(dtype)}
    scales = np.maximum(np.abs(embeddings).max(axis=1), 1e-12) / 127.0
    quantized = np.rint(embeddings / scales[:, None]).astype(np.int8)
    return {"embeddings": quantized, "scales": scales.astype(np.float32)}


def _prompt_tier_counts(
    prompt: np.ndarray,
    tier_a: np.ndarray,
    tier_b: np.ndarray,
    outcome: np.ndarray,
    weight: np.ndarray,
    *,
    num_prompts: int,
    num_tiers: int,
    same_tier: bt.SamePlayer,
) -> dict[str, np.ndarray]:
    """Win counts per (prompt, tier cell): all that the weighted fit needs from the battles."""
    rows, cells, amounts = bt.battle_cells(tier_a, tier_b, outcome, num_tiers, same_player=same_tier)
    amounts = amounts * weight[rows]
    key = cells * num_prompts + prompt[rows]
    unique, inverse = np.unique(key, return_inverse=True)
    return {
        "entry_prompt": unique % num_prompts,
        "entry_cell": unique // num_prompts,
        "entry_amount": np.bincount(inverse, weights=amounts, minlength=unique.size),
    }


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))
