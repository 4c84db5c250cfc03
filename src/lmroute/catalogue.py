"""The deployed models: each one's serving name, the router vocabulary model it is, and its price.

A router predicts the quality of the models it learned (its vocabulary); a deployment calls
models by its own names and pays their list prices. A :class:`Catalogue` joins the two: it maps
serving names onto vocabulary names (``served=vocabulary``) and estimates what each model would
cost on each prompt, in dollars per 1,000 requests (:mod:`lmroute.pricing`: the prompt's
estimated tokens at the input price, the model's expected answer tokens at the output price).

A *price file* is YAML, one entry per model name::

    gpt-4o-2024-08-06:
      input_per_1m: 2.5        # USD per million prompt tokens (required, >= 0)
      output_per_1m: 10.0      # USD per million answer tokens (required, >= 0)
      output_tokens: 300       # expected answer tokens (optional; default 300)
      source: https://...      # where the price was read, when, whether it is an estimate
      as_of: "2024-11"
      estimated: false

Keys other than the three price fields are kept as facts about the price (:attr:`Listing.facts`);
one that reads as a misspelt price field (``output_token``) is an error, one that holds a price
field with words around it (``batch_input_per_1m``) another price, kept.
``examples/prices.yaml`` lists the models of lmroute's shared data.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError

from lmroute.exceptions import ConfigError, UnknownModelError
from lmroute.pricing import CHARS_PER_TOKEN, Price

_PRICE_FIELDS = ("input_per_1m", "output_per_1m", "output_tokens")


@dataclass(frozen=True)
class Listing:
    """One model's price as a price file gives it, with the facts about it (source, date...)."""

    price: Price
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CatalogueModel:
    """A deployed model: ``name`` as served, ``vocabulary`` the router's model it is, its price."""

    name: str
    vocabulary: str
    price: Price


class QualityPredictor(Protocol):
    """What predicts each model's quality: a router (:meth:`lmroute.Router.predict_quality`)."""

    def predict_quality(self, prompts: Sequence[str], models: Sequence[str]) -> np.ndarray: ...


def predict_quality(
    router: QualityPredictor, prompts: Sequence[str], vocabulary: Sequence[str]
) -> np.ndarray:
    """``router``'s predicted quality of each of ``vocabulary`` (the vocabulary names of the deployed
    models, in order) on each prompt, ``(n, k)``. Two deployed models may be one vocabulary model
    (the same model from two providers, at two prices): the router, which takes each name once, is
    asked once for it, and both get its column."""
    distinct = list(dict.fromkeys(vocabulary))
    quality = router.predict_quality(prompts, distinct)
    if len(distinct) == len(vocabulary):
        return quality
    column = {m: i for i, m in enumerate(distinct)}
    return quality[:, [column[m] for m in vocabulary]]


class Catalogue:
    """The models a deployment routes among, in order; at least one, names unique."""

    def __init__(self, models: Sequence[CatalogueModel]):
        self.models = tuple(models)
        if not self.models:
            raise ConfigError("a catalogue needs at least one model")
        names = [m.name for m in self.models]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"model(s) listed twice in the catalogue: {', '.join(repeated)}")

    @property
    def names(self) -> list[str]:
        """Serving names, in catalogue order."""
        return [m.name for m in self.models]

    @property
    def vocabulary(self) -> list[str]:
        """The router vocabulary name of each model, in catalogue order."""
        return [m.vocabulary for m in self.models]

    def __len__(self) -> int:
        return len(self.models)

    def predict_quality(self, router: QualityPredictor, prompts: Sequence[str]) -> np.ndarray:
        """``router``'s predicted quality of each model on each prompt: ``(n, k)``, in catalogue
        order (see :func:`predict_quality`)."""
        return predict_quality(router, prompts, self.vocabulary)

    def costs(self, prompts: Sequence[str]) -> np.ndarray:
        """Estimated dollars per 1,000 requests of each model on each prompt: ``(n, k)``."""
        chars = np.fromiter((len(p) for p in prompts), dtype=np.float64, count=len(prompts))
        return self.costs_of_tokens(np.maximum(1.0, chars / CHARS_PER_TOKEN))

    def costs_of_tokens(self, tokens: Sequence[float] | np.ndarray) -> np.ndarray:
        """Estimated dollars per 1,000 requests of each model on requests of ``tokens`` input
        tokens each: ``(n, k)``."""
        tokens = np.asarray(tokens, dtype=np.float64)
        inputs = np.array([m.price.input_per_1m for m in self.models])
        answers = np.array([m.price.output_tokens * m.price.output_per_1m for m in self.models])
        return (tokens[:, None] * inputs[None, :] + answers[None, :]) / 1e3

    def subset(self, names: Sequence[str]) -> Catalogue:
        """The catalogue of the models named (serving names), in that order."""
        by_name = {m.name: m for m in self.models}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise UnknownModelError(
                f"model(s) {', '.join(unknown)} not in the catalogue ({', '.join(by_name)})"
            )
        return Catalogue([by_name[n] for n in names])

    @classmethod
    def from_prices(
        cls, models: Sequence[str], prices: Mapping[str, Listing | Price], *, where: str = ""
    ) -> Catalogue:
        """A catalogue of ``models`` (``name`` or ``served=vocabulary``), each priced by its
        serving name's entry in ``prices``, else its vocabulary name's."""
        entries = []
        for served, vocabulary in parse_model_specs(models):
            listing = prices.get(served) or prices.get(vocabulary)
            if listing is None:
                source = f" in {where}" if where else ""
                either = f" or {vocabulary!r}" if vocabulary != served else ""
                # the entry the user sees may differ only in case: "add an entry" alone puzzled
                alike = [k for k in prices if _folded(k) in (_folded(served), _folded(vocabulary))]
                spelt = f" (it has {', '.join(map(repr, alike))}: names must match exactly)" if alike else ""
                raise ConfigError(
                    f"model {served!r} has no price{source}{spelt}: add an entry with input_per_1m and "
                    f"output_per_1m (USD per million tokens) for {served!r}{either}"
                )
            price = listing.price if isinstance(listing, Listing) else listing
            entries.append(CatalogueModel(served, vocabulary, price))
        return cls(entries)


