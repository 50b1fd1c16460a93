"""Column facts shared by the task kinds: public domains, public bounds, the encoding of
model features, and samples of distinctive private values for the transcript check."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DERIVED_FEATURES",
    "INTEGER_DOMAINS",
    "column_domain",
    "design_matrix",
    "distinctive_values",
    "public_ranges",
]

#: Public domains of integer columns used as group-by keys (not read from data).
INTEGER_DOMAINS: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {"deprivation_decile": tuple(range(1, 11))}
)

#: Binary model features derived from categorical columns: name -> (column, value).
DERIVED_FEATURES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "male": ("sex", "M"),
        "current_smoker": ("smoker", "current"),
        "ex_smoker": ("smoker", "ex"),
        "asian": ("ethnicity", "Asian"),
        "black": ("ethnicity", "Black"),
    }
)


def public_ranges() -> Mapping[str, tuple[float, float]]:
    """Return the public bounds of numeric columns of the cohort and of the real data
    sets (never data-derived)."""
    from pets.data import COLUMN_RANGES, REAL_RANGES

    return {**COLUMN_RANGES, **REAL_RANGES}


def column_domain(column: str, frames: Sequence[pd.DataFrame]) -> tuple[Any, ...]:
    """Return the public domain of a group-by column.

    Categorical columns use their declared categories and known integer columns their
    fixed range. Any other column falls back to the sorted union of the values the
    parties hold, which reveals which values occur; cards should group by
    categorical columns.
    """
    if column in INTEGER_DOMAINS:
        return INTEGER_DOMAINS[column]
    first = frames[0][column]
    if isinstance(first.dtype, pd.CategoricalDtype):
        return tuple(first.cat.categories.tolist())
    values: set[Any] = set()
    for frame in frames:
        values.update(pd.unique(frame[column]).tolist())
    return tuple(sorted(values))


def design_matrix(
    frame: pd.DataFrame,
    features: Sequence[str],
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> np.ndarray:
    """Encode model features with public scaling only.

    Parameters
    ----------
    frame : DataFrame
        Rows to encode (a party's own rows).
    features : sequence of str
        Feature names: numeric columns, 0/1 columns, or names of :data:`DERIVED_FEATURES`.
    ranges : Mapping, optional
        Public bounds; numeric columns found there are scaled to [0, 1] and clipped.
        Defaults to :func:`public_ranges`.

    Returns
    -------
    numpy.ndarray
        Float64 matrix of shape (rows, features).
    """
    ranges = public_ranges() if ranges is None else ranges
    out = np.empty((len(frame), len(features)), dtype=np.float64)
    for j, name in enumerate(features):
        if name in DERIVED_FEATURES:
            column, value = DERIVED_FEATURES[name]
            out[:, j] = (frame[column].astype(str) == value).to_numpy(dtype=np.float64)
        elif name in ranges:
            lo, hi = ranges[name]
            x = frame[name].to_numpy(dtype=np.float64)
            out[:, j] = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
        else:
            out[:, j] = frame[name].to_numpy(dtype=np.float64)
    return out


def distinctive_values(
    frame: pd.DataFrame,
    columns: Sequence[str],
    rng: np.random.Generator,
    *,
    per_column: int = 32,
    identifiers: Sequence[str] = ("nhs_number",),
) -> dict[str, np.ndarray]:
    """Sample private values distinctive enough to be searched for in bytes.

    Integer identifier columns are always sampled when present; of ``columns``, only
    floating-point columns with non-integral values are used (small integers and
    categories occur everywhere in any byte stream and prove nothing).

    Returns
    -------
    dict
        Column name to a sample array (kept in memory only, never written).
    """
    out: dict[str, np.ndarray] = {}
    candidates = [c for c in identifiers if c in frame.columns] + [
        c for c in columns if c in frame.columns and c not in identifiers
    ]
    for column in candidates:
        values = frame[column].to_numpy()
        if column not in identifiers:
            if not np.issubdtype(values.dtype, np.floating):
                continue
            values = values[np.isfinite(values) & (values != np.round(values))]
        if values.size == 0:
            continue
        take = rng.choice(values.size, size=min(per_column, values.size), replace=False)
        out[column] = values[take]
    return out
