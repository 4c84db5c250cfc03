"""The shipped embedding routers (mf, sw_ranking) score out of the box, from the CLI too, and read
long prompts by their measured policy: questions behind one long shared prefix (few-shot examples,
a system prompt) keep distinct scores."""

import json
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

import lmroute
from lmroute.embeddings import get_embedder
from lmroute.exceptions import ConfigError
from lmroute.routers._embedding_pair import LONG_PROMPTS_DEFAULT
from lmroute.routers.mf import MFRouter

#: About 600 word pieces, the same for every prompt: far more than MiniLM's 254.
PREFIX = " ".join(
    f"Example {i}: a train leaves the station at {i} o'clock and travels {10 * i} miles; how far has it gone "
    f"after {i % 5 + 1} hours? Answer: {10 * i * (i % 5 + 1)} miles."
    for i in range(24)
)
QUESTIONS = [
    "Now the real question: prove that there are infinitely many prime numbers.",
    "Now the real question: say hi back to me.",
    "Now the real question: write a Python function that merges two sorted lists in linear time.",
    "Now the real question: what is the capital of France?",
    "Now the real question: derive the closed form of the sum of the first n squares.",
]


@pytest.mark.parametrize("name", ["mf", "sw_ranking"])
def test_a_shared_prefix_no_longer_collapses_distinct_questions(name, cache_dir):
    router = lmroute.load_router(name)
    assert router.config.long_prompts == LONG_PROMPTS_DEFAULT != "head"
    prompts = [f"{PREFIX}\n\n{q}" for q in QUESTIONS]
    scores = router.score(prompts)
    assert len(np.unique(np.round(scores, 6))) == len(QUESTIONS)
    # the head of the prompt alone: the same text for all five, told apart only by their lengths
    head = router.with_long_prompts("head").score(prompts)
    assert np.ptp(scores) > 10 * np.ptp(head)
    assert router.prompt_embedder.truncated == len(QUESTIONS)  # long prompts are counted


@pytest.mark.parametrize("name", ["mf", "sw_ranking"])
def test_served_as_the_server_loads_them_they_read_long_prompts_the_same_way(name, cache_dir):
    # the server puts an in-memory cache and a drift tap in front of the embedder: both must let
    # the long-prompt policy see how the embedder reads a text, or it embeds heads only
    from lmroute.control.taps import EmbeddingSummaries
    from lmroute.serving.loading import load_routers

    summaries = EmbeddingSummaries()
    served = load_routers([name], summaries=summaries)[name]
    prompts = [f"{PREFIX}\n\n{q}" for q in QUESTIONS]
    np.testing.assert_allclose(served.score(prompts), lmroute.load_router(name).score(prompts), atol=1e-6)
    # drift detection gets the summary of the vector the router scored, long prompts included
    assert all(summaries.take(served.embedder_name, p) is not None for p in prompts)


@pytest.mark.parametrize("name", ["mf", "sw_ranking"])
def test_lmroute_score_works_out_of_the_box(name, cache_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hi\nProve that there are infinitely many primes.\n")
    out = tmp_path / "scores.jsonl"
    command = [sys.executable, "-m", "lmroute.cli", "score", "--router", name, "--input", str(prompts)]
    subprocess.run([*command, "--output", str(out), "--quiet"], check=True, capture_output=True, text=True)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in records] == ["hi", "Prove that there are infinitely many primes."]
    assert all(0 <= r["score"] <= 1 for r in records)


def test_the_shipped_sw_ranking_is_a_few_mb_of_int8_embeddings():
    folder = resources.files("lmroute") / "checkpoints" / "sw_ranking"
    config = json.loads((folder / "config.json").read_text())
    assert config["config"]["embedding_dtype"] == "int8"
    assert sum(f.stat().st_size for f in folder.iterdir()) < 12_000_000
    assert not any(s.startswith("alpaca-eval") for s in config["metadata"]["training"]["sources"])


def test_the_shipped_mf_scores_with_int8_vectors_and_switches_back_to_fp32(cache_dir):
    shipped = lmroute.load_router("mf")
    assert shipped.config.embedder == shipped.embedder.name == "minilm-int8"
    fp32 = shipped.with_embedder("minilm")
    assert fp32.embedder.name == "minilm" and shipped.embedder.name == "minilm-int8"
    assert fp32.config.model_copy(update={"embedder": "minilm-int8"}) == shipped.config
    prompts = ["hi", "Prove that there are infinitely many primes.", "Write a haiku about routers."]
    expected = MFRouter.pretrained(embedder=get_embedder("minilm")).score(prompts)
    np.testing.assert_array_equal(fp32.score(prompts), expected)
    assert not np.array_equal(shipped.score(prompts), expected)
    np.testing.assert_allclose(shipped.score(prompts), expected, atol=0.05)
    with pytest.raises(ConfigError, match="would give other vectors"):
        shipped.with_embedder("openai:text-embedding-3-small")
    with pytest.raises(ConfigError, match="would give other vectors"):
        shipped.with_embedder("no-such-embedder")
