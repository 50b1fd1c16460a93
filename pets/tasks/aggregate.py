"""``aggregate``: grouped counts, sums and means across parties.

Ideal functionality: the recipient learns, for every cell of the public grid of the
group-by columns, the pooled count ``n`` and each requested statistic over all data
holders' rows, and nothing else.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pets.tasks._base import (
    Accuracy,
    CardTable,
    PartyRole,
    Problem,
    ScenarioData,
    Task,
    TaskKind,
    freeze,
)
from pets.tasks._columns import column_domain, distinctive_values

__all__ = [
    "AGGREGATE",
    "MEAN_FLOOR",
    "STATS",
    "AggregateOutput",
    "cell_grid",
    "finish_means",
    "local_aggregate",
    "measure_name",
    "sums_from_vector",
]

STATS = ("count", "sum", "mean")

#: Relative errors divide by max(|true|, floor): 1 for counts and sums, this for means, so
#: a mean whose true value is 0 (no diabetes among children) is compared absolutely.
MEAN_FLOOR = 1e-3


@dataclass(frozen=True)
class AggregateOutput:
    """A grouped table as the recipient learns it.

    Parameters
    ----------
    table : DataFrame
        Indexed by the group-by columns (a MultiIndex over the public cell grid, or a
        subset of it); columns ``n`` and one per measure, named ``<column>_<stat>``.
        A withheld (suppressed) cell holds NaN.
    """

    table: pd.DataFrame


def measure_name(column: str, stat: str) -> str:
    """Return the output column name of a measure (``hba1c_mean``)."""
    return f"{column}_{stat}"


def cell_grid(task: Task) -> pd.MultiIndex:
    """Return the public grid of cells (every combination of the group-by domains)."""
    group_by = list(task.params["group_by"])
    domains = [task.public["domains"][c] for c in group_by]
    return pd.MultiIndex.from_tuples(list(itertools.product(*domains)), names=group_by)


def local_aggregate(frame: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Return one party's sufficient statistics per cell: ``n`` and ``<column>_sum``.

    The result is reindexed on the full public grid (empty cells are 0), so parties'
    tables can be added cell by cell. Means are formed from pooled sums afterwards with
    :func:`finish_means`.
    """
    group_by = list(task.params["group_by"])
    sum_columns = sorted({m["column"] for m in task.params["measures"]})
    # sums in float64 whatever the column's storage type, so sums are exact to ~1e-16
    columns = frame[[*group_by, *sum_columns]].astype(dict.fromkeys(sum_columns, np.float64))
    grouped = columns.groupby(group_by, observed=True)
    table = grouped[sum_columns].sum() if sum_columns else None
    counts = grouped.size().rename("n").astype(np.float64)
    out = counts.to_frame() if table is None else pd.concat([counts, table], axis=1)
    out = out.rename(columns={c: f"{c}_sum" for c in sum_columns})
    return out.reindex(cell_grid(task), fill_value=0.0)


def sums_from_vector(vector: np.ndarray, task: Task) -> pd.DataFrame:
    """Rebuild the :func:`local_aggregate` layout from its flattened values (row-major),
    as a party that decrypted a sum of flattened tables holds them."""
    grid = cell_grid(task)
    columns = ["n", *[f"{c}_sum" for c in sorted({m["column"] for m in task.params["measures"]})]]
    values = np.asarray(vector, dtype=np.float64).reshape(len(grid), len(columns))
    return pd.DataFrame(values, index=grid, columns=columns)


