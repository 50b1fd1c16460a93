"""Audit designs for published figures: grouped aggregates and query workloads.

Every run's input is the real cell's input with a few rows left out: the canaries are
real patients of the cell, each kept in or left out by a fair coin, so every run holds
the real rows in their real order, a backend sees inputs of the real cell's size (less
the canaries left out) and of the cohort's distribution, and cannot tell an audit run
from the cell's own run by its input.

- ``aggregate``: one canary per cell of the public grid (in a random data holder that
  has rows there), at most :data:`HOLDER_SHARE` of any holder's rows. Under
  add-remove neighbours a patient moves only their own cell, so each canary is scored
  on its cell alone: each published coordinate it moves (``n`` by one, each clamped sum
  by its value), standardised so that "left out" maps to 0 and "kept" to 1, and their
  average.
- ``query``: one canary per run (kept in by a coin), chosen among the patients in the most
  queries of the card's own workload (the backend answers the whole workload, so a
  per-query epsilon is audited as the total the claim states). The score is the average
  standardised shift over every answer the canary moves, over the count queries alone,
  and per query.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from pets.tasks import answer_query, cell_grid, local_aggregate, public_ranges, select_rows

__all__ = [
    "HOLDER_SHARE",
    "MAX_CANARIES",
    "Design",
    "Trial",
    "aggregate_design",
    "custodian_rows",
    "query_design",
]

#: Most canaries per run (one per cell of the grid).
MAX_CANARIES = 400

#: Largest share of a holder's rows used as canaries in one run.
HOLDER_SHARE = 0.1


@dataclass
class Trial:
    """One run of the mechanism: its input, its canaries' coins, how to score it."""

    problem: Any
    coins: np.ndarray
    score: Callable[[Any], np.ndarray]  # output -> (canaries, statistics)


@dataclass
class Design:
    """How an audit draws its runs.

    Attributes
    ----------
    draw : callable
        ``draw(rng, index) -> Trial``: the run of position ``index``.
    statistics : list of str
        Names of the score columns.
    canaries_per_run : int
        Canaries in each run (an upper bound for aggregates).
    guess_statistics : int
        The leading score columns canary guessing tries (each costs a Bonferroni
        share); the threshold test tries them all.
    midpoint : float or None
        Where "out" turns into "in" on the score scale; None takes, per column, halfway
        between the quartiles of all runs' scores (a function of the outputs alone).
    extra : dict
        What the record says about the design.
    """

    draw: Callable[[np.random.Generator, int], Trial]
    statistics: list[str]
    canaries_per_run: int
    extra: dict[str, Any]
    guess_statistics: int = 1
    midpoint: float | None = 0.5


