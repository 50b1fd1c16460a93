"""Attacks on a released patient-level table (task kind ``release``).

The recipient holds the table the custodian published. Anonymeter's three risks
(Giomi et al., 2023: singling out, linkability, attribute inference) are measured the
way Anonymeter defines them, each against a control: the same attack on held-out real
patients who were never in the custodian's rows (``evaluation["holdout"]``). Residual
risk is ``(attack - control) / (1 - control)``. Two attacks on distances complete the
family:

- ``singling_out`` (A0, no auxiliary knowledge). Predicates are built from the release
  alone and kept when they match exactly one released row. ``multivariate``: a random
  released row and :data:`PREDICATE_COLUMNS` random columns; equality on categorical
  columns, and on numeric columns ``>=`` the row's value when it lies above the
  column's median, else ``<=``. ``univariate``: ``<=`` the minimum, ``>=`` the maximum,
  and equality with values that occur once. Success: the predicate matches exactly one
  of the original rows. The control is the share of the same predicates that single out
  one held-out patient. Both kinds are reported (extra key ``mode``); multivariate is
  the main one (Anonymeter's default).
- ``linkability`` (A1). The attacker holds two tables about the same patients that
  share no column: the demographic columns and the clinical ones. For each target, the
  nearest released row on each half; the two halves are linked when they point to the
  same row (:data:`LINK_NEIGHBOURS` nearest rows each, ties broken at random). The
  baseline is two random rows.
- ``attribute_inference`` (A1). The attacker knows the target's quasi-identifiers
  (:data:`AUX_QIS` present in the release) and guesses a secret column
  (:data:`SECRETS`) from the nearest released row: exact for categorical or 0/1 columns,
  within :data:`TOLERANCE` of the true value for continuous ones. The baseline is a
  value drawn from the release's own column.
- ``distance_to_closest_record`` (A0, diagnostic only): the share of original targets
  closer to the release than the median held-out patient. It does not bound risk
  (releases that pass distance tests can still leak membership) and stays out of the
  headline and flags.
- ``membership_inference`` (A0): the score is minus the distance to the closest released
  row; members are original targets, non-members held-out patients, as many of each.
  Reported as for models (:mod:`pets.leakage.membership`): AUC, advantage, TPR at FPR
  1e-2 and 1e-3 and the smallest resolvable FPR; ``success_rate`` is the balanced
  accuracy of a threshold chosen on one half of the targets and applied to the other
  (both ways round), baseline one half, residual risk ``2 * rate - 1``.

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

Distances are Gower-like: numeric columns scaled by their public ranges
(:func:`pets.tasks.public_ranges`, else the release's own range) and compared by absolute
difference, categorical columns 0 when equal and 1 otherwise, summed over columns.

Generalised cells. Only the card's release columns found in both the release and the
original rows are used. The attacker reads every target in the release's own coding:

- a numeric column that holds whole numbers in the original data but not in the release
  (band middles such as 3.5, or a regular grid coarser than one that misses most
  original values, as ``sdc-kanon`` publishes) is read as bands centred on the released
  values: a target's value is replaced by the released value nearest to it, if within
  half the grid step (the step is the grid's, so a value in a band the release does not
  show at all may be read into a neighbouring one);
- a categorical column with exactly one released value outside the original categories
  (``Not White``, ``Any``) is read as that value standing for every original category
  the release does not show; with more such values the column is left out;
- a numeric column released as text bands (``"40-49"``, ``"85+"``) is read as those
  bands, a target matching the band holding its value; a column with text that does
  not parse is left out.

Results hold rates, counts, column names and distances summed over many patients, never
a patient's values.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import gammaln

from pets.leakage._base import (
    AttackContext,
    AttackResult,
    balanced_targets,
    not_applicable,
    rate_result,
)
from pets.leakage.membership import balanced_halves, cross_fitted_hits, roc_figures
from pets.leakage.rates import Rate, residual_risk
from pets.tasks import ReleaseOutput, public_ranges

__all__ = [
    "AUX_QIS",
    "DEMOGRAPHICS",
    "LINK_NEIGHBOURS",
    "MIN_TARGETS",
    "PREDICATE_COLUMNS",
    "SECRETS",
    "TOLERANCE",
    "AttackerView",
    "attack",
    "attacker_view",
    "control_rate_at_size",
    "gower_distances",
    "nearest_rows",
]

SINGLING_OUT = "singling_out"
LINKABILITY = "linkability"
INFERENCE = "attribute_inference"
DCR = "distance_to_closest_record"
MEMBERSHIP = "membership_inference"

#: Columns the linkability attacker's first table holds; the second holds the rest.
DEMOGRAPHICS = (
    "age",
    "year_of_birth",
    "age_band",
    "sex",
    "ethnicity",
    "deprivation_decile",
    "postcode_district",
    "nation",
)

#: Quasi-identifiers the attribute-inference attacker knows of its targets.
AUX_QIS = ("age", "sex", "ethnicity", "deprivation_decile", "postcode_district")

#: Secret columns the attribute-inference attacker guesses, when released.
SECRETS = ("t2_diabetes", "hba1c")

#: Columns in a multivariate singling-out predicate.
PREDICATE_COLUMNS = 4

#: Nearest released rows per half in the linkability attack.
LINK_NEIGHBOURS = 1

#: Relative tolerance of a correct guess of a continuous secret.
TOLERANCE = 0.05

#: Fewest targets on each side for the attacks on targets (all but singling out).
MIN_TARGETS = 10

#: Candidate predicates tried per predicate wanted, at most.
MAX_ATTEMPTS_PER_PREDICATE = 200

_CHUNK_ELEMENTS = 4_000_000
_BAND = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:-|\u2013|to)\s*(-?\d+(?:\.\d+)?)\s*$")
_OPEN_BAND = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*\+\s*$")
_NUMBER = re.compile(r"^\s*-?\d+(?:\.\d+)?\s*$")
_WILDCARDS = {"", "*", "any", "all"}


@dataclass
class AttackerView:
    """The release, the original rows and the held-out rows in the release's coding.

    Parameters
    ----------
    columns : list of str
        Columns compared (release columns found in the release and the original rows).
    numeric : numpy.ndarray
        Per column, True when compared by scaled absolute difference, False when
        categorical (0/1 mismatch).
    release, original, control : numpy.ndarray
        Rows by columns, float64: numeric columns in their own units (generalised
        values replaced by the released band's value), categorical columns as integer
        codes shared by the three arrays; NaN where missing.
    low, width : numpy.ndarray
        Per column, the scaling of numeric columns: ``(x - low) / width`` clipped to
        [0, 1].
    generalised : list of str
        How generalised columns are read, one line per column.
    left_out : list of str
        Columns not used, with the reason.
    """

    columns: list[str]
    numeric: np.ndarray
    release: np.ndarray
    original: np.ndarray
    control: np.ndarray
    low: np.ndarray
    width: np.ndarray
    generalised: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)

    def scaled(self, rows: np.ndarray, columns: Sequence[int] | None = None) -> np.ndarray:
        """Return ``rows`` (of this view) with numeric columns scaled to [0, 1]."""
        cols = np.arange(len(self.columns)) if columns is None else np.asarray(columns)
        out = np.array(rows[:, cols], dtype=np.float64, copy=True)
        num = self.numeric[cols]
        out[:, num] = np.clip((out[:, num] - self.low[cols][num]) / self.width[cols][num], 0, 1)
        return out


def attack(context: AttackContext) -> list[AttackResult]:
    """Attack the released table of a ``release`` task.

    Parameters
    ----------
    context : AttackContext
        The cell. Singling out, distance to closest record and membership inference run
        for attacker model A0; linkability and attribute inference for A1.

    Returns
    -------
    list of AttackResult
        Empty for other task kinds; not-applicable results when there is no table or no
        held-out rows.
    """
    problem = context.problem
    task = problem.task
    if task.kind != "release":
        return []
    wanted = [(n, "A0") for n in (SINGLING_OUT, DCR, MEMBERSHIP) if context.applies("A0")]
    wanted += [(n, "A1") for n in (LINKABILITY, INFERENCE) if context.applies("A1")]
    if not wanted:
        return []
    observer = task.recipient

    def none_of(why: str) -> list[AttackResult]:
        return [not_applicable(name, model, observer, why) for name, model in wanted]

    table = _released_table(context)
    if table is None or len(table) == 0:
        return none_of("the recipient received no released table")
    frames = [f for f in problem.party_data.values() if isinstance(f, pd.DataFrame)]
    control = problem.evaluation.get("holdout")
    if len(frames) != 1 or control is None or len(control) < 2:
        return none_of("no custodian rows or no held-out rows to compare with")
    original = frames[0]
    start = time.perf_counter()
    view = attacker_view(table, original, control, list(task.params["columns"]))
    coding = time.perf_counter() - start
    if not view.columns:
        return none_of("no release column is comparable with the original rows")

    rng = context.rng
    effort = context.effort
    n_targets = min(effort.attacks, len(view.control), len(view.original))
    members = rng.choice(len(view.original), n_targets, replace=False)
    others = rng.choice(len(view.control), n_targets, replace=False)
    common = {
        "columns": list(view.columns),
        "released_rows": len(view.release),
        "original_rows": len(view.original),
        "control_rows": len(view.control),
    }
    if view.generalised:
        common["generalised"] = list(view.generalised)
    if view.left_out:
        common["left_out"] = list(view.left_out)

    results: list[AttackResult] = []
    few = n_targets < MIN_TARGETS
    why = f"fewer than {MIN_TARGETS} original or held-out patients to attack"
    if context.applies("A0"):
        start = time.perf_counter()
        ranks = _rank_codes(view)
        coding += time.perf_counter() - start
        for mode in ("multivariate", "univariate"):
            found = _singling_out(view, ranks, mode, effort.attacks, rng, observer, common)
            found.cost_s += coding / 2  # the shared coding, booked to singling out
            results.append(found)
        if few:
            results += [not_applicable(n, "A0", observer, why) for n in (DCR, MEMBERSHIP)]
        else:
            results += _distance_attacks(view, members, others, rng, observer, common)
    if context.applies("A1"):
        if few:
            results += [not_applicable(n, "A1", observer, why) for n in (LINKABILITY, INFERENCE)]
        else:
            results.append(_linkability(view, members, others, rng, observer, common))
            results += _inference(view, members, others, rng, observer, common)
    return results


# --------------------------------------------------------------------------------------
# The attacker's view: columns in the release's coding
# --------------------------------------------------------------------------------------


def attacker_view(
    release: pd.DataFrame,
    original: pd.DataFrame,
    control: pd.DataFrame,
    columns: Sequence[str],
) -> AttackerView:
    """Put the release, the original rows and the control rows in the release's coding.

    Parameters
    ----------
    release : DataFrame
        The released table.
    original, control : DataFrame
        The custodian's rows and the held-out rows.
    columns : sequence of str
        The task's release columns; those missing from the release or the original rows
        are left out.

    Returns
    -------
    AttackerView
        See the module docstring for how generalised columns are read.
    """
    ranges = public_ranges()
    names: list[str] = []
    numeric: list[bool] = []
    coded: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    lows: list[float] = []
    widths: list[float] = []
    generalised: list[str] = []
    left_out: list[str] = []
    for column in columns:
        if column not in release.columns or column not in original.columns:
            left_out.append(f"{column}: not in the release")
            continue
        rel, ori, ctl = release[column], original[column], control[column]
        if _is_number(ori) and _is_number(rel):
            r, o, c = _as_float(rel), _as_float(ori), _as_float(ctl)
            if pd.api.types.is_integer_dtype(ori.dtype) or pd.api.types.is_bool_dtype(ori.dtype):
                banded = _numeric_bands(r, o)
                if banded is not None:
                    step, read = banded
                    o, c = read(o), read(c)
                    generalised.append(
                        f"{column}: bands of width {step:g} read from the released values"
                        if math.isfinite(step)
                        else f"{column}: one released value standing for every value"
                    )
            lo, hi = ranges.get(column, (np.nanmin(r), np.nanmax(r)))
            names.append(column)
            numeric.append(True)
            coded.append((r, o, c))
            lows.append(float(lo))
            widths.append(float(hi - lo) if hi > lo else 1.0)
        elif _is_number(ori):
            bands = _text_bands(rel)
            if bands is None:
                left_out.append(f"{column}: released as text that is not a band")
                continue
            r, read = bands
            o, c = read(_as_float(ori)), read(_as_float(ctl))
            generalised.append(f"{column}: text bands, a value matching the band holding it")
            lo, hi = ranges.get(column, (np.nanmin(r), np.nanmax(r)))
            names.append(column)
            numeric.append(True)
            coded.append((r, o, c))
            lows.append(float(lo))
            widths.append(float(hi - lo) if hi > lo else 1.0)
        else:
            merged = _categories(rel, ori, ctl)
            if merged is None:
                left_out.append(f"{column}: several released values outside the categories")
                continue
            (r, o, c), note = merged
            if note:
                generalised.append(f"{column}: {note}")
            names.append(column)
            numeric.append(False)
            coded.append((r, o, c))
            lows.append(0.0)
            widths.append(1.0)
    if not names:
        empty = np.empty((0, 0))
        return AttackerView([], np.zeros(0, bool), empty, empty, empty, np.zeros(0), np.ones(0))
    stack = [np.column_stack([cols[i] for cols in coded]) for i in range(3)]
    return AttackerView(
        columns=names,
        numeric=np.array(numeric, bool),
        release=stack[0],
        original=stack[1],
        control=stack[2],
        low=np.array(lows),
        width=np.array(widths),
        generalised=generalised,
        left_out=left_out,
    )


def _released_table(context: AttackContext) -> pd.DataFrame | None:
    if isinstance(context.output, ReleaseOutput):
        return context.output.table
    recipient = context.problem.task.recipient
    for party, _, value in reversed(context.session.reveals):
        if party == recipient and isinstance(value, ReleaseOutput):
            return value.table
    return None


def _is_number(series: pd.Series) -> bool:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return False
    return bool(
        pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_datetime64_any_dtype(dtype)
    )


def _as_float(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        days = series.to_numpy(dtype="datetime64[ns]").astype(np.int64) / 86_400e9
        return np.where(series.isna().to_numpy(), np.nan, days)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)


def _numeric_bands(released: np.ndarray, original: np.ndarray) -> tuple[float, Any] | None:
    """Detect a whole-number column released as bands; return (step, reader) or None.

    The released values are read as the middles of equal bands when they are not whole
    numbers (but lie on a grid of halves), or when they lie on a grid coarser than one
    and fewer than half the original values are among them; a lone value that is not a
    whole number stands for every value.
    """
    values = np.unique(released[np.isfinite(released)])
    if values.size == 0:
        return None
    whole = bool(np.all(values == np.round(values)))
    if values.size == 1:
        if whole:
            return None
        only = values[0]
        return math.inf, lambda x: np.where(np.isfinite(x), only, np.nan)
    doubled = np.round(2 * values).astype(np.int64)
    if not np.allclose(doubled, 2 * values):
        return None  # not a grid of halves: leave the column as it is
    step = float(np.gcd.reduce(np.diff(doubled))) / 2
    if whole:
        known = original[np.isfinite(original)]
        if step <= 1 or known.size == 0 or np.isin(known, values).mean() >= 0.5:
            return None

    def read(x: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(values, x), 1, values.size - 1)
        left, right = values[pos - 1], values[pos]
        near = np.where(np.abs(x - left) <= np.abs(right - x), left, right)
        return np.where(np.abs(x - near) <= step / 2, near, np.nan)

    return step, read


def _text_bands(released: pd.Series) -> tuple[np.ndarray, Any] | None:
    """Parse a numeric column released as text bands; return (released values, reader)."""
    labels = released.astype(object).where(released.notna(), None)
    bands: dict[Any, tuple[float, float]] = {}
    for value in pd.unique(labels):
        if value is None:
            continue
        if isinstance(value, pd.Interval):
            bands[value] = (float(value.left), float(value.right))
            continue
        text = str(value)
        if text.strip().lower() in _WILDCARDS:
            bands[value] = (-math.inf, math.inf)
        elif m := _BAND.match(text):
            bands[value] = (float(m.group(1)), float(m.group(2)))
        elif m := _OPEN_BAND.match(text):
            bands[value] = (float(m.group(1)), math.inf)
        elif _NUMBER.match(text):
            bands[value] = (float(text), float(text))
        else:
            return None
    if not bands:
        return None

    def centre(lo: float, hi: float) -> float:
        if math.isinf(lo) and math.isinf(hi):
            return 0.0
        if math.isinf(hi):
            return lo
        if math.isinf(lo):
            return hi
        return (lo + hi) / 2

    keys = list(bands)
    centres = np.array([centre(*bands[k]) for k in keys])
    lows = np.array([bands[k][0] for k in keys])
    highs = np.array([bands[k][1] for k in keys])
    index = {k: i for i, k in enumerate(keys)}
    rel = np.array([np.nan if v is None else centres[index[v]] for v in labels])

    def read(x: np.ndarray) -> np.ndarray:
        inside = (x[:, None] >= lows[None, :]) & (x[:, None] <= highs[None, :])
        first = np.argmax(inside, axis=1)
        return np.where(inside.any(axis=1), centres[first], np.nan)

    return rel, read


def _categories(
    rel: pd.Series, ori: pd.Series, ctl: pd.Series
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], str] | None:
    """Code a categorical column; merge the categories a generalised release hides."""
    r = rel.astype(str).to_numpy()
    o = ori.astype(str).to_numpy()
    c = ctl.astype(str).to_numpy()
    domain = set(o) | set(c)
    if isinstance(ori.dtype, pd.CategoricalDtype):
        domain |= {str(v) for v in ori.cat.categories}
    shown = set(r)
    outside = shown - domain
    note = ""
    if outside:
        if len(outside) > 1:
            return None
        (merged,) = outside
        hidden = sorted(domain - shown)
        mapping = {v: (v if v in shown else merged) for v in domain}
        o = np.array([mapping[v] for v in o])
        c = np.array([mapping[v] for v in c])
        note = f"{len(hidden)} categories read as the released value standing for them"
    vocabulary = {v: i for i, v in enumerate(sorted(set(r) | set(o) | set(c)))}

    def codes(a: np.ndarray) -> np.ndarray:
        return np.array([vocabulary[v] for v in a], dtype=np.float64)

    return (codes(r), codes(o), codes(c)), note


# --------------------------------------------------------------------------------------
# Distances
# --------------------------------------------------------------------------------------


def gower_distances(queries: np.ndarray, rows: np.ndarray, numeric: np.ndarray) -> np.ndarray:
    """Return the Gower-like distances between every query and every row.

    Parameters
    ----------
    queries, rows : numpy.ndarray
        Scaled rows (numeric columns in [0, 1], categorical columns as codes).
    numeric : numpy.ndarray
        Per column, True for numeric (absolute difference), False for categorical
        (0 when equal, 1 otherwise). A missing value is at distance 1 from anything
        but another missing value.

    Returns
    -------
    numpy.ndarray
        ``len(queries)`` by ``len(rows)``, the sum over columns.
    """
    out = np.zeros((len(queries), len(rows)))
    for j in range(queries.shape[1]):
        q, r = queries[:, j, None], rows[None, :, j]
        if numeric[j]:
            d = np.abs(q - r)
            both = np.isnan(q) & np.isnan(r)
            out += np.where(both, 0.0, np.nan_to_num(d, nan=1.0))
        else:
            out += q != r
    return out


def nearest_rows(
    queries: np.ndarray,
    rows: np.ndarray,
    numeric: np.ndarray,
    *,
    k: int = 1,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``k`` nearest ``rows`` of each query and their distances.

    Parameters
    ----------
    queries, rows, numeric
        As for :func:`gower_distances`.
    k : int
        Neighbours per query.
    rng : numpy.random.Generator, optional
        Breaks ties at random; without it the first row wins.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Indices and distances, each ``len(queries)`` by ``k``, nearest first.
    """
    k = min(k, len(rows))
    chunk = max(1, _CHUNK_ELEMENTS // max(1, len(rows)))
    index = np.empty((len(queries), k), np.int64)
    dist = np.empty((len(queries), k))
    for s in range(0, len(queries), chunk):
        d = gower_distances(queries[s : s + chunk], rows, numeric)
        keyed = d if rng is None else d + rng.random(d.shape) * 1e-9
        if k == 1:
            near = np.argmin(keyed, axis=1)[:, None]
        else:
            part = np.argpartition(keyed, k - 1, axis=1)[:, :k]
            order = np.argsort(np.take_along_axis(keyed, part, axis=1), axis=1)
            near = np.take_along_axis(part, order, axis=1)
        index[s : s + chunk] = near
        dist[s : s + chunk] = np.take_along_axis(d, near, axis=1)
    return index, dist


# --------------------------------------------------------------------------------------
# Singling out
# --------------------------------------------------------------------------------------


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


def _rank_codes(view: AttackerView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _singling_out(
    view: AttackerView,
    ranks: tuple[np.ndarray, np.ndarray, np.ndarray],
    mode: str,
    wanted: int,
    rng: np.random.Generator,
    observer: str,
    common: dict[str, Any],
) -> AttackResult:
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


# --------------------------------------------------------------------------------------
# Linkability and attribute inference (A1)
# --------------------------------------------------------------------------------------


def _linkability(
    view: AttackerView,
    members: np.ndarray,
    others: np.ndarray,
    rng: np.random.Generator,
    observer: str,
    common: dict[str, Any],
) -> AttackResult:
    start = time.perf_counter()
    first = [j for j, c in enumerate(view.columns) if c in DEMOGRAPHICS]
    second = [j for j, c in enumerate(view.columns) if c not in DEMOGRAPHICS]
    if not first or not second:
        half = len(view.columns) // 2
        first, second = list(range(half)), list(range(half, len(view.columns)))
    if not first or not second:
        return not_applicable(
            LINKABILITY, "A1", observer, "one release column cannot be split in two halves"
        )
    k = LINK_NEIGHBOURS

    def links(rows: np.ndarray) -> int:
        found = []
        for half in (first, second):
            released = view.scaled(view.release, half)
            idx, _ = nearest_rows(
                view.scaled(rows, half), released, view.numeric[half], k=k, rng=rng
            )
            found.append(idx)
        a, b = found
        return int(sum(bool(set(x) & set(y)) for x, y in zip(a, b, strict=True)))

    baseline = _random_link_rate(len(view.release), k)
    successes = links(view.original[members])
    control = links(view.control[others]) / len(others)
    names = [view.columns[j] for j in first], [view.columns[j] for j in second]
    note = (
        f"the two halves of a target ({', '.join(names[0])} | {', '.join(names[1])}) "
        f"point to the same released row ({k} nearest each); control: held-out patients"
    )
    return rate_result(
        LINKABILITY,
        "A1",
        observer,
        successes=successes,
        trials=len(members),
        baseline=baseline,
        control=control,
        cost_s=time.perf_counter() - start,
        note=note,
        **{"neighbours": k, "halves": [list(names[0]), list(names[1])], **common},
    )


def _random_link_rate(rows: int, k: int) -> float:
    """Chance that two random sets of ``k`` rows out of ``rows`` share one:
    ``1 - C(rows - k, k) / C(rows, k)``."""
    k = min(k, rows)
    if rows < 2 * k:
        return 1.0
    log_apart = 2 * gammaln(rows - k + 1) - gammaln(rows + 1) - gammaln(rows - 2 * k + 1)
    return float(1.0 - math.exp(log_apart))


def _inference(
    view: AttackerView,
    members: np.ndarray,
    others: np.ndarray,
    rng: np.random.Generator,
    observer: str,
    common: dict[str, Any],
) -> list[AttackResult]:
    aux = [j for j, c in enumerate(view.columns) if c in AUX_QIS]
    if not aux:
        why = "the release holds none of the quasi-identifiers"
        return [not_applicable(INFERENCE, "A1", observer, why)]
    secrets = [view.columns.index(c) for c in SECRETS if c in view.columns and c not in AUX_QIS]
    if not secrets:
        secrets = [j for j in range(len(view.columns)) if j not in aux][:1]
    if not secrets:
        return [not_applicable(INFERENCE, "A1", observer, "no column left to infer")]
    released = view.scaled(view.release, aux)
    known = [view.columns[j] for j in aux]
    results = []
    for s in secrets:
        start = time.perf_counter()
        column = view.columns[s]
        continuous = bool(view.numeric[s]) and not _whole_numbers(view.release[:, s])
        targets, balanced = _inference_targets(view, s, members, others, rng)
        if targets is None:
            why = f"too few patients with and without {column} to balance the targets"
            results.append(not_applicable(INFERENCE, "A1", observer, why))
            continue
        hits = []
        for rows in (view.original[targets[0]], view.control[targets[1]]):
            idx, _ = nearest_rows(view.scaled(rows, aux), released, view.numeric[aux], rng=rng)
            guess = view.release[idx[:, 0], s]
            hits.append(int(np.sum(_guessed(guess, rows[:, s], continuous))))
        truth = view.original[targets[0], s]
        draws = view.release[rng.integers(0, len(view.release), len(truth)), s]
        baseline = float(np.mean(_guessed(draws, truth, continuous)))
        how = f"within {TOLERANCE:.0%}" if continuous else "exactly"
        note = (
            f"{column} guessed {how} from the released row nearest on {', '.join(known)}"
            f"{'; targets half with it, half without' if balanced else ''}; control: "
            "held-out patients; baseline: a value drawn from the release"
        )
        results.append(
            rate_result(
                INFERENCE,
                "A1",
                observer,
                successes=hits[0],
                trials=len(truth),
                baseline=baseline,
                control=hits[1] / len(targets[1]),
                cost_s=time.perf_counter() - start,
                note=note,
                **{
                    "secret": column,
                    "known": known,
                    "continuous": continuous,
                    "balanced_targets": balanced,
                    **common,
                },
            )
        )
    return results


def _inference_targets(
    view: AttackerView,
    secret: int,
    members: np.ndarray,
    others: np.ndarray,
    rng: np.random.Generator,
) -> tuple[tuple[np.ndarray, np.ndarray] | None, bool]:
    """Targets for guessing column ``secret``: for a 0/1 secret, as many original and
    held-out patients with it as without (so that a guess from any marginal scores one
    half and the control rate stays away from one, where the residual risk would
    magnify noise), each side as many as it has; otherwise the shared random targets."""
    ori, ctl = view.original[:, secret], view.control[:, secret]
    is_flag = bool(view.numeric[secret]) and set(np.unique(ori[np.isfinite(ori)])) <= {0.0, 1.0}
    if not is_flag:
        return (members, others), False
    picked = []
    for values in (ori, ctl):
        count = min(len(members), 2 * int(np.sum(values == 1)), 2 * int(np.sum(values == 0)))
        if count < 20:
            return None, True
        picked.append(balanced_targets(values, count, rng))
    return (picked[0], picked[1]), True


def _guessed(guess: np.ndarray, truth: np.ndarray, continuous: bool) -> np.ndarray:
    """Whether each guess is right: within :data:`TOLERANCE` of the truth for a
    continuous secret, equal otherwise."""
    if continuous:
        return np.abs(guess - truth) <= TOLERANCE * np.abs(truth)
    return guess == truth


def _whole_numbers(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return bool(np.all(finite == np.round(finite)))


# --------------------------------------------------------------------------------------
# Distance to closest record (diagnostic) and membership inference (A0)
# --------------------------------------------------------------------------------------


def _distance_attacks(
    view: AttackerView,
    members: np.ndarray,
    others: np.ndarray,
    rng: np.random.Generator,
    observer: str,
    common: dict[str, Any],
) -> list[AttackResult]:
    start = time.perf_counter()
    released = view.scaled(view.release)
    d = len(view.columns)
    _, near_in = nearest_rows(view.scaled(view.original[members]), released, view.numeric)
    _, near_out = nearest_rows(view.scaled(view.control[others]), released, view.numeric)
    dcr_in, dcr_out = near_in[:, 0] / d, near_out[:, 0] / d
    shared = time.perf_counter() - start  # booked to the membership attack

    start = time.perf_counter()
    median_out = float(np.median(dcr_out))
    closer = int(np.sum(dcr_in < median_out))
    low, high = Rate(closer, len(dcr_in)).interval
    dcr = AttackResult(
        attack=DCR,
        attacker="A0",
        observer=observer,
        success_rate=closer / len(dcr_in),
        ci_low=low,
        ci_high=high,
        baseline=0.5,
        trials=len(dcr_in),
        cost_s=time.perf_counter() - start,
        diagnostic=True,
        note=(
            "diagnostic, does not bound risk: share of original targets closer to the "
            "release than the median held-out patient (distance per column)"
        ),
        extra={
            "median_distance_members": float(np.median(dcr_in)),
            "median_distance_non_members": median_out,
            "exact_copies_members": float(np.mean(dcr_in == 0)),
            "exact_copies_non_members": float(np.mean(dcr_out == 0)),
            **common,
        },
    )

    start = time.perf_counter()
    scores = -np.concatenate([dcr_in, dcr_out])
    is_member = np.concatenate([np.ones(len(dcr_in), bool), np.zeros(len(dcr_out), bool)])
    successes = cross_fitted_hits(scores, is_member, balanced_halves(is_member, rng))
    membership = rate_result(
        MEMBERSHIP,
        "A0",
        observer,
        successes=successes,
        trials=len(scores),
        baseline=0.5,
        control=None,
        cost_s=shared + time.perf_counter() - start,
        note=(
            "score: minus the distance to the closest released row; balanced accuracy of "
            "a threshold chosen on the other half of the targets"
        ),
        **{
            "method": "distance_to_closest_record",
            "members": len(dcr_in),
            "non_members": len(dcr_out),
            **roc_figures(scores, is_member),
            **common,
        },
    )
    return [dcr, membership]


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------
