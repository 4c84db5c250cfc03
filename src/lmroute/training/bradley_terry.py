"""Weighted Bradley–Terry (Elo) maximum likelihood with ties, batched; and Elo tiers.

This is the model of RouteLLM's ``compute_elo_mle_with_tie``: a logistic regression without
intercept on battles, ``P(i beats j) = 1 / (1 + 10 ** ((elo_j - elo_i) / 400))``, where a win
counts twice and a tie once for each side (the reference duplicates every battle; a tie becomes
one win for each model). Here a win counts 1 and a tie ½ for each side: the same likelihood up to
a factor 2, so the same maximum.

The likelihood depends on the battles only through ``C[i, j]``, the (weighted) number of wins of
player ``i`` over player ``j``, so a fit takes that small matrix instead of the battles, and many
fits (one per query in ``sw_ranking``) run as one batched Newton solve.

Ratings are returned on the natural-log scale ``r = elo * ln(10) / 400`` (``P(i beats j) =
sigmoid(r_i - r_j)``); :func:`to_elo` converts.

**The anchor.** A battle whose two sides are the same player (two models of one tier, once models
are bucketed into tiers) is, in the reference's design matrix, a row whose ``+ln 10`` entry for
``model_a`` is overwritten by the ``-ln 10`` of ``model_b``: that player against an implicit
opponent rated 0 (Elo 1000), which "wins" when ``model_a`` wins. We keep that as an extra player,
the anchor, whose rating is fixed at 0 (``same_player="anchor"``), or drop such battles
(``same_player="drop"``). Every count matrix therefore has one more row and column than there are
players; the last is the anchor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from lmroute.exceptions import DataError

ELO_SCALE = 400.0
ELO_BASE = 10.0
ELO_INIT = 1000.0

A_WINS, B_WINS, TIE = 0, 1, 2
_OUTCOMES = {"model_a": A_WINS, "model_b": B_WINS, "tie": TIE, "tie (bothbad)": TIE}

SamePlayer = Literal["anchor", "drop"]


def outcome_codes(winners: Sequence[str]) -> np.ndarray:
    """``winner`` strings of battles as codes: 0 = model_a won, 1 = model_b won, 2 = a tie."""
    try:
        return np.fromiter((_OUTCOMES[w] for w in winners), dtype=np.int8, count=len(winners))
    except KeyError as exc:
        raise DataError(
            f"unknown battle winner {exc.args[0]!r}; expected one of {', '.join(_OUTCOMES)}"
        ) from None


def battle_cells(
    a: np.ndarray,
    b: np.ndarray,
    outcome: np.ndarray,
    num_players: int,
    *,
    same_player: SamePlayer = "anchor",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What each battle adds to the win matrix: ``(battle index, flat cell, amount)`` triples.

    The flat cell ``i * (num_players + 1) + j`` is ``C[i, j]`` (``i`` beat ``j``). A win adds 1 to
    one cell, a tie ½ to two; a battle of a player against itself involves the anchor (index
    ``num_players``) or nothing, as ``same_player`` says.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    outcome = np.asarray(outcome)
    if same_player not in ("anchor", "drop"):
        raise ValueError(f"same_player must be 'anchor' or 'drop', got {same_player!r}")
    anchor = num_players
    same = a == b
    if same_player == "anchor":
        # the reference's row -ln10 at model_a's column: P(row says "model_a won") = P(anchor beats a)
        a = np.where(same, anchor, a)
    battle = np.arange(len(a))
    keep = ~same if same_player == "drop" else np.ones(len(a), dtype=bool)
    win_a = keep & (outcome == A_WINS)
    win_b = keep & (outcome == B_WINS)
    tie = keep & (outcome == TIE)
    width = num_players + 1
    rows = np.concatenate([battle[win_a], battle[win_b], battle[tie], battle[tie]])
    cells = np.concatenate(
        [
            a[win_a] * width + b[win_a],
            b[win_b] * width + a[win_b],
            a[tie] * width + b[tie],
            b[tie] * width + a[tie],
        ]
    )
    amounts = np.concatenate(
        [
            np.ones(win_a.sum() + win_b.sum()),
            np.full(2 * tie.sum(), 0.5),
        ]
    )
    return rows, cells, amounts


def count_wins(
    a: np.ndarray,
    b: np.ndarray,
    outcome: np.ndarray,
    num_players: int,
    *,
    weights: np.ndarray | None = None,
    same_player: SamePlayer = "anchor",
) -> np.ndarray:
    """The ``(num_players + 1, num_players + 1)`` matrix of weighted wins (last row/column: anchor)."""
    rows, cells, amounts = battle_cells(a, b, outcome, num_players, same_player=same_player)
    if weights is not None:
        amounts = amounts * np.asarray(weights, dtype=np.float64)[rows]
    width = num_players + 1
    return np.bincount(cells, weights=amounts, minlength=width * width).reshape(width, width)


def fit_ratings(
    counts: np.ndarray, *, l2: float = 0.0, tol: float = 1e-10, max_iter: int = 100
) -> np.ndarray:
    """Maximum-likelihood ratings from win matrices, by damped Newton steps, batched.

    ``counts`` has shape ``(..., n + 1, n + 1)`` (see :func:`count_wins`; the last player is the
    anchor, fixed at 0). Returns ``(..., n)`` ratings on the natural-log scale. Without battles
    against the anchor the ratings are only defined up to a common shift; the result then sums to
    zero, like the reference's solver started at zero. ``l2`` adds ``l2 * total_count / 2 *
    sum(r ** 2)`` to the negative log-likelihood: 0 is the reference's unpenalised fit; a small
    value keeps ratings finite when some player never loses (there the MLE does not exist).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim < 2 or counts.shape[-1] != counts.shape[-2] or counts.shape[-1] < 2:
        raise ValueError(f"counts must have shape (..., n + 1, n + 1) with n >= 1, got {counts.shape}")
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ValueError("counts must be finite and non-negative")
    batch_shape = counts.shape[:-2]
    width = counts.shape[-1]
    n = width - 1
    C = counts.reshape(-1, width, width).copy()
    C[:, np.arange(width), np.arange(width)] = 0.0
    N = C + C.transpose(0, 2, 1)
    lam = l2 * C.sum(axis=(1, 2))
    # No battle with the anchor: ratings are free up to a shift. The gradient is then orthogonal
    # to the all-ones vector, so adding s·11ᵀ/n to the Hessian fixes the shift without moving the
    # optimum, and iterates started at 0 keep summing to 0.
    free = N[:, n, :].sum(axis=1) == 0
    r = np.zeros((C.shape[0], n))
    objective = _negative_log_likelihood(C, r, lam)
    active = np.ones(C.shape[0], dtype=bool)
    eye = np.eye(n)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        c, nn, ri, li = C[idx], N[idx], r[idx], lam[idx]
        full = np.concatenate([ri, np.zeros((idx.size, 1))], axis=1)
        p = _sigmoid(full[:, :, None] - full[:, None, :])
        grad = (c - nn * p).sum(axis=2)[:, :n] - li[:, None] * ri
        v = (nn * p * (1.0 - p))[:, :n, :]
        hess = -v[:, :, :n]
        diag = v.sum(axis=2)
        hess[:, np.arange(n), np.arange(n)] = diag
        scale = diag.mean(axis=1) + 1e-12
        hess += (li + 1e-12 * scale)[:, None, None] * eye
        hess += np.where(free[idx], scale / n, 0.0)[:, None, None]
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        # Halve the step where it does not decrease the objective (large first steps can overshoot).
        t = np.ones(idx.size)
        current = objective[idx]
        accepted = np.zeros(idx.size, dtype=bool)
        new_obj = current.copy()
        for _ in range(50):
            pending = np.flatnonzero(~accepted)
            if pending.size == 0:
                break
            trial = ri[pending] + t[pending, None] * step[pending]
            obj = _negative_log_likelihood(c[pending], trial, li[pending])
            ok = obj <= current[pending] + 1e-12 * np.abs(current[pending])
            accepted[pending[ok]] = True
            new_obj[pending[ok]] = obj[ok]
            t[pending[~ok]] *= 0.5
        t[~accepted] = 0.0
        r[idx] = ri + t[:, None] * step
        objective[idx] = np.where(accepted, new_obj, current)
        moved = np.abs(t[:, None] * step).max(axis=1)
        active[idx] = accepted & (moved > tol)
    return r.reshape(*batch_shape, n)


