"""Cross-fitting: every item is held out once and never trained on by the router that scores it."""

import numpy as np
import pytest

from lmroute.evaluation.experiment import cross_fit_splits, is_own_gold
from lmroute.exceptions import ConfigError


@pytest.mark.parametrize("n, folds", [(100, 10), (72, 72), (13, 10), (5, 50)])
def test_folds_partition_items_and_never_overlap(n, folds):
    splits = cross_fit_splits(n, folds, seed=0)
    assert len(splits) == min(n, folds)
    held = np.concatenate([h for _, h in splits])
    assert sorted(held.tolist()) == list(range(n))
    for train, heldout in splits:
        assert not set(train.tolist()) & set(heldout.tolist())
        assert len(train) + len(heldout) == n


def test_splits_are_seeded():
    a = cross_fit_splits(50, 5, seed=1)
    b = cross_fit_splits(50, 5, seed=1)
    c = cross_fit_splits(50, 5, seed=2)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c, strict=True))
    with pytest.raises(ConfigError):
        cross_fit_splits(1, 2, seed=0)


def test_own_gold_sources():
    assert is_own_gold("gold:mt_bench", "mt-bench")
    assert is_own_gold("gold:mmlu", "mmlu")
    assert not is_own_gold("gold:mmlu", "gsm8k")
    assert not is_own_gold("battles:mmlu.jsonl", "mmlu")
