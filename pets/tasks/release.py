"""``release``: a custodian releases a patient-level table to researchers.

Ideal functionality (for utility): the researcher receives a table whose analysis
columns are distributed like the custodian's. Utility is measured by the harness on
every release: 1- and 2-way marginal total variation distance, correlation
difference, train-on-release / test-on-real AUC against train-on-real, and, when the
card names a query workload (``workload = "<card id>"``, a ``query`` card next to this
one), the relative error of that workload answered on the release against the same
workload answered on the custodian's rows.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pets.tasks._base import (
    Accuracy,
    CardError,
    CardTable,
    PartyRole,
    Problem,
    ScenarioData,
    Task,
    TaskKind,
    freeze,
)
from pets.tasks._columns import design_matrix, distinctive_values, public_ranges
from pets.tasks.query import answer_query, parse_workload, relative_error, workload_columns
from pets.tasks.train import fit_logistic, labels, model_params

__all__ = ["RELEASE", "ReleaseOutput", "discretise"]


@dataclass(frozen=True)
class ReleaseOutput:
    """The released table as the researcher receives it.

    Parameters
    ----------
    table : DataFrame
        Released rows; must hold the task's analysis columns (possibly synthetic).
    """

    table: pd.DataFrame


def discretise(series: pd.Series, column: str, bins: int) -> pd.Series:
    """Map a column to public categories: numeric columns with public bounds into
    ``bins`` equal-width bins, anything else as strings."""
    ranges = public_ranges()
    if column in ranges and pd.api.types.is_numeric_dtype(series):
        lo, hi = ranges[column]
        x = np.clip(series.to_numpy(dtype=np.float64), lo, hi)
        codes = np.minimum(((x - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)
        return pd.Series(codes, index=series.index).astype(str)
    return series.astype(str)


def _parse(
    raw: Mapping[str, Any], source: str, parties: Sequence[PartyRole], columns: Sequence[str]
) -> dict[str, Any]:
    table = CardTable(raw, source, "task")
    names = [p.name for p in parties]
    params = {
        "recipient": table.get("recipient", str, allowed=names),
        "columns": table.get("columns", list, allowed=columns),
        "bins": table.get("bins", int, 10),
        **model_params(table, columns),
    }
    if params["bins"] < 2:
        raise table.error("bins", f"must be at least 2, got {params['bins']}")
    workload = table.get("workload", str, "")
    params["queries"] = (
        _load_workload(workload, source, columns, params["columns"]) if workload else []
    )
    table.check_unknown()
    return params


def _load_workload(
    card_id: str, source: str, columns: Sequence[str], released: Sequence[str]
) -> list[dict[str, Any]]:
    """Read the query workload of the ``query`` card ``card_id`` found next to ``source``
    (its queries may name any of the data source's ``columns``); every column it reads
    must be one of the ``released`` columns."""
    folder = Path(source).parent
    path = folder / f"{card_id}.toml"
    if not path.is_file():
        cards = sorted(p.stem for p in folder.glob("*.toml"))
        raise CardError(
            source, "task.workload", f"no card {card_id!r} in {folder}; allowed: {', '.join(cards)}"
        )
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise CardError(str(path), "(syntax)", f"not valid TOML: {exc}") from exc
    if raw.get("kind") != "query":
        raise CardError(
            source,
            "task.workload",
            f"card {card_id!r} is a {raw.get('kind')!r} card; allowed: query",
        )
    queries = parse_workload(
        raw.get("task", {}).get("queries"), str(path), "task.queries", list(columns)
    )
    outside = [c for c in workload_columns(queries) if c not in released]
    if outside:
        raise CardError(
            source,
            "task.workload",
            f"the workload of {card_id!r} reads {outside}, which the release does not hold; "
            f"add them to task.columns",
        )
    return queries


def _build(params: Mapping[str, Any], parties: Sequence[PartyRole], data: ScenarioData) -> Problem:
    if data.holdout is None or len(data.holdout) == 0:
        raise ValueError("a release task needs held-out real rows: set data.holdout > 0")
    task = Task(
        kind="release",
        scenario="",
        parties=tuple(parties),
        recipient=params["recipient"],
        params=freeze(params),
        public=freeze({"columns": list(params["columns"])}),
    )
    ((custodian, frame),) = data.partitions.items()
    frame = frame.reset_index(drop=True)
    return Problem(
        task=task,
        party_data={custodian: frame},
        evaluation={"holdout": data.holdout.reset_index(drop=True)},
        sensitive={custodian: distinctive_values(frame, list(frame.columns), data.rng)},
    )


def _reference(problem: Problem) -> ReleaseOutput:
    (frame,) = problem.party_data.values()
    return ReleaseOutput(frame)


def _tvd(a: pd.Series, b: pd.Series) -> float:
    pa = a.value_counts(normalize=True)
    pb = b.value_counts(normalize=True)
    return float(0.5 * pa.sub(pb, fill_value=0.0).abs().sum())


def _score(output: ReleaseOutput, reference: ReleaseOutput, problem: Problem) -> Accuracy:
    params = problem.task.params
    columns = list(params["columns"])
    missing = [c for c in columns if c not in output.table.columns]
    if missing:
        raise ValueError(f"the release lacks analysis columns {missing}")
    real, rel = reference.table, output.table
    if len(rel) == 0:
        raise ValueError("the release is empty")
    d_real = {c: discretise(real[c], c, params["bins"]) for c in columns}
    d_rel = {c: discretise(rel[c], c, params["bins"]) for c in columns}
    one_way = [_tvd(d_rel[c], d_real[c]) for c in columns]
    two_way = [
        _tvd(d_rel[a] + "|" + d_rel[b], d_real[a] + "|" + d_real[b])
        for a, b in itertools.combinations(columns, 2)
    ]
    numeric_real = pd.DataFrame({c: _as_number(real[c]) for c in columns})
    numeric_rel = pd.DataFrame({c: _as_number(rel[c]) for c in columns})
    corr_diff = np.nanmean(
        np.abs(numeric_real.corr().to_numpy() - numeric_rel.corr().to_numpy())[
            np.triu_indices(len(columns), k=1)
        ]
    )
    holdout = problem.evaluation["holdout"]
    task = problem.task
    x_test, y_test = design_matrix(holdout, params["features"]), labels(holdout, task)

    from sklearn.metrics import roc_auc_score

    def auc_of(frame: pd.DataFrame) -> float:
        y = labels(frame, task)
        if np.unique(y).size < 2:
            return 0.5
        model = fit_logistic(design_matrix(frame, params["features"]), y, task)
        return float(roc_auc_score(y_test, model.predict_proba(x_test)))

    tstr, trtr = auc_of(rel), auc_of(real)
    workload: dict[str, float] = {}
    if params["queries"]:
        errors = [
            relative_error(answer_query(rel, q), answer_query(real, q), q["kind"])
            for q in params["queries"]
        ]
        workload = {
            "workload_median_relative_error": float(np.median(errors)),
            "workload_max_relative_error": float(np.max(errors)),
        }
    metrics = {
        "tvd_1way_mean": float(np.mean(one_way)),
        "tvd_1way_max": float(np.max(one_way)),
        "tvd_2way_mean": float(np.mean(two_way)) if two_way else 0.0,
        "tvd_2way_max": float(np.max(two_way)) if two_way else 0.0,
        "correlation_difference": float(corr_diff),
        "tstr_auc": tstr,
        "trtr_auc": trtr,
        "auc_shortfall": trtr - tstr,
        "released_rows": float(len(rel)),
        **workload,
    }
    return Accuracy(metrics=metrics, primary="tvd_2way_mean", higher_is_better=False)


def _as_number(series: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(series) and not isinstance(series.dtype, pd.CategoricalDtype):
        return series.astype(float)
    codes = pd.factorize(series.astype(str), sort=True)[0]
    return pd.Series(codes, index=series.index, dtype=float)


RELEASE = TaskKind(
    name="release",
    output_type=ReleaseOutput,
    parse_params=_parse,
    build=_build,
    reference=_reference,
    score=_score,
    description="a custodian releases patient-level data; utility measured on the release",
)