def _clamped(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    ranges = public_ranges()
    return frame.assign(
        **{
            c: frame[c].astype(np.float64).clip(*ranges[c])
            if c in ranges
            else frame[c].astype(np.float64)
            for c in columns
        }
    )


def aggregate_design(problem: Any, *, single: bool) -> Design | str:
    """Canaries for a grouped aggregate, one per cell (one per run if ``single``)."""
    task = problem.task
    group_by = list(task.params["group_by"])
    columns = sorted({m["column"] for m in task.params["measures"]})
    stats = {m["column"]: m["stat"] for m in task.params["measures"]}
    holders = [n for n in task.parties_with_role("data_holder") if n in problem.party_data]
    frames = {n: problem.party_data[n] for n in holders}
    if not holders or not any(len(f) for f in frames.values()):
        return "no data holder holds rows"
    grid = cell_grid(task)
    # each row's cell (position on the grid) and its own contribution to every coordinate
    cells, contributions = {}, {}
    for n, frame in frames.items():
        keys = (
            pd.MultiIndex.from_frame(frame[group_by]) if len(group_by) > 1 else frame[group_by[0]]
        )
        cells[n] = grid.get_indexer(keys)
        own = _clamped(frame, columns)
        contributions[n] = np.column_stack(
            [np.ones(len(frame))] + [own[c].to_numpy(np.float64) for c in columns]
        )
    names = ["n"] + [f"{c}_sum" for c in columns]
    pooled = sum(local_aggregate(_clamped(frames[n], columns), task) for n in holders)
    truth = pooled[names].to_numpy(np.float64)
    limit = {n: max(1, int(HOLDER_SHARE * len(frames[n]))) for n in holders}

    rows = [(n, i) for n in holders for i in range(len(frames[n])) if cells[n][i] >= 0]

    def draw(rng: np.random.Generator, index: int) -> Trial:
        picks = rng.permutation(len(rows))
        taken: dict[int, tuple[str, int]] = {}
        used = dict.fromkeys(holders, 0)
        wanted = 1 if single else MAX_CANARIES
        for p in picks:
            n, i = rows[p]
            cell = int(cells[n][i])
            if cell in taken or used[n] >= limit[n]:
                continue
            taken[cell] = (n, i)
            used[n] += 1
            if len(taken) >= wanted:
                break
        canary_cells = np.array(sorted(taken))
        owners = [taken[c] for c in canary_cells]
        coins = rng.random(len(canary_cells)) < 0.5
        data = dict(problem.party_data)
        for n in holders:
            out = [i for (m, i), coin in zip(owners, coins, strict=True) if m == n and not coin]
            if out:
                data[n] = frames[n].drop(frames[n].index[out]).reset_index(drop=True)
        shift = np.array([contributions[n][i] for n, i in owners])
        base = truth[canary_cells] - shift  # every canary's cell without the canary

        def score(output: Any) -> np.ndarray:
            table = getattr(output, "table", None)
            if table is None:
                return np.full((len(canary_cells), 2), np.nan)
            table = table.reindex(grid)
            n_out = table["n"].to_numpy(np.float64)[canary_cells]
            coords = [n_out]
            for c in columns:
                stat = stats.get(c, "sum")
                if stat == "mean":
                    value = n_out * table[f"{c}_mean"].to_numpy(np.float64)[canary_cells]
                else:
                    value = table[f"{c}_{stat}"].to_numpy(np.float64)[canary_cells]
                coords.append(value)
            out = np.column_stack(coords)
            moved = np.abs(shift) > 1e-12
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.where(moved, (out - base) / np.where(moved, shift, 1.0), np.nan)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a cell with no output
                return np.column_stack([z[:, 0], np.nanmean(z, axis=1)])

        return Trial(replace(problem, party_data=data), coins, score)

    return Design(
        draw=draw,
        statistics=["n", "mean_standardised"],
        canaries_per_run=1 if single else min(MAX_CANARIES, len(grid)),
        guess_statistics=2,
        extra={"canary_choice": "real rows of the cell, one per grid cell, left out by a coin"},
    )


def custodian_rows(problem: Any, audit: str) -> tuple[str, pd.DataFrame] | str:
    """The one custodian and its rows (index reset), or why the ``audit`` cannot run."""
    frames = [(n, f) for n, f in problem.party_data.items() if isinstance(f, pd.DataFrame)]
    if len(frames) != 1 or not len(frames[0][1]):
        return f"the {audit} audit needs one custodian holding rows"
    custodian, frame = frames[0]
    return custodian, frame.reset_index(drop=True)


def query_design(problem: Any) -> Design | str:
    """One canary per run, a patient in as many of the workload's queries as can be."""
    task = problem.task
    held = custodian_rows(problem, "query")
    if isinstance(held, str):
        return held
    custodian, frame = held
    queries = list(task.params["queries"])
    inside = np.zeros((len(frame), len(queries)), bool)
    for j, q in enumerate(queries):
        inside[select_rows(frame, q.get("filter", "")).index.to_numpy(), j] = True
    reach = inside.sum(axis=1)
    candidates = np.flatnonzero(reach == reach.max())
    counts = np.array([q["kind"] in ("count", "histogram") for q in queries])
    names = ["weighted_standardised", "counts_standardised", "mean_standardised"]
    names += [str(q["id"]) for q in queries]
    ranges = public_ranges()

    def sensitivity(query: Any, rows: int) -> float:
        """What one patient can move the answer by at most (public bounds)."""
        if query["kind"] in ("count", "histogram"):
            return 1.0
        lo, hi = ranges.get(query["column"], (-1.0, 1.0))
        if query["kind"] == "sum":
            return max(abs(lo), abs(hi)) or 1.0
        return (hi - lo) / max(1, rows)

    def draw(rng: np.random.Generator, index: int) -> Trial:
        canary = int(rng.choice(candidates))
        coin = bool(rng.random() < 0.5)
        without = frame.drop(index=canary).reset_index(drop=True)
        base = [np.atleast_1d(np.asarray(answer_query(without, q), float)) for q in queries]
        full = [np.atleast_1d(np.asarray(answer_query(frame, q), float)) for q in queries]
        shifts = [f - b for f, b in zip(full, base, strict=True)]
        moved = [np.abs(np.nan_to_num(d)) > 1e-12 for d in shifts]
        # a mechanism calibrated to each query's sensitivity has standardised noise in
        # proportion to sensitivity / shift: weight each answer by (shift / sensitivity)^2
        weight = np.zeros(len(queries))
        for j, q in enumerate(queries):
            if moved[j].any():
                rows = int(inside[:, j].sum())
                shift = float(np.abs(shifts[j][moved[j]]).mean())
                weight[j] = (shift / sensitivity(q, rows)) ** 2
        data = frame if coin else without

        def score(output: Any) -> np.ndarray:
            answers = list(getattr(output, "answers", ()))
            per_query = np.full(len(queries), np.nan)
            for j in range(len(queries)):
                value = answers[j] if j < len(answers) else None
                if value is None or not moved[j].any():
                    continue
                got = np.atleast_1d(np.asarray(value, float))
                if got.shape != base[j].shape:
                    continue
                m = moved[j]
                per_query[j] = float(np.mean((got[m] - base[j][m]) / shifts[j][m]))
            seen = np.isfinite(per_query)
            combined = [
                _weighted(per_query, np.where(seen, weight, 0.0)),
                _weighted(per_query, (seen & counts).astype(float)),
                _weighted(per_query, seen.astype(float)),
            ]
            return np.concatenate([combined, per_query])[None, :]

        return Trial(
            replace(problem, party_data={**problem.party_data, custodian: data}),
            np.array([coin]),
            score,
        )

    return Design(
        draw=draw,
        statistics=names,
        canaries_per_run=1,
        guess_statistics=3,
        extra={
            "workload_queries": len(queries),
            "queries_moved_by_canary": int(reach.max()),
            "canary_choice": "a real patient in the most queries, left out by a coin",
        },
    )


def _weighted(values: np.ndarray, weights: np.ndarray) -> float:
    """The weighted mean of the finite values (NaN when no weight is left)."""
    total = float(weights.sum())
    if total <= 0:
        return float("nan")
    return float(np.nansum(np.where(weights > 0, values, 0.0) * weights) / total)
