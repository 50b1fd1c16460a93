"""Singling out (attacker model A0): predicates built from the release alone.

- ``singling_out`` (A0, no auxiliary knowledge). Predicates are built from the release
  alone and kept when they match exactly one released row. ``multivariate``: a random
  released row and :data:`PREDICATE_COLUMNS` random columns; equality on categorical
  columns, and on numeric columns ``>=`` the row's value when it lies above the
  column's median, else ``<=``. ``univariate``: ``<=`` the minimum, ``>=`` the maximum,
  and equality with values that occur once. Success: the predicate matches exactly one
  of the original rows. The control is the share of the same predicates that single out
  one held-out patient. Both kinds are reported (extra key ``mode``); multivariate is
  the main one (Anonymeter's default).

Size. Singling out depends on the size of the set a predicate is run on: a predicate
that isolates one row among ``n`` tends to isolate one among a larger set less often
than among a smaller one, and the other way round. The held-out set is smaller than the
original rows (a fifth of the cohort against four fifths on the release card), and
running the predicates on a random subsample of the original rows of the held-out size
would be fair but blind: a released row sits in that subsample only with probability
held-out / original, so even the raw table scores about that much. Anonymeter runs the
predicates on all the original rows and brings the control's count to the original
size with a fitted model; here that model is per predicate: each predicate's weight
(the share of patients it matches) gets a gamma prior fitted to the control counts
(a negative binomial likelihood), and the control rate at the original size is the
posterior mean probability of exactly one match among that many patients. On a
release drawn from patients independent of the original rows this model gives a
residual risk of about zero where the uncorrected comparison gives about 0.1. The
uncorrected control rate and the size-matched comparison (the original rows at the
held-out size, averaged exactly over subsamples) are kept as extra keys.

Anonymeter 1.1.0's own size correction of the multivariate control is not used (it
counts the predicates tried where the predicates that succeed are meant);
:func:`control_rate_at_size` is this family's own.

"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln

from pets.leakage._base import AttackResult, not_applicable, rate_result
from pets.leakage.rates import residual_risk
from pets.leakage.release.view import AttackerView

__all__ = [
    "MAX_ATTEMPTS_PER_PREDICATE",
    "PREDICATE_COLUMNS",
    "SINGLING_OUT",
    "control_rate_at_size",
    "rank_codes",
    "singling_out",
]

SINGLING_OUT = "singling_out"

#: Columns in a multivariate singling-out predicate.
PREDICATE_COLUMNS = 4

#: Candidate predicates tried per predicate wanted, at most.
MAX_ATTEMPTS_PER_PREDICATE = 200
_CHUNK_ELEMENTS = 4_000_000


@dataclass
class _Predicates:
    """Conjunctions of range terms on rank codes: ``low <= x <= high`` (negated when
    ``negate``), one row per predicate, one column per term."""

    columns: np.ndarray
    low: np.ndarray
    high: np.ndarray
    negate: np.ndarray

    def __len__(self) -> int:
        return len(self.columns)

    def take(self, keep: np.ndarray) -> _Predicates:
        return _Predicates(self.columns[keep], self.low[keep], self.high[keep], self.negate[keep])


def rank_codes(view: AttackerView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense ranks of each column over the three arrays (missing: -1), columns first."""
    outs = ([], [], [])
    for j in range(len(view.columns)):
        parts = (view.release[:, j], view.original[:, j], view.control[:, j])
        seen = np.concatenate(parts)
        values = np.unique(seen[~np.isnan(seen)])
        for out, part in zip(outs, parts, strict=True):
            r = np.searchsorted(values, part).astype(np.int64)
            r[np.isnan(part)] = -1
            out.append(r)
    largest = max((int(r.max(initial=0)) for out in outs for r in out), default=0)
    dtype = np.int16 if largest < np.iinfo(np.int16).max - 1 else np.int32
    release, original, control = (np.array(out, dtype=dtype) for out in outs)
    return release, original, control


def _match_counts(data: np.ndarray, predicates: _Predicates) -> np.ndarray:
    """Rows of ``data`` (columns by rows, rank codes) each predicate matches."""
    n_rows = data.shape[1]
    out = np.empty(len(predicates), np.int64)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n_rows))
    for s in range(0, len(predicates), chunk):
        cols = predicates.columns[s : s + chunk]
        low = predicates.low[s : s + chunk].astype(data.dtype)
        high = predicates.high[s : s + chunk].astype(data.dtype)
        neg = predicates.negate[s : s + chunk]
        match = np.ones((len(cols), n_rows), bool)
        for j in range(cols.shape[1]):
            x = data[cols[:, j]]
            term = (x >= low[:, j, None]) & (x <= high[:, j, None])
            match &= term ^ neg[:, j, None]
        out[s : s + chunk] = np.count_nonzero(match, axis=1)
    return out


