"""A large ``control.calibration_prompts`` file on ``lmroute serve --ray``: the ingress scores it
through the scoring deployment at start-up, as ``lmroute serve`` scores it with its routers. Sent
as one call, whose time grows with its prompts, a sample of thousands (an embedding router on a
CPU) passed the timeout of a scoring call and the ingress replicas failed to start. The ingress is
built as Ray Serve builds it (``_ray_ingress``: no Ray cluster needed)."""

from __future__ import annotations

from _ray_ingress import ScorerHandle, ingress_app, scorer_of
from starlette.testclient import TestClient

from lmroute.serving.config import build_config

UPSTREAM = {"base_url": "http://127.0.0.1:9/v1", "api_key_env": None}  # no model is called
#: What one prompt costs the scoring replica here (an embedding router on a CPU, long prompts).
SECONDS_PER_PROMPT = 0.05


class _Timed:
    """The answer to a call that takes ``seconds`` on the scoring replica."""

    def __init__(self, value, seconds):
        self.value = value
        self.seconds = seconds

    def result(self, timeout_s=None):
        if timeout_s is not None and self.seconds > timeout_s:
            raise TimeoutError(f"a scoring call took more than {timeout_s} s")
        return self.value


class _TimedScore:
    def __init__(self, score):
        self.score = score

    def remote(self, call):
        return _Timed(self.score.call(call), len(call[1]) * SECONDS_PER_PROMPT)


class _SlowScorerHandle(ScorerHandle):
    def __getattr__(self, method):
        found = super().__getattr__(method)
        return _TimedScore(found) if method == "score" else found


def test_a_calibration_sample_of_thousands_of_prompts_starts_the_ingress(tmp_path):
    calibration = tmp_path / "calibration.txt"
    calibration.write_text("".join(f"prompt number {i} " * (i % 7 + 1) + "\n" for i in range(3000)))
    config = build_config(
        overrides={
            "strong": {**UPSTREAM, "model": "strong"},
            "weak": {**UPSTREAM, "model": "weak"},
            "routers": ["length"],
            "control": {"calibration_prompts": str(calibration)},
        }
    )
    app = ingress_app(config, scorer_of(["length"]), handle=_SlowScorerHandle)
    with TestClient(app) as client:
        response = client.post("/v1/route", json={"model": "router-length-share-0.3", "prompt": "hi there"})
        assert response.status_code == 200, response.text
        # The calibration sample's scores are the drift reference.
        assert client.get("/v1/status").json()["drift"]["length"]["reference"] == "calibration"
