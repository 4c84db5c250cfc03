"""Matrix factorisation: a bilinear Bradley–Terry model of (model, prompt embedding) pairs.

The paper's ``mf`` router, its best overall. Each training model has a learned vector ``P[m]``,
prompts are embedded and projected, ``q -> W q``, and a model's strength on a prompt is
``logit(m, q) = c · (P̂[m] ⊙ W q)`` (``P̂``: unit-length ``P``). The score is, as in the reference,
``sigmoid(logit(strong, q) - logit(weak, q))``. Because ``c`` and ``W`` are linear this equals
``sigmoid(q · u)`` with ``u = Wᵀ (c ⊙ (P̂[strong] - P̂[weak]))``, so scoring a batch is the
embedding plus one matrix-vector product, in numpy: torch is needed only to train
(:mod:`lmroute.training.mf`). With ``hidden`` > 0 the prompt embedding first goes through a ReLU
layer, ``q -> relu(H q + b)``, and ``u`` applies to that instead. With ``members`` > 1 the router
is an ensemble of that many fits from consecutive seeds whose logits are averaged; every array
has a leading member axis (of length 1 for a single fit).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from lmroute.data.battles import Battle, sample_prompts
from lmroute.exceptions import CheckpointError, ConfigError, DataError
from lmroute.routers._embedding_pair import EmbeddingPairConfig, EmbeddingPairRouter, unchanged_on_failure
from lmroute.training.battle_index import checked_battles, index_battles
from lmroute.training.bradley_terry import A_WINS, TIE

if TYPE_CHECKING:
    from lmroute.training.mf import MFParams, MFWeights


class MFConfig(EmbeddingPairConfig):
    """Hyper-parameters; the defaults are the reference's (``train_matrix_factorization.py``)."""

    #: Size of the model vectors and of the projected prompt embedding.
    dim: int = Field(default=128, ge=1, le=4096)
    epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=3e-4, gt=0)
    #: Adam's L2 weight decay.
    weight_decay: float = Field(default=1e-5, ge=0)
    #: Standard deviation of the Gaussian noise added to each prompt-embedding coordinate in training.
    noise: float = Field(default=0.1, ge=0)
    #: Share of distinct prompts whose battles are held out to report a held-out loss (not trained on).
    held_out_fraction: float = Field(default=0.05, ge=0, lt=1)
    #: Seeds the initial weights and the held-out draw (numpy's generators take no negative seed).
    seed: int = Field(default=42, ge=0)
    #: ``drop`` ties as the reference does, or learn them as half a win each way (``half``): the
    #: score then ranks prompts by the strong model's expected gain, which is what APGR rewards.
    ties: Literal["drop", "half"] = "drop"
    #: Append the prompt's standardised log length in characters to its embedding: length is a
    #: strong signal that sentence embeddings, being normalised, largely lose.
    length_feature: bool = False
    #: Width of a ReLU layer between the prompt embedding and ``W`` (0: linear, as in the paper).
    #: Lets one router learn a different direction per domain, where a linear router averages them.
    hidden: int = Field(default=0, ge=0, le=4096)
    #: Fits from seeds ``seed``, ``seed + 1``, … whose logits are averaged: it removes much of one
    #: fit's run-to-run noise, and for a linear mf the average is one vector ``u``, so scoring costs
    #: what one model does (with ``hidden`` each member keeps its own hidden layer).
    members: int = Field(default=1, ge=1, le=64)