def _multivariate(
    release: np.ndarray, numeric: np.ndarray, wanted: int, rng: np.random.Generator
) -> tuple[_Predicates, int]:
    """Predicates from random released rows and columns that single out one row."""
    d, n = release.shape
    k = min(PREDICATE_COLUMNS, d)
    median = np.median(release, axis=1)
    top = np.iinfo(release.dtype).max
    # A predicate matching two rows of a sample matches two of the release: cheap filter.
    sample = release[:, rng.choice(n, min(n, 1000), replace=False)] if n > 2000 else None
    found: dict[bytes, int] = {}
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    attempts = 0
    batch = 2000
    while len(kept) < wanted and attempts < wanted * MAX_ATTEMPTS_PER_PREDICATE:
        rows = rng.integers(0, n, batch)
        cols = np.sort(np.argsort(rng.random((batch, d)), axis=1)[:, :k], axis=1)
        value = release[cols, rows[:, None]].astype(np.int64)
        up = numeric[cols] & (value > median[cols])
        down = numeric[cols] & ~up
        low = np.where(down, 0, value)
        high = np.where(up, top, value)
        candidates = _Predicates(cols, low, high, np.zeros_like(cols, bool))
        attempts += batch
        if sample is not None:
            candidates = candidates.take(_match_counts(sample, candidates) <= 1)
        single = np.flatnonzero(_match_counts(release, candidates) == 1)
        for i in single:
            key = candidates.columns[i].tobytes() + candidates.low[i].tobytes()
            key += candidates.high[i].tobytes()
            if key in found:
                continue
            found[key] = len(kept)
            kept.append((candidates.columns[i], candidates.low[i], candidates.high[i]))
            if len(kept) >= wanted:
                break
    return _stack(kept, k), attempts


def _univariate(
    release: np.ndarray, numeric: np.ndarray, wanted: int, rng: np.random.Generator
) -> tuple[_Predicates, int]:
    """Predicates on one column: below the minimum, above the maximum, rare values."""
    top = np.iinfo(release.dtype).max
    candidates: list[tuple[int, int, int]] = []
    for j in range(release.shape[0]):
        x = release[j][release[j] >= 0]
        if x.size == 0:
            continue
        if numeric[j]:
            candidates += [(j, 0, int(x.min())), (j, int(x.max()), top)]
        values, counts = np.unique(x, return_counts=True)
        candidates += [(j, int(v), int(v)) for v in values[counts == 1]]
    if not candidates:
        return _stack([], 1), 0
    order = rng.permutation(len(candidates))
    arr = np.array(candidates, np.int64)[order]
    preds = _Predicates(arr[:, :1], arr[:, 1:2], arr[:, 2:3], np.zeros((len(arr), 1), bool))
    kept = preds.take(_match_counts(release, preds) == 1)
    return kept.take(np.arange(min(wanted, len(kept)))), len(arr)


def _stack(kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]], k: int) -> _Predicates:
    if not kept:
        empty = np.zeros((0, k), np.int64)
        return _Predicates(empty, empty, empty, np.zeros((0, k), bool))
    cols, low, high = (np.array([p[i] for p in kept]) for i in range(3))
    return _Predicates(cols, low, high, np.zeros_like(cols, bool))


def _random_predicates(
    release: np.ndarray, numeric: np.ndarray, count: int, k: int, rng: np.random.Generator
) -> _Predicates:
    """Anonymeter's baseline: random columns, values and operators, not fitted to
    single anyone out (numeric: = != < > <= >=; categorical: = !=)."""
    d, n = release.shape
    top = np.iinfo(release.dtype).max
    cols = np.sort(np.argsort(rng.random((count, d)), axis=1)[:, :k], axis=1)
    value = release[cols, rng.integers(0, n, (count, k))].astype(np.int64)
    op = np.where(numeric[cols], rng.integers(0, 6, (count, k)), rng.integers(0, 2, (count, k)))
    low = np.select([op == 2, op == 3, op == 4, op == 5], [0, value + 1, 0, value], value)
    high = np.select([op == 2, op == 3, op == 4, op == 5], [value - 1, top, value, top], value)
    return _Predicates(cols, low, high, op == 1)


