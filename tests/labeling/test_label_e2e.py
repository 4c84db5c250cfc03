"""``lmroute label`` end to end against two real llama.cpp servers (SmolLM2-135M-Instruct), which
act as both models and as the judge; then a router is trained on the labels."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from _fake_embedder import HashEmbedder

from lmroute.cli import main
from lmroute.data.battles import WINNERS
from lmroute.data.benchmarks import load_custom
from lmroute.registry import get_router_class
from lmroute.workflows.train import train_router

pytestmark = pytest.mark.network_loopback

TEMPLATE = "{prompt}\nReply with the number only."
# Questions a 135M model gets right greedily; the weak side may say one token only, which is never
# a whole answer, so golden battles have a clear winner. Two real GSM8K questions are added.
EASY = [
    ("Tom", 4),
    ("Ana", 12),
    ("Li", 7),
    ("Sam", 25),
    ("Mia", 3),
    ("Ben", 48),
    ("Eva", 9),
    ("Max", 31),
    ("Zoe", 6),
    ("Leo", 57),
]


def _questions(data_dir) -> list[dict]:
    easy = []
    for name, n in EASY:
        question = f"{name} has {n} apples in a basket and does not eat any of them. "
        question += f"How many apples does {name} have?"
        answer = f"{name} keeps all {n} apples, so {name} has <<{n}={n}>>{n} apples.\n#### {n}"
        easy.append({"question": question, "answer": answer})
    lines = (data_dir / "routellm-evals" / "gsm8k" / "test.jsonl").read_text("utf-8").splitlines()
    return easy + [json.loads(line) for line in lines[:2]]


def _read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_label_golden_and_judge_then_train(llama_servers, data_dir, tmp_path, capsys):
    strong, weak = llama_servers.strong, llama_servers.weak
    prompts = tmp_path / "questions.jsonl"
    prompts.write_text("".join(json.dumps(q) + "\n" for q in _questions(data_dir)))
    upstreams = tmp_path / "upstreams.yaml"
    upstreams.write_text(
        yaml.safe_dump(
            {
                "upstreams": {
                    "smol-strong": {"base_url": strong.base_url, "model": strong.model},
                    "smol-weak": {
                        "base_url": weak.base_url,
                        "model": weak.model,
                        "params": {"max_tokens": 1},
                    },
                    # llama.cpp's grammar makes the tiny judge answer in the verdict form; parsing stays real.
                    "smol-judge": {
                        "base_url": strong.base_url,
                        "model": strong.model,
                        "params": {"grammar": 'root ::= "[[" [ABC] "]]"'},
                    },
                }
            }
        )
    )
    common = [
        "--prompts",
        str(prompts),
        "--upstreams",
        str(upstreams),
        "--model",
        "smol-strong",
        "--model",
        "smol-weak",
        "--prompt-template",
        TEMPLATE,
        "--max-tokens",
        "8",
        "--concurrency",
        "2",
        "--quiet",
    ]

    golden = tmp_path / "golden"
    assert main(["label", "--mode", "golden", "--out", str(golden), *common]) == 0
    summary = json.loads((golden / "summary.json").read_text())
    assert summary["items"] == {"total": 12, "labelled": 12, "incomplete": 0}
    assert summary["calls"]["made"] == {"responses": 24}
    assert summary["tokens"]["this_run"]["total"] > 0
    responses = _read(golden / "responses.jsonl")
    assert all(r["usage"]["completion_tokens"] >= 1 and r["latency_s"] > 0 for r in responses)
    accuracy = {m: e["accuracy"] for m, e in summary["per_model"].items()}
    assert accuracy["smol-strong"] >= 0.5 > accuracy["smol-weak"]
    battles = _read(golden / "battles.jsonl")
    assert len(battles) == 12 and {b["winner"] for b in battles} <= set(WINNERS)
    assert sum(b["winner"] == "model_a" for b in battles) >= 6
    bench = load_custom(golden / "scores.jsonl")
    assert (bench.strong_model, bench.weak_model) == ("smol-strong", "smol-weak")
    assert "labelled 12/12 prompts" in capsys.readouterr().out

    # Judge mode on the first 10 prompts: the stored responses are reused, only the judge is called.
    judged = tmp_path / "judged"
    judged.mkdir()
    shutil.copy(golden / "responses.jsonl", judged / "responses.jsonl")
    assert (
        main(
            [
                "label",
                "--mode",
                "judge",
                "--judge",
                "smol-judge",
                "--judge-max-tokens",
                "8",
                "--limit",
                "10",
                "--out",
                str(judged),
                *common,
            ]
        )
        == 0
    )
    summary = json.loads((judged / "summary.json").read_text())
    assert summary["calls"]["made"].get("responses", 0) == 0
    assert summary["calls"]["reused"]["responses"] == 20
    assert 10 <= summary["calls"]["made"]["judge"] <= 20  # both orders; identical requests once
    judgements = _read(judged / "judgements.jsonl")
    assert all(
        j["verdict"] in ("A", "B", "C") and j["text"].strip() == f"[[{j['verdict']}]]" for j in judgements
    )
    assert summary["unparsable_verdicts"] == 0
    battles = _read(judged / "battles.jsonl")
    assert len(battles) == 10
    assert all(len(b["judge"]["verdicts"]) == 2 for b in battles)
    assert summary["judge"] == {"model": "smol-judge", "mode": "pairwise", "template": "builtin:pairwise"}

    # A router trained on both label files, as `lmroute train --data battles:... battles:...` does.
    out = tmp_path / "router"
    router = train_router(
        "sw_ranking",
        [f"battles:{golden / 'battles.jsonl'}", f"battles:{judged / 'battles.jsonl'}"],
        out=out,
        embedder=HashEmbedder(),
        progress=False,
        options={"strong_model": "smol-strong", "weak_model": "smol-weak"},
    )
    # Judge votes equal to golden ones count once (load_sources deduplicates across sources).
    assert 12 <= router.metadata["training"]["battles"] <= 22
    loaded = get_router_class("sw_ranking").load(out, embedder=HashEmbedder())
    scores = loaded.score([battles[0]["prompt"], "Write a haiku about rain."])
    assert scores.shape == (2,) and ((scores > 0) & (scores < 1)).all()
    # The strong model won every decisive golden battle, so it is favoured on such a prompt.
    assert scores[0] > 0.5
