"""Which precision the classifier networks compute in: forced, or "auto" by the CPU (no torch)."""

from __future__ import annotations

import pytest

from lmroute.networks import precision


@pytest.mark.parametrize("native", [True, False])
def test_forced_precisions_ignore_the_cpu(native, monkeypatch):
    monkeypatch.setattr(precision, "native_bfloat16", lambda: native)
    assert precision.uses_bfloat16("float32") is False
    assert precision.uses_bfloat16("bfloat16") is True


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bfloat16_exactly_where_the_cpu_has_it_natively(native, monkeypatch):
    monkeypatch.setattr(precision, "native_bfloat16", lambda: native)
    assert precision.uses_bfloat16("auto") is native


def test_the_cpu_check_answers_without_failing():
    assert isinstance(precision.native_bfloat16(), bool)
