"""Splitting a cohort among parties, deterministically for a given generator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pets.expressions import select_rows

__all__ = ["split_by_column", "split_catchment", "split_holdout", "split_overlap"]


def split_by_column(
    cohort: pd.DataFrame, column: str, assignment: Mapping[str, Sequence[Any]]
) -> dict[str, pd.DataFrame]:
    """Give each party the rows whose ``column`` value is in its list.

    Raises
    ------
    ValueError
        The column is missing, or a value is assigned to two parties.
    """
    if column not in cohort.columns:
        raise ValueError(f"column {column!r} is not in the cohort; columns: {list(cohort.columns)}")
    owner: dict[Any, str] = {}
    for party, values in assignment.items():
        for value in values:
            if value in owner:
                raise ValueError(
                    f"assignment: value {value!r} is given to both {owner[value]!r} and {party!r}"
                )
            owner[value] = party
    keys = (
        cohort[column].astype(object)
        if isinstance(cohort[column].dtype, pd.CategoricalDtype)
        else cohort[column]
    )
    return {
        party: cohort[keys.isin(list(values))].reset_index(drop=True)
        for party, values in assignment.items()
    }


def _practice_order(cohort: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Practices ordered by locality: district deprivation plus a little noise."""
    practices = cohort["gp_practice"].cat.codes.to_numpy()
    n_practices = len(cohort["gp_practice"].cat.categories)
    sums = np.bincount(
        practices, weights=cohort["deprivation_decile"].to_numpy(float), minlength=n_practices
    )
    counts = np.bincount(practices, minlength=n_practices)
    mean_decile = np.where(counts > 0, sums / np.maximum(counts, 1), 5.5)
    score = mean_decile + rng.normal(0, 1.0, n_practices)
    return np.argsort(score, kind="stable")


def split_catchment(
    cohort: pd.DataFrame,
    parties: Sequence[str],
    shares: Sequence[float],
    rng: np.random.Generator,
) -> dict[str, pd.DataFrame]:
    """Split by GP practice into trusts of different size and case-mix.

    Practices are ordered by locality (their patients' deprivation, with noise) and cut
    into consecutive runs whose patient counts follow ``shares``; whole practices go to
    one trust, so trusts differ in deprivation and case-mix (a non-IID split).
    """
    if len(parties) != len(shares) or not parties:
        raise ValueError("parties and shares must be non-empty and of the same length")
    weights = np.asarray(shares, dtype=float)
    if np.any(weights <= 0):
        raise ValueError(f"shares must be positive, got {list(shares)}")
    weights /= weights.sum()
    order = _practice_order(cohort, rng)
    codes = cohort["gp_practice"].cat.codes.to_numpy()
    counts = np.bincount(codes, minlength=order.size)[order]
    cumulative = np.cumsum(counts) / max(counts.sum(), 1)
    bounds = np.cumsum(weights)
    trust_of_rank = np.minimum(
        np.searchsorted(bounds, cumulative - 1e-12, side="left"), len(parties) - 1
    )
    trust_of_practice = np.empty(order.size, dtype=np.int64)
    trust_of_practice[order] = trust_of_rank
    row_trust = trust_of_practice[codes]
    return {p: cohort[row_trust == i].reset_index(drop=True) for i, p in enumerate(parties)}


def split_overlap(
    cohort: pd.DataFrame, spec: Mapping[str, Mapping[str, Any]], rng: np.random.Generator
) -> dict[str, pd.DataFrame]:
    """Two or more parties' lists that overlap in part, for record linkage.

    Each party's entry may hold ``practice_fraction`` (the share of practices it covers:
    a prefix of one random practice order, so coverages nest and overlap), ``query``
    (a filter of :mod:`pets.expressions` applied afterwards, such as ``"cancer == 1"``) and
    ``extra_fraction`` (rows added from practices it does not cover, as a size fraction:
    patients known to it from elsewhere).
    """
    order = rng.permutation(len(cohort["gp_practice"].cat.categories))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    practice_rank = rank[cohort["gp_practice"].cat.codes.to_numpy()] / max(order.size, 1)
    out = {}
    for party, entry in spec.items():
        fraction = float(entry.get("practice_fraction", 1.0))
        if not 0 < fraction <= 1:
            raise ValueError(f"{party}.practice_fraction must be in (0, 1], got {fraction}")
        covered = practice_rank < fraction
        rows = cohort[covered]
        query = entry.get("query")
        if query:
            rows = select_rows(rows, query)
        extra = float(entry.get("extra_fraction", 0.0))
        if extra < 0:
            raise ValueError(f"{party}.extra_fraction must be >= 0, got {extra}")
        if extra > 0:
            outside = cohort[~covered]
            if query:
                outside = select_rows(outside, query)
            k = min(len(outside), round(extra * len(rows)))
            take = rng.choice(len(outside), size=k, replace=False)
            rows = pd.concat([rows, outside.iloc[np.sort(take)]])
        out[party] = rows.reset_index(drop=True)
    return out


def split_holdout(
    cohort: pd.DataFrame, fraction: float, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (rest, holdout) with a random ``fraction`` of rows held out."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    held = rng.random(len(cohort)) < fraction
    return cohort[~held].reset_index(drop=True), cohort[held].reset_index(drop=True)