class MFRouter(EmbeddingPairRouter[MFConfig]):
    """Matrix-factorisation router (RouteLLM's ``mf``): trained with torch, scored with numpy."""

    name = "mf"
    config_class = MFConfig
    #: Every model's direction (:meth:`_model_directions`) and the state it was computed from.
    _directions_cache: tuple[tuple[int, tuple[int, ...]], np.ndarray] | None = None

    @unchanged_on_failure
    def fit(self, battles: Sequence[Battle], *, progress: bool = False) -> MFRouter:
        """Embed the prompts and train on the battles (ties dropped or as half wins, see ``ties``)."""
        from lmroute.training.mf import train_mf

        battles = sample_prompts(
            checked_battles(battles), self.config.max_train_prompts, seed=self.config.seed
        )
        data = index_battles(battles)
        self.models = data.models
        self._check_pair(self.models)
        decisive = data.outcome != TIE
        used = decisive if self.config.ties == "drop" else np.ones_like(decisive)
        a_won = data.outcome[used] == A_WINS
        a, b = data.a[used], data.b[used]
        target = np.where(decisive[used], 1.0, 0.5)
        used_prompts, prompt = np.unique(data.prompt[used], return_inverse=True)
        texts = [data.prompts[i] for i in used_prompts]
        self._fit_length(texts, enabled=self.config.length_feature)
        embeddings = self._features(texts, progress=progress)
        started = time.perf_counter()
        winner, loser = np.where(a_won, a, b), np.where(a_won, b, a)
        fits = [
            train_mf(
                embeddings,
                prompt,
                winner,
                loser,
                target=target,
                weight=data.weight[used],
                num_models=len(self.models),
                params=self._params(seed),
                progress=progress,
            )
            for seed in range(self.config.seed, self.config.seed + self.config.members)
        ]
        self._set_weights(*(_stack(fits, name) for name in ("model_embeddings", "text_proj", "classifier")))
        if self.config.hidden:
            self._set_hidden(_stack(fits, "hidden_weight"), _stack(fits, "hidden_bias"))
        else:
            self._set_hidden(None, None)
        self._save_vocabulary()
        finals = [f.history[-1] for f in fits]
        last = {k: round(float(np.mean([f[k] for f in finals])), 5) for k in finals[0]}  # members' mean
        self.metadata["battles"] = {
            "used": int(used.sum()),
            "ties_dropped": int((~used).sum()),
            "self_battles_dropped": data.self_battles,
            "prompts": int(used_prompts.size),
        }
        self.metadata["final_epoch"] = {**last, "epoch": finals[0]["epoch"]}
        self.metadata["train_seconds"] = round(time.perf_counter() - started, 1)
        return self

    def _params(self, seed: int) -> MFParams:
        """The solver's parameters for the ensemble member of seed ``seed``."""
        from lmroute.training.mf import MFParams

        c = self.config
        return MFParams(
            dim=c.dim,
            hidden=c.hidden,
            epochs=c.epochs,
            batch_size=c.batch_size,
            lr=c.lr,
            weight_decay=c.weight_decay,
            noise=c.noise,
            held_out_fraction=c.held_out_fraction,
            seed=seed,
        )

    def onboard(self, model: str, battles: Sequence[Battle], *, prior: float = 5.0) -> MFRouter:
        """A copy that also knows ``model``: its vector fitted on ``battles`` against models this
        router knows, every other weight frozen (:mod:`lmroute.training.onboard`); ``prior``: how
        many pseudo-battles pull the vector toward the known models' average."""
        from lmroute.training.onboard import OnboardParams, fit_model_vector

        if model in self.models:
            raise ConfigError(f"{model!r} is already in this mf router's vocabulary: nothing to onboard")
        params = OnboardParams(prior=prior)  # checked before the probe prompts are embedded
        # as fit checks them: a NaN, zero or infinite weight fitted a vector predicting 0.5 everywhere
        battles = checked_battles(battles)
        prompts, other, target, weight = _probe_arrays(model, battles, self.models, ties=self.config.ties)
        unit = self._model_embeddings.astype(np.float64)
        unit /= np.maximum(np.linalg.norm(unit, axis=2, keepdims=True), 1e-12)
        features = self._member_features(prompts, self._text_proj.shape[2])
        # z[m, i] = c_m ⊙ W_m f(q_i): what a model's unit vector is dotted with, per member
        z = (
            np.matmul(features, np.swapaxes(self._text_proj.astype(np.float64), 1, 2))
            * self._classifier[:, None]
        )
        trained = self._reference_models()
        vectors = [
            fit_model_vector(
                z[m],
                np.einsum("nd,nd->n", z[m], unit[m, other]),
                target,
                weight,
                unit[m, trained].mean(axis=0),
                params=params,
            )
            for m in range(self.config.members)
        ]
        router = copy.copy(self)
        router.metadata = copy.deepcopy(self.metadata)
        router.models = [*self.models, model]
        added = np.stack(vectors)[:, None, :].astype(np.float32)
        router._model_embeddings = np.concatenate([self._model_embeddings, added], axis=1)
        router._directions_cache = None
        router.metadata["models"] = list(router.models)
        opponents = sorted({self.models[i] for i in other.tolist()})
        router.metadata.setdefault("onboarded", {})[model] = {
            "battles": int(target.size),
            "prompts": len(set(prompts)),
            "opponents": opponents,
            "prior": prior,
        }
        return router

    # -- scoring -----------------------------------------------------------------------------
    def _directions(self) -> np.ndarray:
        """Per member, the vector ``u`` with logit ``q · u`` for prompt features ``q`` (the hidden
        layer's output when ``hidden`` > 0): ``(members, features)``."""
        if not hasattr(self, "_text_proj"):
            raise ConfigError("this mf router is not trained: call fit() or load a checkpoint")
        strong, weak = self._check_pair(self.models)
        p = self._model_embeddings.astype(np.float64)
        unit = p / np.maximum(np.linalg.norm(p, axis=2, keepdims=True), 1e-12)
        gap = self._classifier * (unit[:, strong] - unit[:, weak])
        return np.einsum("mdk,md->mk", self._text_proj.astype(np.float64), gap)

    def _score(self, prompts: list[str]) -> np.ndarray:
        u = self._directions()
        text_dim = self._hidden_weight.shape[2] if self._hidden_weight is not None else u.shape[1]
        features = self._features(prompts, width=text_dim).astype(np.float64)
        if self._hidden_weight is None:
            return _sigmoid(features @ u.mean(axis=0))
        hidden = np.einsum("nk,mhk->nmh", features, self._hidden_weight) + self._hidden_bias
        return _sigmoid(np.einsum("nmh,mh->n", np.maximum(hidden, 0.0), u) / len(u))

    def _predict_quality(self, prompts: list[str], models: list[str]) -> np.ndarray:
        self._model_directions()  # untrained: says so, where the names' check would list no models
        logits = self.model_logits(prompts, self.model_indices(models), reference=True)
        return _sigmoid(logits[:, :-1] - logits[:, -1:])

    def model_logits(self, prompts: list[str], models: np.ndarray, *, reference: bool = False) -> np.ndarray:
        """Ensemble-mean logits ``(n, len(models))`` of vocabulary models (by index) on the prompts,
        with the reference's (the mean of the jointly trained models) as a last column if asked."""
        directions = self._model_directions()[:, [*models.tolist(), -1] if reference else models]
        return self._member_mean(self._member_features(prompts, directions.shape[2]), directions)

    def _model_directions(self) -> np.ndarray:
        """``u[m, k] = W_mᵀ (c_m ⊙ P̂_m[k])``: each vocabulary model's direction in feature space,
        per member, with the reference's (the trained models' mean) last: ``(members, K + 1, f)``.
        Computed once per set of weights, so a request costs one small product."""
        if not hasattr(self, "_text_proj"):
            raise ConfigError("this mf router is not trained: call fit() or load a checkpoint")
        key = (id(self._model_embeddings), tuple(self._reference_models().tolist()))
        cached = self._directions_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        p = self._model_embeddings.astype(np.float64)
        unit = p / np.maximum(np.linalg.norm(p, axis=2, keepdims=True), 1e-12)
        unit = np.concatenate([unit, unit[:, list(key[1])].mean(axis=1, keepdims=True)], axis=1)
        proj = self._text_proj.astype(np.float64)
        # one 2-d product per member: a batched matmul was 50x slower here (BLAS on a shared machine)
        directions = np.stack([(self._classifier[m] * unit[m]) @ proj[m] for m in range(len(proj))])
        self._directions_cache = (key, directions)
        return directions

    def _member_features(self, prompts: list[str], width: int) -> np.ndarray:
        """Per member, what the directions apply to: ``(members, n, width)`` (the prompt features,
        or a hidden layer's output)."""
        text_dim = self._hidden_weight.shape[2] if self._hidden_weight is not None else width
        features = self._features(prompts, width=text_dim).astype(np.float64)
        if self._hidden_weight is None or self._hidden_bias is None:
            return features[None]
        hidden = np.einsum("nk,mhk->mnh", features, self._hidden_weight) + self._hidden_bias[:, None, :]
        return np.maximum(hidden, 0.0)

    @staticmethod
    def _member_mean(features: np.ndarray, directions: np.ndarray) -> np.ndarray:
        if features.shape[0] == 1:  # a linear router: the members' mean direction, one product
            return features[0] @ directions.mean(axis=0).T
        return np.mean([f @ d.T for f, d in zip(features, directions, strict=True)], axis=0)

    # -- state -------------------------------------------------------------------------------
    def _set_weights(
        self, model_embeddings: np.ndarray, text_proj: np.ndarray, classifier: np.ndarray
    ) -> None:
        members, dim = self.config.members, self.config.dim
        _check_shapes(
            f"mf weights (members={members}, dim={dim})",
            model_embeddings=(model_embeddings, (members, None, dim)),
            text_proj=(text_proj, (members, dim, None)),
            classifier=(classifier, (members, dim)),
        )
        self._model_embeddings = np.asarray(model_embeddings, dtype=np.float32)
        self._directions_cache = None
        self._text_proj = np.asarray(text_proj, dtype=np.float32)
        self._classifier = np.asarray(classifier, dtype=np.float64)

    def _set_hidden(self, weight: np.ndarray | None, bias: np.ndarray | None) -> None:
        members, hidden = self.config.members, self.config.hidden
        self._hidden_weight = self._hidden_bias = None
        if not hidden:
            return
        _check_shapes(
            f"mf hidden layer (members={members}, hidden={hidden})",
            hidden_weight=(weight, (members, hidden, None)),
            hidden_bias=(bias, (members, hidden)),
            text_proj=(self._text_proj, (members, None, hidden)),
        )
        self._hidden_weight = np.asarray(weight, dtype=np.float64)
        self._hidden_bias = np.asarray(bias, dtype=np.float64)

    def _arrays(self) -> dict[str, np.ndarray]:
        if not hasattr(self, "_text_proj"):
            raise ConfigError("this mf router is not trained: nothing to save")
        arrays = {
            "model_embeddings": self._model_embeddings,
            "text_proj": self._text_proj,
            "classifier": self._classifier.astype(np.float32),
        }
        if self._length_stats.size:
            arrays["length_stats"] = self._length_stats.astype(np.float64)
        if self._hidden_weight is not None and self._hidden_bias is not None:
            arrays["hidden_weight"] = self._hidden_weight.astype(np.float32)
            arrays["hidden_bias"] = self._hidden_bias.astype(np.float32)
        return arrays

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        expected = {"model_embeddings", "text_proj", "classifier"}
        if self.config.length_feature:
            expected.add("length_stats")
        if self.config.hidden:
            expected |= {"hidden_weight", "hidden_bias"}
        if set(arrays) != expected:
            raise CheckpointError(f"mf weights need {sorted(expected)}, found {sorted(arrays)}")
        self._load_length_stats(arrays)
        # NaN or inf weights (or integers, which truncate them) loaded and scored 0.5 on every prompt
        bad = sorted(k for k, a in arrays.items() if a.dtype.kind != "f" or not np.isfinite(a).all())
        if bad:
            raise CheckpointError(f"mf weights {', '.join(bad)} must be finite floating-point numbers")
        self._set_weights(arrays["model_embeddings"], arrays["text_proj"], arrays["classifier"])
        self._set_hidden(arrays.get("hidden_weight"), arrays.get("hidden_bias"))
        self._load_vocabulary(self._model_embeddings.shape[1])


