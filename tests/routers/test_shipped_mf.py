"""The default mf router ships inside the package and scores with no training step."""

import json
import subprocess
import sys
from importlib import resources

import numpy as np

import lmroute


def test_shipped_checkpoint_is_small_and_describes_itself():
    folder = resources.files("lmroute") / "checkpoints" / "mf"
    config = json.loads((folder / "config.json").read_text())
    assert (folder / "weights.safetensors").stat().st_size < 2_000_000  # 5 members of 128 x 385
    training = config["metadata"]["training"]
    assert "gold:mmlu" in training["sources"]
    assert not any(s.startswith("alpaca-eval") for s in training["sources"])  # CC BY-NC left out
    assert config["config"]["strong_model"] == "gpt-4-1106-preview"


def test_mf_scores_out_of_the_box_without_torch(cache_dir):
    code = (
        "import sys, json, lmroute; r = lmroute.load_router('mf'); "
        "print(json.dumps([list(r.score(['hi', 'Prove Fermat\\'s little theorem.'])), "
        "'torch' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    scores, torch_loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(scores) == 2 and all(0 <= s <= 1 for s in scores)
    assert not torch_loaded
    router = lmroute.load_router("mf")
    assert np.allclose(router.score(["hi"]), scores[:1])