def finish_means(sums: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Turn pooled ``n`` and ``<column>_sum`` into the requested measures.

    Parameters
    ----------
    sums : DataFrame
        Pooled output of :func:`local_aggregate` (added across parties).
    task : Task
        The aggregate task.

    Returns
    -------
    DataFrame
        Columns ``n`` and ``<column>_<stat>`` for each measure; means of empty cells are NaN.
    """
    out = pd.DataFrame({"n": sums["n"]}, index=sums.index)
    for m in task.params["measures"]:
        col, stat = m["column"], m["stat"]
        if stat == "count":
            out[measure_name(col, stat)] = sums["n"]
        elif stat == "sum":
            out[measure_name(col, stat)] = sums[f"{col}_sum"]
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                out[measure_name(col, stat)] = sums[f"{col}_sum"] / sums["n"].where(sums["n"] > 0)
    return out


def _parse(
    raw: Mapping[str, Any], source: str, parties: Sequence[PartyRole], columns: Sequence[str]
) -> dict[str, Any]:
    table = CardTable(raw, source, "task")
    names = [p.name for p in parties]
    recipient = table.get("recipient", str, allowed=names)
    group_by = table.get("group_by", list, allowed=columns)
    measures = []
    for i, m in enumerate(table.get("measures", list)):
        sub = CardTable(m, source, f"task.measures[{i}]")
        column = sub.get("column", str, allowed=columns)
        measures.append({"column": column, "stat": sub.get("stat", str, allowed=STATS)})
        sub.check_unknown()
    if not measures:
        raise table.error("measures", "needs at least one measure")
    table.check_unknown()
    return {"recipient": recipient, "group_by": group_by, "measures": measures}


def _build(params: Mapping[str, Any], parties: Sequence[PartyRole], data: ScenarioData) -> Problem:
    frames = data.partitions
    holders = [p.name for p in parties if p.name in frames]
    domains = {c: column_domain(c, list(frames.values())) for c in params["group_by"]}
    needed = list(params["group_by"]) + sorted({m["column"] for m in params["measures"]})
    task = Task(
        kind="aggregate",
        scenario="",
        parties=tuple(parties),
        recipient=params["recipient"],
        params=freeze(params),
        public=freeze({"domains": domains, "columns": needed}),
    )
    party_data = {name: frames[name][needed].reset_index(drop=True) for name in holders}
    sensitive = {name: distinctive_values(party_data[name], needed, data.rng) for name in holders}
    return Problem(task=task, party_data=party_data, sensitive=sensitive)


def _reference(problem: Problem) -> AggregateOutput:
    task = problem.task
    pooled = pd.concat(list(problem.party_data.values()), ignore_index=True)
    return AggregateOutput(finish_means(local_aggregate(pooled, task), task))


def _score(output: AggregateOutput, reference: AggregateOutput, problem: Problem) -> Accuracy:
    truth = reference.table
    est = output.table.reindex(index=truth.index, columns=truth.columns)
    t = truth.to_numpy(dtype=float)
    e = est.to_numpy(dtype=float)
    defined = ~np.isnan(t)
    withheld = defined & np.isnan(e)
    released = defined & ~np.isnan(e)
    abs_err = np.abs(e - t)
    floors = np.array([MEAN_FLOOR if c.endswith("_mean") else 1.0 for c in truth.columns])
    rel = abs_err / np.maximum(np.abs(t), floors)
    rel_all = np.where(withheld, 1.0, rel)[defined]
    metrics: dict[str, float] = {
        "median_relative_error": _stat(np.median, rel_all),
        "max_relative_error": _stat(np.max, rel_all),
        "median_absolute_error": _stat(np.median, abs_err[released]),
        "max_absolute_error": _stat(np.max, abs_err[released]),
        "fraction_released": float(released.sum() / max(defined.sum(), 1)),
        "cells": float(len(truth)),
    }
    for j, col in enumerate(truth.columns):
        col_rel = np.where(withheld[:, j], 1.0, rel[:, j])[defined[:, j]]
        metrics[f"median_relative_error.{col}"] = _stat(np.median, col_rel)
    return Accuracy(metrics=metrics, primary="median_relative_error", higher_is_better=False)


def _stat(fn: Any, values: np.ndarray) -> float:
    return float(fn(values)) if values.size else float("nan")


AGGREGATE = TaskKind(
    name="aggregate",
    output_type=AggregateOutput,
    parse_params=_parse,
    build=_build,
    reference=_reference,
    score=_score,
    description="grouped counts, sums and means pooled across data holders",
)