def _probe_arrays(
    model: str, battles: Sequence[Battle], known: Sequence[str], *, ties: str
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """The battles of ``model`` against known models as (prompts, opponent index, target, weight):
    target 1 where ``model`` won, 0 where it lost, 0.5 for a tie (ties dropped with ``ties="drop"``)."""
    index = {m: i for i, m in enumerate(known)}
    prompts: list[str] = []
    other: list[int] = []
    target: list[float] = []
    weight: list[float] = []
    dropped = 0
    for battle in battles:
        if model not in (battle.model_a, battle.model_b) or battle.model_a == battle.model_b:
            continue
        opponent = battle.model_b if battle.model_a == model else battle.model_a
        if opponent not in index:
            continue
        if battle.winner in ("model_a", "model_b"):
            won = (battle.winner == "model_a") == (battle.model_a == model)
            value = 1.0 if won else 0.0
        elif ties == "drop":
            dropped += 1
            continue
        else:
            value = 0.5
        prompts.append(battle.prompt)
        other.append(index[opponent])
        target.append(value)
        weight.append(battle.weight)
    if not prompts and dropped:
        # Else the error below would ask for known models' scores the probe file does have.
        raise DataError(
            f"all {dropped} battles of {model!r} against models this router knows are ties, and this mf "
            "router drops ties (it was trained with ties: drop): the probe needs prompts on which "
            f"{model!r} and a known model score differently"
        )
    if not prompts:
        raise DataError(
            f"no usable battle of {model!r} against a model this router knows ({len(known)} models: "
            f"{', '.join(known)}): a probe file needs {model!r}'s scores beside at least one known model's"
        )
    return prompts, np.asarray(other), np.asarray(target), np.asarray(weight, dtype=np.float64)


def _check_shapes(what: str, **arrays: tuple[np.ndarray | None, tuple[int | None, ...]]) -> None:
    """CheckpointError naming every array whose shape is not the expected one (None: any size)."""
    wrong = {
        name: None if array is None else array.shape
        for name, (array, shape) in arrays.items()
        if array is None
        or array.ndim != len(shape)
        or any(want is not None and got != want for got, want in zip(array.shape, shape, strict=True))
    }
    if wrong:
        found = ", ".join(f"{name} {shape}" for name, shape in wrong.items())
        raise CheckpointError(f"{what} do not fit: {found}")


def _stack(fits: list[MFWeights], name: str) -> np.ndarray:
    """One array of the ensemble, with a leading member axis."""
    return np.stack([getattr(f, name) for f in fits])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))
