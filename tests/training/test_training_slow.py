"""Long runs on all the shared data, out of the default run (``bash scripts/test.sh -m slow``): the
shipped mf is what its documented command trains, and the results table's GSM8K rows hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmroute.routers.mf import MFRouter
from lmroute.workflows.experiment import load_experiment_config, run_experiment
from lmroute.workflows.train import train_router

pytestmark = pytest.mark.slow

# Not imported from conftest: with conftest.py files in several folders, "conftest" is whichever came last.
REPO = Path(__file__).resolve().parents[2]

# The command in the README's "The shipped mf".
SHIPPED_SOURCES = [
    "battles:arena-hard/battles.jsonl",
    "gold:mmlu",
    "gold:gsm8k",
    "gold:mt-bench",
    "gold:zeroeval/crux.jsonl",
    "gold:zeroeval/math-l5.jsonl",
]
SHIPPED_OPTIONS = {
    "epochs": 10,
    "lr": 0.003,
    "batch_size": 256,
    "ties": "half",
    "length_feature": True,
    "members": 5,
}


def test_the_shipped_mf_is_what_its_documented_command_trains(data_dir):
    router = train_router("mf", SHIPPED_SOURCES, data_dir=data_dir, options=SHIPPED_OPTIONS, progress=False)
    shipped = MFRouter.pretrained()
    assert router.models == shipped.models
    trained = router._arrays()
    for name, array in shipped._arrays().items():
        np.testing.assert_allclose(trained[name], array, atol=1e-5, err_msg=name)


def test_the_gsm8k_rows_of_the_results_table_hold(data_dir):
    config = load_experiment_config(REPO / "experiments" / "paper-protocols.yaml")
    config = config.model_copy(update={"benchmarks": ["gsm8k"], "bootstrap": 0})
    result = run_experiment(config, data_dir=data_dir, progress=False, log=lambda message: None)
    apgr = {(c.protocol, c.result.router): c.result.apgr for c in result.cells}
    for router in ("mf", "sw_ranking"):
        assert apgr["gold-1500", router] >= 0.63
        assert apgr["gold-1500", router] > apgr["gold-1500", "length"]
        assert apgr["zero-shot", router] > apgr["zero-shot", "random"]
