"""Lower bounds on epsilon from runs of a mechanism: the two statistical tests of the audit.

**Canary guessing** (Steinke, Nasr and Jagielski 2023, "Privacy auditing with one
(1) training run", theorem 3.1), used for pure (delta = 0) claims. Each run holds
several canaries, each put in the run's input or left out by an independent fair coin.
The auditor scores every canary from the run's output, on a scale where "out" sits
near 0 and "in" near 1; it guesses for the ``k`` canaries whose scores lie farthest
from the midpoint ("in" above it, "out" below) and abstains on the rest, and counts
the correct guesses ``W``. For a mechanism that is epsilon-DP with respect to each canary,
``P[W >= v] <= P[Binomial(k, e^eps / (1 + e^eps)) >= v]``; so with ``p_low`` the
one-sided Clopper-Pearson lower bound of ``W / k``,

    eps_lower = ln(p_low / (1 - p_low)).

A handful of guess sizes and scores are tried, each at ``alpha / tests`` (Bonferroni),
so the bound holds at ``1 - alpha`` whichever was best. Every canary is a guess, so a
perfect test over ``r`` canaries bounds epsilon by about ``ln(r / ln(tests / alpha))``:
many canaries per run lift the cap without more runs.

**Threshold test on neighbouring worlds** (the DP-SGD audit of Jagielski et al. 2020),
used when the claim has a delta > 0 (the canary theorem above is for pure DP) or there
is one canary per run: ``TPR <= e^eps * FPR + delta`` for any threshold test, so
``eps_lower = ln((TPR_low - delta) / FPR_high)`` with one-sided Clopper-Pearson bounds
at ``alpha / 2`` each. The statistic, threshold and direction are chosen on half of the
runs of each world and bounded on the other half, so the search costs no validity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pets.leakage.rates import clopper_pearson

__all__ = [
    "ALPHA",
    "DIRECTIONS",
    "GUESS_SHARES",
    "Audit",
    "CanaryAudit",
    "audit_scores",
    "canary_bound",
    "canary_bound_at_most",
    "canary_cap",
    "epsilon_cap",
    "threshold_bound_at_most",
]

#: One minus the confidence of every bound.
ALPHA = 0.05

#: The four threshold tests: (side of the threshold, world it says); the last three
#: are the first with the worlds' roles or the side swapped.
DIRECTIONS = ("above says D0", "below says D1", "above says D1", "below says D0")

#: Shares of all canaries guessed (those whose scores lie farthest from the midpoint).
GUESS_SHARES = (1.0, 0.25, 1 / 16)


@dataclass(frozen=True)
class Audit:
    """The bound a threshold test found.

    Attributes
    ----------
    epsilon_lower : float
        Lower bound on epsilon at confidence ``1 - alpha`` (0 when no evidence).
    epsilon_cap : float
        The bound a perfect test would give with the held-out runs.
    statistic : int
        Column of the chosen candidate statistic.
    threshold : float
        Threshold of the chosen test.
    direction : str
        The chosen test, one of :data:`DIRECTIONS` (``"above says D0"``: a score at or
        above the threshold says D0, so its rate on D0 runs is the TPR and on D1 runs
        the FPR).
    tpr_low, fpr_high : float
        Clopper-Pearson bounds of the chosen test on the held-out runs.
    held_out : int
        Held-out runs per world.
    """

    epsilon_lower: float
    epsilon_cap: float
    statistic: int
    threshold: float
    direction: str
    tpr_low: float
    fpr_high: float
    held_out: int


@dataclass(frozen=True)
class CanaryAudit:
    """The bound canary guessing found.

    Attributes
    ----------
    epsilon_lower : float
        Lower bound on epsilon at confidence ``1 - alpha`` (0 when no evidence).
    epsilon_cap : float
        The bound guessing every canary right would give.
    statistic : int
        Column of the score whose guesses gave the bound.
    guesses, correct : int
        Canaries guessed by the best test, and how many of them were right.
    canaries : int
        Canaries in all runs.
    tests : int
        Tests tried (scores times guess shares); each is held at ``alpha / tests``.
    """

    epsilon_lower: float
    epsilon_cap: float
    statistic: int
    guesses: int
    correct: int
    canaries: int
    tests: int


def canary_cap(canaries: int, tests: int = len(GUESS_SHARES), alpha: float = ALPHA) -> float:
    """Return the bound of guessing all ``canaries`` right with ``tests`` tests tried."""
    return _logit(clopper_pearson(canaries, canaries, 2 * alpha / tests)[0])


def canary_bound(
    coins: np.ndarray,
    scores: np.ndarray,
    *,
    midpoint: float | np.ndarray = 0.5,
    order: np.ndarray | None = None,
    alpha: float = ALPHA,
) -> CanaryAudit:
    """Lower-bound epsilon from the scores of canaries put in or left out by coins.

    Parameters
    ----------
    coins : ndarray of bool
        ``(canaries,)``: whether each canary was in its run's input.
    scores : ndarray
        ``(canaries,)`` or ``(canaries, statistics)``: candidate scores on a scale where
        a canary left out sits below ``midpoint`` and one kept in above it. NaN (a
        withheld cell, a refused query) is guessed last.
    midpoint : float or ndarray
        Scores above it are guessed "in", below it "out"; the guesses made are those
        farthest from it. One per score column, or one for all; it must not depend on
        the coins.
    order : ndarray, optional
        A permutation fixed before the runs (independent of the coins) that breaks ties.
    alpha : float
        One minus the confidence.
    """
    coins = np.asarray(coins, bool)
    x = np.asarray(scores, np.float64).reshape(len(coins), -1)
    count = len(coins)
    if count < 2:
        raise ValueError("need two or more canaries, one score row each")
    order = np.arange(count) if order is None else np.asarray(order)
    shares = [s for s in GUESS_SHARES if int(count * s) >= 1]
    tests = x.shape[1] * len(shares)
    middle = np.broadcast_to(np.asarray(midpoint, np.float64), (x.shape[1],))
    best = (-1.0, 0, 0, 0)
    for column in range(x.shape[1]):
        score = x[:, column]
        midpoint = float(middle[column])
        finite = np.isfinite(score)
        distance = np.where(finite, np.abs(score - midpoint), -1.0)
        says_in = finite & (score > midpoint)
        ranked = np.lexsort((order, -distance))  # farthest first; ties by the fixed order
        for share in shares:
            guessed = ranked[: int(count * share)]
            right = int((says_in[guessed] == coins[guessed]).sum())
            eps = _logit(clopper_pearson(right, len(guessed), 2 * alpha / tests)[0])
            if eps > best[0]:
                best = (eps, column, len(guessed), right)
    eps, column, guesses, right = best
    return CanaryAudit(
        epsilon_lower=max(0.0, eps),
        epsilon_cap=max(0.0, canary_cap(count, tests, alpha)),
        statistic=column,
        guesses=guesses,
        correct=right,
        canaries=count,
        tests=tests,
    )


def canary_bound_at_most(
    coins: np.ndarray,
    scores: np.ndarray,
    canaries: int,
    *,
    midpoint: float | np.ndarray = 0.5,
    alpha: float = ALPHA,
) -> float:
    """The largest bound :func:`canary_bound` could give once all ``canaries`` are
    scored, whatever the scores of the canaries still to come.

    Parameters
    ----------
    coins, scores : ndarray
        The canaries scored so far, as for :func:`canary_bound`.
    canaries : int
        Canaries in all (the planned runs' canaries).
    midpoint : float or ndarray
        The fixed midpoint (a midpoint taken from all runs' scores has no such limit).
    alpha : float
        One minus the confidence.

    Returns
    -------
    float
        For each score and share of guesses ``k``, every canary still to come is taken
        as guessed and right, and the rest of the ``k`` guesses as the farthest canaries
        scored so far, ties broken in favour of right guesses: an upper limit of the
        right guesses the final test can have (a right guess more among the farthest
        never costs more than one of them), hence of the bound.
    """
    coins = np.asarray(coins, bool)
    made = len(coins)
    columns = np.asarray(scores, np.float64).reshape(made, -1).shape[1] if made else 1
    x = np.asarray(scores, np.float64).reshape(made, columns)
    shares = [s for s in GUESS_SHARES if int(canaries * s) >= 1]
    tests = columns * len(shares)
    middle = np.broadcast_to(np.asarray(midpoint, np.float64), (columns,))
    remaining = canaries - made
    best = 0.0
    for column in range(columns):
        score = x[:, column]
        finite = np.isfinite(score)
        distance = np.where(finite, np.abs(score - middle[column]), -1.0)
        right = (finite & (score > middle[column])) == coins
        # farthest first; among equal distances the right guesses first (the most any
        # tie-break could give)
        ranked = np.lexsort((~right, -distance))
        right_so_far = np.concatenate([[0], np.cumsum(right[ranked])])
        for share in shares:
            k = int(canaries * share)
            future = min(remaining, k)
            correct = future + int(right_so_far[min(k - future, made)])
            eps = _logit(clopper_pearson(min(correct, k), k, 2 * alpha / tests)[0])
            best = max(best, eps)
    return best


def _logit(p: float) -> float:
    if p <= 0.5:
        return 0.0
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


def epsilon_cap(positives: int, negatives: int, delta: float = 0.0, alpha: float = ALPHA) -> float:
    """Return the largest epsilon bound a perfect threshold test could show: every
    positive run detected, no negative run mistaken, bounded as in :func:`audit_scores`."""
    tpr_low = clopper_pearson(positives, positives, alpha)[0]
    fpr_high = clopper_pearson(0, negatives, alpha)[1]
    return _log_ratio(tpr_low, fpr_high, delta)


def audit_scores(
    scores_d0: np.ndarray, scores_d1: np.ndarray, *, delta: float = 0.0, alpha: float = ALPHA
) -> Audit:
    """Lower-bound epsilon from statistics of runs on D0 and on D1.

    Parameters
    ----------
    scores_d0, scores_d1 : ndarray
        ``(runs, statistics)`` (or ``(runs,)``) candidate statistics of each run in
        each world, in either orientation (every test is tried both ways). NaN counts
        as lowest.
    delta : float
        The claim's delta.
    alpha : float
        One minus the confidence.

    Returns
    -------
    Audit
        Runs of even position choose the statistic, threshold and direction; runs of
        odd position bound the chosen test.
    """
    a = _as_matrix(scores_d0)
    b = _as_matrix(scores_d1)
    if a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError("need two or more runs per world and the same statistics in both")
    choose_a, held_a = a[0::2], a[1::2]
    choose_b, held_b = b[0::2], b[1::2]
    best = (-math.inf, 0, math.inf, DIRECTIONS[0])
    for column in range(a.shape[1]):
        for direction in DIRECTIONS:
            eps, threshold = _best_threshold(
                choose_a[:, column], choose_b[:, column], direction, delta, alpha
            )
            if eps > best[0]:
                best = (eps, column, threshold, direction)
    _, column, threshold, direction = best
    side, world = direction.split(" says ")
    hit_a, hit_b = held_a[:, column] >= threshold, held_b[:, column] >= threshold
    if side == "below":
        hit_a, hit_b = ~hit_a, ~hit_b
    positives, negatives = (hit_a, hit_b) if world == "D0" else (hit_b, hit_a)
    tpr_low = clopper_pearson(int(positives.sum()), len(positives), alpha)[0]
    fpr_high = clopper_pearson(int(negatives.sum()), len(negatives), alpha)[1]
    held = min(len(held_a), len(held_b))
    return Audit(
        epsilon_lower=max(0.0, _log_ratio(tpr_low, fpr_high, delta)),
        epsilon_cap=max(0.0, epsilon_cap(len(positives), len(negatives), delta, alpha)),
        statistic=column,
        threshold=float(threshold),
        direction=direction,
        tpr_low=tpr_low,
        fpr_high=fpr_high,
        held_out=held,
    )


def threshold_bound_at_most(
    scores_d0: np.ndarray,
    scores_d1: np.ndarray,
    runs_d0: int,
    runs_d1: int,
    *,
    delta: float = 0.0,
    alpha: float = ALPHA,
) -> float:
    """The largest bound :func:`audit_scores` could give once each world has all its
    runs, whatever the scores of the runs still to come.

    Parameters
    ----------
    scores_d0, scores_d1 : ndarray
        ``(runs, statistics)`` of the runs made so far in each world, in run order.
    runs_d0, runs_d1 : int
        Runs each world will have in all (the coins are drawn before the runs).
    delta, alpha
        As for :func:`audit_scores`.

    Returns
    -------
    float
        An upper limit of the final bound: every run still to come is taken as a held-out
        run the chosen test gets right, and the test itself (statistic, threshold,
        direction) as the best for the held-out runs already made, though the final
        test is chosen on the runs of even position without seeing them. When it is at
        most the claimed epsilon, no outcome of the remaining runs can contradict the
        claim, and the audit can stop with the decision the full audit would reach.
    """
    made = [np.asarray(x, np.float64) for x in (scores_d0, scores_d1)]
    sizes = [x.size // max(len(x), 1) for x in made if len(x)]
    if not sizes:
        return math.inf
    statistics = max(sizes)
    a, b = (
        np.where(np.isnan(x), -np.inf, x).reshape(-1, statistics)[1::2]
        if len(x)
        else np.empty((0, statistics))
        for x in made
    )
    held_a, held_b = runs_d0 // 2, runs_d1 // 2  # odd positions: the held-out runs
    if held_a < 1 or held_b < 1:
        return math.inf
    pending_a, pending_b = held_a - len(a), held_b - len(b)
    best = -math.inf
    for column in range(statistics):
        pooled = np.unique(np.concatenate([a[:, column], b[:, column], [np.inf]]))
        above_a = len(a) - np.searchsorted(np.sort(a[:, column]), pooled, side="left")
        above_b = len(b) - np.searchsorted(np.sort(b[:, column]), pooled, side="left")
        for direction in DIRECTIONS:
            hits, false, d0_positive = _test_counts(above_a, above_b, len(a), len(b), direction)
            if d0_positive:
                eps = _log_ratios(hits + pending_a, held_a, false, held_b, delta, alpha)
            else:
                eps = _log_ratios(hits + pending_b, held_b, false, held_a, delta, alpha)
            best = max(best, float(np.max(eps)))
    return max(0.0, best)


def _as_matrix(scores: np.ndarray) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    x = x.reshape(len(x), -1)
    return np.where(np.isnan(x), -np.inf, x)


def _log_ratio(tpr_low: float, fpr_high: float, delta: float) -> float:
    if tpr_low <= delta or fpr_high <= 0:
        return -math.inf
    return math.log((tpr_low - delta) / fpr_high)


def _test_counts(
    above_a: np.ndarray, above_b: np.ndarray, n_a: int, n_b: int, direction: str
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per threshold, a test's right "positive" calls and its false ones, from the runs
    of each world at or above it; and whether D0 is the world the test says."""
    side, world = direction.split(" says ")
    if side == "below":
        above_a, above_b = n_a - above_a, n_b - above_b
    return (above_a, above_b, True) if world == "D0" else (above_b, above_a, False)


def _log_ratios(
    hits: np.ndarray, n_pos: int, false: np.ndarray, n_neg: int, delta: float, alpha: float
) -> np.ndarray:
    """``ln((TPR_low - delta) / FPR_high)`` per threshold (Clopper-Pearson at ``alpha``;
    -inf where TPR_low is not above delta)."""
    from scipy.stats import beta

    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(hits > 0, beta.ppf(alpha / 2, hits, n_pos - hits + 1), 0.0)
        high = np.where(false < n_neg, beta.ppf(1 - alpha / 2, false + 1, n_neg - false), 1.0)
        return np.where(low > delta, np.log(np.maximum(low - delta, 1e-300) / high), -np.inf)


def _best_threshold(
    a: np.ndarray, b: np.ndarray, direction: str, delta: float, alpha: float
) -> tuple[float, float]:
    """The threshold whose Clopper-Pearson bound on these runs is largest."""

    pooled = np.unique(np.concatenate([a, b]))
    thresholds = pooled[np.isfinite(pooled)]
    if not len(thresholds):
        return -math.inf, math.inf
    above_a = len(a) - np.searchsorted(np.sort(a), thresholds, side="left")
    above_b = len(b) - np.searchsorted(np.sort(b), thresholds, side="left")
    hits, false, d0_positive = _test_counts(above_a, above_b, len(a), len(b), direction)
    n_pos, n_neg = (len(a), len(b)) if d0_positive else (len(b), len(a))
    eps = _log_ratios(hits, n_pos, false, n_neg, delta, alpha)
    i = int(np.argmax(eps))
    return float(eps[i]), float(thresholds[i])