def _single_in_subsample(counts: np.ndarray, n: int, m: int) -> np.ndarray:
    """Probability that exactly one of ``counts`` matching rows among ``n`` falls in a
    random subsample of ``m`` rows (hypergeometric)."""
    a = np.asarray(counts, dtype=np.float64)
    ok = (a >= 1) & (n - a >= m - 1)
    a = np.where(ok, a, 1.0)
    log_p = (
        np.log(a)
        + gammaln(n - a + 1)
        - gammaln(m)
        - gammaln(n - a - m + 2)
        - (gammaln(n + 1) - gammaln(m + 1) - gammaln(n - m + 1))
    )
    return np.where(ok, np.exp(log_p), 0.0)


def control_rate_at_size(counts: np.ndarray, m: int, n: int) -> float:
    """Estimate the share of predicates that would single out one patient among ``n``
    from their match counts among ``m`` held-out patients.

    Each predicate's weight ``w`` (the share of patients it matches) gets a gamma prior
    fitted to the counts (negative binomial likelihood, counts taken as Poisson with mean
    ``m w``); the estimate is the mean over predicates of the posterior expectation of
    ``n w exp(-n w)``, the probability of exactly one match among ``n``.

    Parameters
    ----------
    counts : numpy.ndarray
        Matches of each predicate among the ``m`` held-out patients.
    m, n : int
        Held-out size and target size.

    Returns
    -------
    float
        The estimated rate; the observed one when ``n == m``.
    """
    b = np.asarray(counts, dtype=np.float64)
    if b.size == 0:
        return 0.0
    if n == m:
        return float(np.mean(b == 1))
    mean = max(float(b.mean()), 1e-6)

    def nll(p: np.ndarray) -> float:
        shape, mu = math.exp(p[0]), math.exp(p[1])
        ll = (
            gammaln(shape + b)
            - gammaln(shape)
            + shape * math.log(shape / (shape + mu))
            + b * math.log(mu / (shape + mu))
        )
        return -float(ll.sum())

    start = np.array([0.0, math.log(mean)])
    bounds = [(math.log(1e-3), math.log(1e3)), (math.log(1e-6), math.log(max(m, 2)))]
    fit = minimize(nll, start, method="L-BFGS-B", bounds=bounds)
    shape, mu = math.exp(fit.x[0]), math.exp(fit.x[1])
    rate = shape * m / mu  # prior on w: gamma(shape, rate), mean mu / m
    post_shape, post_rate = shape + b, rate + m
    single = n * post_shape / post_rate * (post_rate / (post_rate + n)) ** (post_shape + 1)
    return float(np.clip(np.mean(single), 0.0, 1.0))


def singling_out(
    view: AttackerView,
    ranks: tuple[np.ndarray, np.ndarray, np.ndarray],
    mode: str,
    wanted: int,
    rng: np.random.Generator,
    observer: str,
    common: dict[str, Any],
) -> AttackResult:
    """Single out released rows with ``wanted`` predicates of ``mode`` (``"multivariate"``
    or ``"univariate"``); ``ranks`` from :func:`rank_codes`."""
    start = time.perf_counter()
    release, original, control = ranks
    if mode == "multivariate":
        predicates, attempts = _multivariate(release, view.numeric, wanted, rng)
        k = min(PREDICATE_COLUMNS, len(view.columns))
    else:
        predicates, attempts = _univariate(release, view.numeric, wanted, rng)
        k = 1
    if len(predicates) == 0:
        return not_applicable(
            SINGLING_OUT,
            "A0",
            observer,
            f"no {mode} predicate singles out a released row ({attempts} tried)",
        )
    n, m = original.shape[1], control.shape[1]
    in_original = _match_counts(original, predicates)
    in_control = _match_counts(control, predicates)
    successes = int(np.sum(in_original == 1))
    observed_control = float(np.mean(in_control == 1))
    control_rate = control_rate_at_size(in_control, m, n)
    baseline_preds = _random_predicates(release, view.numeric, len(predicates), k, rng)
    baseline = float(np.mean(_match_counts(original, baseline_preds) == 1))
    matched = float(np.mean(_single_in_subsample(in_original, n, m)))
    extra = {
        "mode": mode,
        "predicate_columns": k,
        "predicates": len(predicates),
        "candidates_tried": int(attempts),
        "control_rate_observed": observed_control,
        "size_matched_rate": matched,
        "size_matched_residual_risk": residual_risk(matched, observed_control),
        **common,
    }
    note = (
        f"{mode} predicates built from the release, each matching one released row; "
        f"success when it matches exactly one of the {n} original rows; control: the same "
        f"predicates on {m} held-out patients, brought to {n} rows by a gamma-Poisson "
        "model of each predicate's weight"
    )
    return rate_result(
        SINGLING_OUT,
        "A0",
        observer,
        successes=successes,
        trials=len(predicates),
        baseline=baseline,
        control=control_rate,
        cost_s=time.perf_counter() - start,
        note=note,
        **extra,
    )
