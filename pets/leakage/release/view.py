"""The attacker's view of a release: the release, the original rows and the held-out
rows, each put in the release's own coding.

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

from pets.leakage._base import AttackContext
from pets.leakage.release.distances import nearest_rows
from pets.tasks import ReleaseOutput, public_ranges

__all__ = [
    "MIN_TARGETS",
    "AttackerView",
    "attacker_view",
    "prepare_view",
    "released_table",
    "view_summary",
]

#: Fewest targets on each side for the attacks on targets (all but singling out).
MIN_TARGETS = 10

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

    def closest_distances(
        self, members: np.ndarray, others: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the distance per column from each original row ``members`` and each
        held-out row ``others`` to its closest released row."""
        released = self.scaled(self.release)
        d = len(self.columns)
        _, near_in = nearest_rows(self.scaled(self.original[members]), released, self.numeric)
        _, near_out = nearest_rows(self.scaled(self.control[others]), released, self.numeric)
        return near_in[:, 0] / d, near_out[:, 0] / d


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


def released_table(context: AttackContext) -> pd.DataFrame | None:
    """The table the recipient received, or None."""
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


def prepare_view(context: AttackContext) -> tuple[AttackerView, float] | str:
    """Return the attacker's view of the cell's release and the seconds it took, or why
    there is none (no table, no custodian or held-out rows, no comparable column)."""
    problem = context.problem
    table = released_table(context)
    if table is None or len(table) == 0:
        return "the recipient received no released table"
    frames = [f for f in problem.party_data.values() if isinstance(f, pd.DataFrame)]
    control = problem.evaluation.get("holdout")
    if len(frames) != 1 or control is None or len(control) < 2:
        return "no custodian rows or no held-out rows to compare with"
    start = time.perf_counter()
    view = attacker_view(table, frames[0], control, list(problem.task.params["columns"]))
    coding = time.perf_counter() - start
    if not view.columns:
        return "no release column is comparable with the original rows"
    return view, coding


def view_summary(view: AttackerView) -> dict[str, Any]:
    """The facts about a view every release result carries: columns, row counts, how
    generalised columns were read and which were left out."""
    common: dict[str, Any] = {
        "columns": list(view.columns),
        "released_rows": len(view.release),
        "original_rows": len(view.original),
        "control_rows": len(view.control),
    }
    if view.generalised:
        common["generalised"] = list(view.generalised)
    if view.left_out:
        common["left_out"] = list(view.left_out)
    return common
