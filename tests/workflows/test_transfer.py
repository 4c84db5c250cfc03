"""Domain transfer: leave-one-source-out never scores a source with a router that saw it, and its
results have the documented JSON shape (docs/experiments.md)."""

import json

import numpy as np
import pytest

from lmroute import registry
from lmroute.exceptions import ConfigError
from lmroute.routers.base import Router, RouterConfig
from lmroute.workflows.experiment import ExperimentConfig, run_experiment, write_experiment
from lmroute.workflows.experiment_config import HeldOutSource, RouterSpec
from lmroute.workflows.transfer import carries, load_held_out

#: Prompts each fit of the spy router trained on, in order.
_FITS: list[set[str]] = []


class _SpyRouter(Router):
    """Remembers its training prompts; refuses to score any of them; scores by length."""

    name = "spy"
    config_class = RouterConfig

    def fit(self, battles, *, progress=False):
        self.seen = {b.prompt for b in battles}
        _FITS.append(self.seen)
        return self

    def _score(self, prompts):
        leaked = set(prompts) & self.seen
        assert not leaked, f"scored prompts it trained on: {sorted(leaked)[:3]}"
        return np.array([len(p) % 7 for p in prompts], dtype=float)


def _outcomes(path, topic, n):
    """A many-model outcomes file: three models, the big one right more often on longer prompts."""
    rng = np.random.default_rng(len(topic))
    lines = []
    for i in range(n):
        prompt = f"{topic} question {i}: " + "word " * (i % 9)
        big = int(rng.random() < 0.5 + 0.05 * (i % 9))
        lines.append({"prompt": prompt, "scores": {"big": big, "mid": int(rng.random() < 0.5), "small": 0}})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_ROUTERS", {**registry._ROUTERS, "spy": _SpyRouter})
    _FITS.clear()
    a = _outcomes(tmp_path / "alpha.jsonl", "alpha", 30)
    b = _outcomes(tmp_path / "beta.jsonl", "beta", 20)
    c = _outcomes(tmp_path / "gamma.jsonl", "gamma", 25)
    held = [
        {
            "name": name,
            "benchmark": str(path),
            "strong_model": "big",
            "weak_model": "small",
            "train": [f"gold:{path}"],
        }
        for name, path in (("alpha", a), ("beta", b), ("gamma", c))
    ]
    held.append({**held[0], "name": "alpha-3shot", "shots": 3})
    return ExperimentConfig(
        protocols=["leave-one-source-out", "single-source"],
        sources=[f"gold:{a}?max_pairs=all", f"gold:{b}", f"gold:{c}"],
        routers=[{"name": "spy"}],
        baselines=["length"],
        held_out=held,
        decontaminate=False,
        bootstrap=20,
    )


def test_each_source_is_scored_by_a_router_that_never_saw_it(config, tmp_path):
    result = run_experiment(config, data_dir=None, progress=False, log=lambda _: None)
    # three leave-one-out fits (alpha and its 3-shot variant share one) + three single-source fits
    assert len(_FITS) == 6
    data = result.to_dict()
    loso = data["leave_one_source_out"]
    assert [s["source"] for s in loso["sources"]] == ["alpha", "beta", "gamma", "alpha-3shot"]
    alpha = loso["sources"][0]
    assert alpha["left_out"] == [config.sources[0]] and alpha["items"] == 30
    assert (alpha["strong_model"], alpha["weak_model"], alpha["shots"]) == ("big", "small", 0)
    assert set(alpha["routers"]) == {"spy", "length"}
    lo, hi = alpha["routers"]["spy"]["apgr_ci95"]
    assert lo <= hi
    # the mean and worst case are over the plain sources only, by hand
    plain = {s["source"]: s["routers"]["spy"]["apgr"] for s in loso["sources"][:3]}
    summary = loso["summary"]["spy"]
    assert summary["mean"] == pytest.approx(np.mean(list(plain.values())))
    assert summary["worst"] == min(plain.values()) and plain[summary["worst_source"]] == summary["worst"]
    assert summary["sources"] == 3 and "length" in loso["summary"]
    variant = loso["sources"][3]
    assert variant["items"] == 27 and variant["shots"] == 3
    # single-source: trained on each source alone, evaluated on the others (not on variants)
    matrix = data["single_source"]["apgr"]["spy"]
    assert set(matrix) == {"alpha", "beta", "gamma"}
    assert set(matrix["alpha"]) == {"beta", "gamma"}
    written = write_experiment(result, tmp_path / "out")
    text = written[0].read_text()
    assert "leave-one-source-out" in text and "alpha-3shot" in text and "mean" in text
    assert json.loads(written[1].read_text())["leave_one_source_out"]["summary"]["spy"]["sources"] == 3


