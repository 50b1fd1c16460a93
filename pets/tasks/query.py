"""``query``: a researcher asks a workload of queries of data it never sees.

Ideal functionality: the researcher learns the exact answer to each query of the
public workload, in order; a backend may refuse a query (budget spent, disclosure
rule), which is recorded as unanswered and scored as a full error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pets.expressions import filter_names, select_rows
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
from pets.tasks._columns import distinctive_values, public_ranges

__all__ = [
    "QUERY",
    "QUERY_KINDS",
    "Answer",
    "QueryOutput",
    "answer_query",
    "answers_from_wire",
    "answers_to_wire",
    "histogram_labels",
    "parse_workload",
    "relative_error",
    "withheld_reasons",
    "workload_columns",
]

QUERY_KINDS = ("count", "sum", "mean", "histogram")

#: An answer: a number, a histogram (counts aligned to :func:`histogram_labels`) or None.
Answer = float | np.ndarray | None


@dataclass(frozen=True)
class QueryOutput:
    """The researcher's answers, one per workload query, in order.

    Parameters
    ----------
    answers : tuple
        A float, a histogram array, or None for a refused query.
    refused : Mapping of int to str
        Index of each refused query to the reason given.
    """

    answers: tuple[Answer, ...]
    refused: Mapping[int, str] = field(default_factory=dict)


def histogram_labels(query: Mapping[str, Any]) -> tuple[str, ...]:
    """Return the public bin labels of a histogram query."""
    if "categories" in query:
        return tuple(query["categories"])
    return tuple(f"bin{i}" for i in range(query["bins"]))


def answers_to_wire(answers: Sequence[Answer]) -> list[Any]:
    """Query answers as JSON-ready values for a message: a number, a list for a
    histogram (a withheld bin as null), or null for a refused query."""
    out: list[Any] = []
    for answer in answers:
        if answer is None:
            out.append(None)
        elif isinstance(answer, np.ndarray | list | tuple):
            array = np.asarray(answer)
            if array.dtype.kind in "iub":
                out.append(array.tolist())
            else:
                out.append([None if np.isnan(v) else float(v) for v in array.astype(float)])
        elif isinstance(answer, np.generic):
            out.append(answer.item())
        else:
            out.append(answer)
    return out


def answers_from_wire(values: Sequence[Any]) -> tuple[Answer, ...]:
    """Reverse :func:`answers_to_wire`."""
    out: list[Answer] = []
    for value in values:
        if value is None:
            out.append(None)
        elif isinstance(value, list):
            out.append(np.array([np.nan if v is None else v for v in value], dtype=float))
        else:
            out.append(float(value))
    return tuple(out)


def answer_query(frame: pd.DataFrame, query: Mapping[str, Any]) -> float | np.ndarray:
    """Answer one workload query exactly on ``frame`` (the custodian's rows).

    Parameters
    ----------
    frame : DataFrame
        Rows to query.
    query : Mapping
        A validated query: ``kind``, optional ``filter`` (see :mod:`pets.expressions`),
        ``column`` for sums, means and histograms.
    """
    rows = select_rows(frame, query.get("filter", ""))
    kind = query["kind"]
    if kind == "count":
        return float(len(rows))
    values = rows[query["column"]]
    if kind == "sum":
        return float(values.to_numpy(dtype=float).sum())
    if kind == "mean":
        return float(values.to_numpy(dtype=float).mean()) if len(values) else float("nan")
    if "categories" in query:
        counts = values.astype(str).value_counts()
        return np.array([float(counts.get(c, 0)) for c in query["categories"]])
    lo, hi = query["range"]
    x = np.clip(values.to_numpy(dtype=float), lo, hi)
    codes = np.minimum(((x - lo) / (hi - lo) * query["bins"]).astype(np.int64), query["bins"] - 1)
    return np.bincount(codes, minlength=query["bins"]).astype(float)


def parse_workload(
    raw: Any, source: str, prefix: str, columns: Sequence[str]
) -> list[dict[str, Any]]:
    """Validate a workload: a list of query tables (``[[task.queries]]`` in a card).

    Parameters
    ----------
    raw : list
        The query tables as read from TOML.
    source : str
        The card file, for error messages.
    prefix : str
        Dotted path of the list in the card (``task.queries``).
    columns : sequence of str
        Columns a query may name.

    Returns
    -------
    list of dict
        One validated query per table, with ``id``, ``kind``, ``filter`` and, by kind,
        ``column``, ``categories`` or ``bins`` and public ``range``.
    """
    if not isinstance(raw, list) or not raw:
        raise CardError(source, prefix, "needs a list of at least one query table")
    queries = []
    seen: set[str] = set()
    ranges = public_ranges()
    for i, q in enumerate(raw):
        sub = CardTable(q, source, f"{prefix}[{i}]")
        query: dict[str, Any] = {
            "id": sub.get("id", str, f"q{i}"),
            "kind": sub.get("kind", str, allowed=QUERY_KINDS),
            "filter": sub.get_filter("filter", columns),
        }
        if query["id"] in seen:
            raise sub.error("id", f"duplicate query id {query['id']!r}")
        seen.add(query["id"])
        if query["kind"] != "count":
            query["column"] = sub.get("column", str, allowed=columns)
        if query["kind"] == "histogram":
            if "categories" in sub.raw:
                query["categories"] = [str(c) for c in sub.get("categories", list)]
            else:
                query["bins"] = sub.get("bins", int, 10)
                if query["column"] not in ranges:
                    raise sub.error(
                        "categories", "a histogram of a column without public bounds needs them"
                    )
                query["range"] = list(ranges[query["column"]])
        if query["kind"] in ("sum", "mean") and query["column"] not in ranges:
            raise sub.error(
                "column", f"{query['column']!r} has no public bounds for a {query['kind']}"
            )
        sub.check_unknown()
        queries.append(query)
    return queries


def workload_columns(queries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Return the columns a workload reads (measured columns and filter columns), in
    order of first use."""
    names: dict[str, None] = {}
    for query in queries:
        for name in filter_names(query.get("filter", "")):
            names[name] = None
        if "column" in query:
            names[query["column"]] = None
    return list(names)


def _parse(
    raw: Mapping[str, Any], source: str, parties: Sequence[PartyRole], columns: Sequence[str]
) -> dict[str, Any]:
    table = CardTable(raw, source, "task")
    names = [p.name for p in parties]
    recipient = table.get("recipient", str, allowed=names)
    queries = parse_workload(table.get("queries", list), source, "task.queries", columns)
    table.check_unknown()
    return {"recipient": recipient, "queries": queries}


def _build(params: Mapping[str, Any], parties: Sequence[PartyRole], data: ScenarioData) -> Problem:
    task = Task(
        kind="query",
        scenario="",
        parties=tuple(parties),
        recipient=params["recipient"],
        params=freeze(params),
    )
    ((custodian, frame),) = data.partitions.items()
    frame = frame.reset_index(drop=True)
    return Problem(
        task=task,
        party_data={custodian: frame},
        sensitive={custodian: distinctive_values(frame, list(frame.columns), data.rng)},
    )


def _reference(problem: Problem) -> QueryOutput:
    (frame,) = problem.party_data.values()
    return QueryOutput(tuple(answer_query(frame, q) for q in problem.task.params["queries"]))


def relative_error(got: Answer, truth: float | np.ndarray, kind: str) -> float:
    """Relative error of one answer: a refusal counts 1; a histogram's error is its
    L1 distance over the true total; a count's or sum's divides by max(|truth|, 1)."""
    if got is None:
        return 1.0
    if kind == "histogram":
        t = np.asarray(truth, dtype=float)
        g = np.asarray(got, dtype=float)
        if g.shape != t.shape:
            raise ValueError(f"histogram answer has shape {g.shape}, expected {t.shape}")
        g = np.where(np.isnan(g), 0.0, g)  # a withheld bin counts as all its patients missed
        return float(np.abs(g - t).sum() / max(t.sum(), 1.0))
    got_f, truth_f = float(got), float(truth)  # type: ignore[arg-type]
    if np.isnan(truth_f) or np.isnan(got_f):
        return 0.0 if np.isnan(got_f) and np.isnan(truth_f) else 1.0
    floor = 1e-12 if kind == "mean" else 1.0
    return abs(got_f - truth_f) / max(abs(truth_f), floor)


def _score(output: QueryOutput, reference: QueryOutput, problem: Problem) -> Accuracy:
    queries = problem.task.params["queries"]
    if len(output.answers) != len(queries):
        raise ValueError(f"expected {len(queries)} answers, got {len(output.answers)}")
    errors = [
        relative_error(got, truth, q["kind"])
        for got, truth, q in zip(output.answers, reference.answers, queries, strict=True)
    ]
    answered = [e for e, a in zip(errors, output.answers, strict=True) if a is not None]
    metrics: dict[str, float] = {
        "median_relative_error": float(np.median(errors)),
        "max_relative_error_answered": float(np.max(answered)) if answered else float("nan"),
        "fraction_answered": len(answered) / len(queries),
    }
    for q, e in zip(queries, errors, strict=True):
        metrics[f"relative_error.{q['id']}"] = e
    return Accuracy(metrics=metrics, primary="median_relative_error", higher_is_better=False)


def withheld_reasons(output: Any, problem: Problem) -> dict[str, str]:
    """What a query output's checker withheld, by query id, with the reason it gave
    (:attr:`QueryOutput.refused`); empty for other outputs. The reasons are the
    checker's own words (ACRO's failing checks, a data owner's denial), so they are
    recorded as text and never scored."""
    refused = getattr(output, "refused", None)
    if not isinstance(output, QueryOutput) or not refused:
        return {}
    queries = problem.task.params["queries"]
    return {
        str(queries[i]["id"]): str(reason)[:300]
        for i, reason in sorted(refused.items())
        if isinstance(i, int) and 0 <= i < len(queries)
    }


QUERY = TaskKind(
    name="query",
    output_type=QueryOutput,
    parse_params=_parse,
    build=_build,
    reference=_reference,
    score=_score,
    description="a workload of counts, sums, means and histograms asked of hidden data",
)
