"""The public way to hand a router its embedder (``embedder_name`` / ``use_embedder``), which the
server uses instead of writing a router's private attributes."""

import pytest
from _fake_embedder import HashEmbedder

from lmroute import ConfigError
from lmroute.routers.length import LengthRouter
from lmroute.routers.mf import MFRouter


def test_a_router_that_embeds_nothing_has_no_embedder_name_and_takes_none():
    router = LengthRouter()
    assert router.embedder_name is None
    with pytest.raises(ConfigError, match="embeds no prompts"):
        router.use_embedder(HashEmbedder(8))


def test_an_embedding_router_takes_only_the_embedder_it_was_made_for():
    embedder = HashEmbedder(8)
    router = MFRouter(embedder=embedder)
    assert router.embedder_name == embedder.name
    other = HashEmbedder(8, name="another-embedder")
    with pytest.raises(ConfigError, match="would give other vectors"):
        router.use_embedder(other)
    same_kind = HashEmbedder(8)
    router.use_embedder(same_kind)
    assert router.embedder is same_kind