def _another_price(folded: str) -> bool:
    """Whether a key (lower case, ``_`` for ``-``) is a price field with words before or after it
    (``batch_input_per_1m``, ``input_per_1m_cached``): another price of the model, kept as a fact,
    not a misspelt field."""
    return any(
        folded != name and re.fullmatch(rf"(?:[a-z0-9]+_)*{name}(?:_[a-z0-9]+)*", folded)
        for name in _PRICE_FIELDS
    )


def _folded(name: str) -> str:
    """A model name without case, surrounding spaces, or the difference between _ and -."""
    return name.strip().casefold().replace("_", "-")


def parse_model_specs(specs: Sequence[str]) -> list[tuple[str, str]]:
    """``["A", "gpt=gpt-4o-2024-08-06"]`` -> ``[("A", "A"), ("gpt", "gpt-4o-2024-08-06")]``:
    (serving name, vocabulary name) pairs, the serving names unique."""
    if isinstance(specs, str):
        raise ConfigError("model names must be a list, not one string")
    pairs = []
    for spec in specs:
        served, sep, vocabulary = str(spec).partition("=")
        served, vocabulary = served.strip(), vocabulary.strip()
        if not served or (sep and not vocabulary):
            raise ConfigError(f"model {spec!r}: write NAME or SERVED=VOCABULARY")
        pairs.append((served, vocabulary or served))
    names = [s for s, _ in pairs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"model(s) named twice: {', '.join(repeated)}")
    if not pairs:
        raise ConfigError("no models given")
    return pairs


def read_prices(path: str | Path) -> dict[str, Listing]:
    """The listings of a price file (see the module notes), checked: a clear ConfigError names the
    file and model of a missing, negative or non-numeric price."""
    from lmroute._yaml import read_yaml

    raw = read_yaml(path, what=f"price file {path}")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"price file {path} must map model names to prices (input_per_1m, output_per_1m)")
    listings = {}
    for model, entry in raw.items():
        listings[str(model)] = listing_from(entry, what=f"{path}: model {model!r}")
    return listings


def listing_from(entry: Any, *, what: str) -> Listing:
    """One price entry (a mapping with input_per_1m, output_per_1m, optional output_tokens, and
    any facts) as a :class:`Listing`."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{what}: expected a mapping with input_per_1m and output_per_1m")
    # Before the missing fields: input_per_1M given for input_per_1m was reported as missing.
    for key in entry:
        # Other keys are kept as facts: a misspelt output_tokens would silently leave the default.
        folded = str(key).lower().replace("-", "_")
        near = difflib.get_close_matches(folded, _PRICE_FIELDS, n=1, cutoff=0.8)
        if near and key not in _PRICE_FIELDS and not _another_price(folded):
            raise ConfigError(
                f"{what}: {key!r} is not a price field; did you mean {near[0]}? (other keys are kept as "
                "facts about the price and change no cost)"
            )
    missing = [k for k in _PRICE_FIELDS[:2] if entry.get(k) is None]
    if missing:
        raise ConfigError(f"{what}: missing {' and '.join(missing)} (USD per million tokens)")
    try:
        price = Price.model_validate({k: entry[k] for k in _PRICE_FIELDS if k in entry})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
        raise ConfigError(f"{what}: {problems}") from None
    return Listing(price, {k: v for k, v in entry.items() if k not in _PRICE_FIELDS})
