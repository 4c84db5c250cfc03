"""Long runs on all the shared data, out of the default run (``bash scripts/test.sh -m slow``): the
shipped mf and sw_ranking are what their documented commands train, and the results table's GSM8K
rows hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmroute.registry import get_router_class
from lmroute.workflows.experiment import load_experiment_config, run_experiment
from lmroute.workflows.train import train_router

pytestmark = pytest.mark.slow

# Not imported from conftest: with conftest.py files in several folders, "conftest" is whichever came last.
REPO = Path(__file__).resolve().parents[2]

# The commands in the README's "The shipped routers": trained reading the head of long prompts,
# shipped scoring with head_tail (weights unchanged).
SHIPPED_SOURCES = [
    "battles:arena-hard/battles.jsonl",
    "gold:mmlu",
    "gold:gsm8k",
    "gold:mt-bench",
    "gold:zeroeval/crux.jsonl",
    "gold:zeroeval/math-l5.jsonl",
]
SHIPPED_OPTIONS = {
    "mf": {
        "epochs": 10,
        "lr": 0.003,
        "batch_size": 256,
        "ties": "half",
        "length_feature": True,
        "members": 5,
    },
    "sw_ranking": {"num_tiers": 20, "similarity_base": 100, "length_weight": 0.5, "embedding_dtype": "int8"},
}

#: Trained on fp32 MiniLM vectors; mf is shipped scoring with their int8 copy.
SHIPPED_EMBEDDER = {"mf": "minilm-int8", "sw_ranking": "minilm"}


@pytest.mark.parametrize("name", ["mf", "sw_ranking"])
def test_the_shipped_routers_are_what_their_documented_commands_train(name, data_dir):
    options = {**SHIPPED_OPTIONS[name], "long_prompts": "head"}
    router = train_router(name, SHIPPED_SOURCES, data_dir=data_dir, options=options, progress=False)
    shipped = get_router_class(name).pretrained()
    assert shipped.config.long_prompts == "head_tail"
    as_shipped = router.with_long_prompts("head_tail").with_embedder(SHIPPED_EMBEDDER[name])
    assert as_shipped.config == shipped.config
    assert router.models == shipped.models
    trained = router._arrays()
    for key, array in shipped._arrays().items():
        # sw_ranking's int8 prompt embeddings may differ by one step: fp32 MiniLM differs by CPU in
        # the last bits, which moves a value lying on a rounding boundary (54 of 6.7 M on an AVX2 EPYC).
        atol = 1 if array.dtype == np.int8 else 1e-5
        np.testing.assert_allclose(
            trained[key].astype(np.float64), array.astype(np.float64), atol=atol, err_msg=key
        )


def test_the_gsm8k_rows_of_the_results_table_hold(data_dir):
    config = load_experiment_config(REPO / "experiments" / "paper-protocols.yaml")
    config = config.model_copy(update={"benchmarks": ["gsm8k"], "bootstrap": 0})
    result = run_experiment(config, data_dir=data_dir, progress=False, log=lambda message: None)
    apgr = {(c.protocol, c.result.router): c.result.apgr for c in result.cells}
    for router in ("mf", "sw_ranking"):
        assert apgr["gold-1500", router] >= 0.63
        assert apgr["gold-1500", router] > apgr["gold-1500", "length"]
        assert apgr["zero-shot", router] > apgr["zero-shot", "random"]