def test_results_json_of_the_exact_protocol_is_strict_json(config, tmp_path):
    # An exact curve starts at threshold infinity: results.json held Infinity, which a browser's
    # JSON.parse (the console's report view) refuses.
    config = config.model_copy(update={"eval_protocol": "exact", "protocols": ["leave-one-source-out"]})
    result = run_experiment(config, data_dir=None, progress=False, log=lambda _: None)
    written = write_experiment(result, tmp_path / "out")

    def refuse(constant):
        raise AssertionError(f"{constant} in results.json")

    cells = json.loads(written[1].read_text(), parse_constant=refuse)["cells"]
    assert cells and all(c["points"][0]["threshold"] is None for c in cells)


def test_a_shots_variant_opens_every_prompt_with_the_same_items(config):
    plain = load_held_out(config.held_out[0], data_dir=None)
    variant = load_held_out(config.held_out[3], data_dir=None)
    assert len(variant) == len(plain) - 3
    prefix = variant.prompts[0][: variant.prompts[0].rindex("\n\n")]
    assert prefix.count("alpha question") == 3
    assert all(p.startswith(prefix + "\n\n") for p in variant.prompts)
    assert {p[len(prefix) + 2 :] for p in variant.prompts} < set(plain.prompts)


def test_carries_matches_specs_before_their_options():
    held = HeldOutSource(name="x", benchmark="mt-bench", train=["gold:zeroeval/crux.jsonl"])
    assert carries("gold:zeroeval/crux.jsonl?max_pairs=4", held)
    assert carries("gold:mt_bench", held)  # a public benchmark's own gold
    assert not carries("gold:mmlu", held) and not carries("battles:arena-hard/battles.jsonl", held)


def test_source_protocols_need_held_out_sources_and_named_pairs(tmp_path):
    with pytest.raises(ValueError, match="needs held_out"):
        ExperimentConfig(protocols=["leave-one-source-out"], sources=["gold:mmlu"], routers=[{"name": "mf"}])
    path = _outcomes(tmp_path / "a.jsonl", "a", 5)
    with pytest.raises(ConfigError, match="name its strong_model and weak_model"):
        load_held_out(HeldOutSource(name="a", benchmark=str(path)), data_dir=None)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("gold:{}/alpah.jsonl", "alpah.jsonl does not exist"),
        ("gold:{}/alpha.jsonl?max_pair=3", "unknown option 'max_pair=3'"),
    ],
)
def test_a_misspelt_train_spec_of_single_source_fails_before_any_training(config, tmp_path, spec, message):
    # A held-out source's own specs are read only by single-source, after leave-one-source-out had
    # trained on every source: a misspelt one lost all of that work.
    from lmroute.exceptions import LmrouteError

    held = [
        h.model_copy(update={"train": [spec.format(tmp_path)]}) if h.name == "alpha" else h
        for h in config.held_out
    ]
    config = config.model_copy(update={"held_out": held})
    logged: list[str] = []
    with pytest.raises(LmrouteError, match=message):
        run_experiment(config, data_dir=None, progress=False, log=logged.append)
    assert logged == [] and _FITS == []


def test_the_single_source_table_without_baselines_has_its_columns(config, tmp_path):
    # Its columns were the baselines' evaluation sets: without baselines, a table of row names only.
    config = config.model_copy(update={"baselines": [], "protocols": ["single-source"]})
    result = run_experiment(config, data_dir=None, progress=False, log=lambda _: None)
    text = write_experiment(result, tmp_path / "out")[0].read_text()
    apgr = result.to_dict()["single_source"]["apgr"]["spy"]
    assert "| spy: trained on ↓, evaluated on → | alpha | beta | gamma |" in text
    assert f"| alpha | — | {apgr['alpha']['beta']:.3f} | {apgr['alpha']['gamma']:.3f} |" in text


class _PairConfig(RouterConfig):
    strong_model: str = "gpt-4-1106-preview"
    weak_model: str = "mistralai/Mixtral-8x7B-Instruct-v0.1"


class _PairSpyRouter(_SpyRouter):
    """The spy with a pair of models to compare, as mf has."""

    name = "pair-spy"
    config_class = _PairConfig


def test_a_source_lacking_the_routers_pair_for_single_source_fails_before_any_training(config, monkeypatch):
    # Its data lacks the router's pair and the entry names no train_pair that it holds: found only at
    # single-source's turn, after leave-one-source-out had trained on every source.
    from lmroute.exceptions import LmrouteError

    monkeypatch.setattr(registry, "_ROUTERS", {**registry._ROUTERS, "pair-spy": _PairSpyRouter})
    held = [
        h.model_copy(update={"train_pair": ("big", "huge")}) if h.name == "beta" else h
        for h in config.held_out
    ]
    config = config.model_copy(update={"routers": [RouterSpec(name="pair-spy")], "held_out": held})
    logged: list[str] = []
    with pytest.raises(LmrouteError, match="held-out source 'beta': its training data lacks gpt-4-1106"):
        run_experiment(config, data_dir=None, progress=False, log=logged.append)
    assert _FITS == []
    # with its pair held by the data, it runs
    held = [h.model_copy(update={"train_pair": None}) for h in held]
    run_experiment(
        config.model_copy(update={"held_out": held}), data_dir=None, progress=False, log=lambda _: None
    )
    assert len(_FITS) == 6
