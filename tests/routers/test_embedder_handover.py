"""The public way to hand a router its embedder (``embedder_name`` / ``use_embedder``), which the
server uses instead of writing a router's private attributes."""

import pytest
from _fake_embedder import HashEmbedder

from lmroute import ConfigError
from lmroute.embeddings import get_embedder
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


@pytest.mark.parametrize(
    "name", ["minilm-torch", "minilm-onnx", "openai:text-embedding-3-small?base_url=http://127.0.0.1:9/v1"]
)
def test_a_configured_name_takes_the_embedder_made_from_it(name):
    """A backend or an endpoint in the configured name is not in the embedder's own name."""
    router = MFRouter({"embedder": name})
    embedder = get_embedder(name, cache=False)
    router.use_embedder(embedder)
    assert router.embedder is embedder


def test_a_quantised_copy_handed_over_is_named_and_saved_as_what_scores(tmp_path):
    """``MFRouter.pretrained(embedder=get_embedder("minilm"))`` (README) scores with fp32 vectors,
    but kept the name of the shipped int8 embedder: saved, it came back scoring with int8, and a
    server or ensemble handing embedders out by name gave it int8 ones."""
    from lmroute import load_router

    router = MFRouter.pretrained(embedder=get_embedder("minilm", cache=False))
    assert router.embedder_name == "minilm" and router.embedder.name == "minilm"
    assert load_router(router.save(tmp_path / "mf-fp32")).embedder_name == "minilm"
    router.use_embedder(get_embedder("minilm-int8", cache=False))
    assert router.embedder_name == "minilm-int8"
