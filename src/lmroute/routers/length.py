"""The length baseline: longer prompts go to the strong model first."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from lmroute.routers.base import Router, RouterConfig


class LengthConfig(RouterConfig):
    #: Length in characters that scores 0.5; the ranking (and so every metric) ignores it.
    half_length: float = Field(default=500.0, gt=0, allow_inf_nan=False)


class LengthRouter(Router[LengthConfig]):
    """Score ``n / (n + half_length)`` for a prompt of ``n`` characters: strictly increasing in n."""

    name = "length"
    config_class = LengthConfig
    fast_scoring = True

    def _score(self, prompts: list[str]) -> np.ndarray:
        lengths = np.fromiter((len(p) for p in prompts), dtype=np.float64, count=len(prompts))
        return lengths / (lengths + self.config.half_length)