def to_elo(ratings: np.ndarray) -> np.ndarray:
    """Natural-log ratings as Elo: scale 400, base 10, 1000 for rating 0 (the anchor)."""
    return ELO_INIT + ELO_SCALE / math.log(ELO_BASE) * np.asarray(ratings, dtype=np.float64)


def compute_tiers(ratings: np.ndarray, num_tiers: int) -> np.ndarray:
    """Bucket players into at most ``num_tiers`` tiers of adjacent ratings; tier 0 is the best.

    As the reference: sort ratings from best to worst and split them into contiguous groups that
    minimise the sum of the groups' variances (dynamic programming; the first best split wins
    ties). Tiers are numbered 0, 1, ... without gaps.
    """
    ratings = np.asarray(ratings, dtype=np.float64)
    if ratings.ndim != 1 or ratings.size == 0:
        raise ValueError("ratings must be a non-empty 1-d array")
    if num_tiers < 1:
        raise ValueError(f"num_tiers must be at least 1, got {num_tiers}")
    order = np.argsort(-ratings, kind="stable")
    values = ratings[order]
    n = values.size
    # var[i, j]: variance of values[i..j]; best[t, j]: least cost of values[0..j] in t + 1 groups.
    var = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            var[i, j] = np.var(values[i : j + 1])
    best = np.zeros((num_tiers, n))
    split = np.zeros((num_tiers, n), dtype=np.int64)
    best[0] = var[0]
    for t in range(1, num_tiers):
        for j in range(1, n):
            candidates = best[t - 1, :j] + var[1 : j + 1, j]
            split[t, j] = int(np.argmin(candidates))
            best[t, j] = candidates[split[t, j]]
    # Walk back the last index of each group; a group of one player may be split into empty ones.
    ends = [n - 1]
    last = n - 1
    for t in range(num_tiers - 1, 0, -1):
        last = int(split[t, last]) if last > 0 else 0
        ends.append(last)
    ends = sorted(set(ends))
    tiers_sorted = np.searchsorted(np.asarray(ends), np.arange(n))
    tiers = np.empty(n, dtype=np.int64)
    tiers[order] = tiers_sorted
    return tiers


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _negative_log_likelihood(C: np.ndarray, r: np.ndarray, lam: np.ndarray) -> np.ndarray:
    full = np.concatenate([r, np.zeros((r.shape[0], 1))], axis=1)
    diff = full[:, :, None] - full[:, None, :]
    return (C * np.logaddexp(0.0, -diff)).sum(axis=(1, 2)) + 0.5 * lam * (r * r).sum(axis=1)
