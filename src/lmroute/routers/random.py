"""The random baseline: a seeded, reproducible uniform score per prompt."""

from __future__ import annotations

import hashlib

import numpy as np
from pydantic import Field

from lmroute.routers.base import Router, RouterConfig


class RandomConfig(RouterConfig):
    #: Salts the hash as 8 bytes, so it is a signed 64-bit integer.
    seed: int = Field(default=0, ge=-(2**63), le=2**63 - 1)


class RandomRouter(Router[RandomConfig]):
    """Scores are uniform in [0, 1), derived from a hash of (seed, prompt).

    Hashing rather than drawing from a stream makes the score of a prompt independent of the
    batch it arrives in, so evaluation, calibration and serving agree exactly.
    """

    name = "random"
    config_class = RandomConfig
    stochastic = True
    fast_scoring = True

    def with_seed(self, seed: int) -> RandomRouter:
        return RandomRouter(seed=seed)

    def _score(self, prompts: list[str]) -> np.ndarray:
        salt = self.config.seed.to_bytes(8, "little", signed=True)
        # surrogatepass: a prompt holding half an emoji (JSON's "\ud83d") hashes too; other
        # prompts' bytes, and so their scores, are the same as with plain UTF-8
        words = [
            int.from_bytes(
                hashlib.blake2b(p.encode("utf-8", "surrogatepass"), digest_size=8, salt=salt[:8]).digest(),
                "big",
            )
            for p in prompts
        ]
        # The top 53 bits of a 64-bit hash give a uniform double in [0, 1).
        return (np.array(words, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) / 2.0**53
