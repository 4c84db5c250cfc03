# Run from the repository root: PYTHONPATH=src LMROUTE_DATA_DIR=../shared/data python docs/results/long-prompts/measure.py 300
"""Shipped mf (weights unchanged) under each long-prompt policy on sources it never saw, with and
without a shared few-shot prefix: APGR and distinct scores."""
import json, sys, numpy as np
from lmroute.registry import load_router
from lmroute.workflows.experiment_config import HeldOutSource
from lmroute.workflows.transfer import load_held_out
from lmroute.evaluation.evaluator import evaluate_scores
from lmroute.workflows.results import bootstrap_apgr_ci
import os
D = os.environ.get("LMROUTE_DATA_DIR", "../shared/data")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 400
src = [
    dict(name="llmrouter-5shot", benchmark="llmrouter/outcomes.jsonl", strong_model="llama-3.1-nemotron-51b-instruct", weak_model="mistral-7b-instruct-v0.3", shots=5),
    dict(name="mmlu-pro-5shot", benchmark="mmlu-pro/outcomes.jsonl", strong_model="gemini-1.5-pro-002", weak_model="Mixtral-8x7B-Instruct-v0.1", shots=5),
]
base = load_router("mf")
out = {}
for s in src:
    b = load_held_out(HeldOutSource(**s), data_dir=D)
    keep = np.random.default_rng(0).choice(len(b), size=min(N, len(b)), replace=False)
    b = b.subset(np.sort(keep))
    out[s["name"]] = {}
    for pol in ["head", "tail", "head_tail"]:
        r = base.with_long_prompts(pol)
        sc = r.score(list(b.prompts))
        res = evaluate_scores(pol, [sc], b)
        ci = bootstrap_apgr_ci(sc, b, protocol="paper", samples=500, seed=0)
        out[s["name"]][pol] = {"apgr": res.apgr, "ci": ci, "distinct": int(len(np.unique(sc))), "items": len(b)}
        print(s["name"], pol, out[s["name"]][pol], flush=True)
json.dump(out, open(__file__.replace("measure.py", "results.json"), "w"), indent=1)
