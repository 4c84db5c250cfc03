"""The RouteLLM reference's Bradley–Terry fit, written out directly: what the batched solver
(:mod:`lmroute.training.bradley_terry`) must equal. Shared by its tests and sw_ranking's."""

from __future__ import annotations

import math

import numpy as np

from lmroute.training import bradley_terry as bt

LN10 = math.log(10)


def reference_design(a, b, outcome, num_players, weights=None):
    """The reference's regression: battles duplicated, ``X[a] = +ln 10`` then ``X[b] = -ln 10``
    (so a battle of a player with itself keeps only ``-ln 10``), a tie = one A win + one B win."""
    n = len(a)
    rows = np.arange(2 * n)
    X = np.zeros((2 * n, num_players))
    X[rows, np.concatenate([a, a])] = LN10
    X[rows, np.concatenate([b, b])] = -LN10
    Y = np.zeros(2 * n)
    Y[np.concatenate([outcome, outcome]) == bt.A_WINS] = 1.0
    Y[:n][outcome == bt.TIE] = 1.0
    w = np.ones(2 * n) if weights is None else np.concatenate([weights, weights])
    return X, Y, w


def direct_logistic_fit(X, Y, w):
    """Weighted logistic regression without intercept by plain Newton steps (minimum-norm solves)."""
    coef = np.zeros(X.shape[1])
    for _ in range(200):
        p = 1.0 / (1.0 + np.exp(-X @ coef))
        grad = X.T @ (w * (Y - p))
        hess = (X * (w * p * (1 - p))[:, None]).T @ X
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        coef += step
        if np.abs(step).max() < 1e-13:
            break
    return coef
