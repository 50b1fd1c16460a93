"""Statistical disclosure control: how UK Trusted Research Environments check outputs today.

- ``sdc-suppress``: small-cell suppression. A cell (or query answer) resting on fewer
  than ``threshold`` patients is withheld; with ``secondary`` on, when a group of cells
  that shares a published margin has exactly one cell withheld, the next-smallest cell
  of the group is withheld too, so the margin cannot give the first one back.
- ``sdc-round``: counts (cell counts, count queries, histogram bins) rounded to the
  nearest multiple of ``base``; sums and means are released as computed.
- ``sdc-kanon``: a k-anonymous release: direct identifiers dropped, quasi-identifiers
  (age, deprivation decile, ethnicity) generalised along a fixed ladder until every
  combination with sex is shared by at least ``k`` patients, after suppressing at most
  ``max_suppression`` of the rows.

Tables are pooled and checked by the party that publishes them (the card's aggregator,
or the custodian), as an output checker does. None of these carries a formal guarantee,
and the claims say so.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from pets.api import (
    AggregateOutput,
    Backend,
    Capabilities,
    Claim,
    PartyContext,
    PetClass,
    QueryOutput,
    SecurityModel,
    Task,
    UnsupportedTask,
)
from pets.backends.plaintext import serve_workload
from pets.backends.release import TableRelease
from pets.data.cohort import IDENTIFIERS
from pets.tasks import (
    answer_query,
    finish_means,
    local_aggregate,
    select_rows,
)
from pets.wire import pack, unpack

__all__ = [
    "SdcKanon",
    "SdcRound",
    "SdcSuppress",
    "output_checker",
    "suppress_answer",
    "suppress_cells",
]


def suppress_cells(
    counts: pd.Series, group_by: list[str], threshold: int, *, secondary: bool
) -> pd.Series:
    """Return a boolean mask of the cells to withhold.

    Parameters
    ----------
    counts : Series
        Patients per cell, indexed by the ``group_by`` levels.
    group_by : list of str
        Index level names; margins are taken over the last one.
    threshold : int
        Cells with fewer patients are withheld (primary suppression).
    secondary : bool
        Also withhold a complementary cell where a margin would reveal a lone withheld
        cell.
    """
    withheld = counts < threshold
    if not secondary or len(group_by) < 2:
        return withheld
    margin_groups = counts.groupby(level=group_by[:-1], observed=True, sort=False)
    for _, cells in margin_groups:
        hidden = withheld.loc[cells.index]
        if hidden.sum() == 1 and (~hidden).any():
            # the smallest published cell of the group hides the lone one
            withheld.loc[cells[~hidden].idxmin()] = True
    return withheld


def suppress_answer(query: Mapping[str, Any], answer: Any, n_rows: int, threshold: int) -> Any:
    """One query's answer under small-cell suppression: a count, sum or mean over fewer
    than ``threshold`` patients (``n_rows``) is withheld (None); a histogram's bins
    under ``threshold`` are withheld (NaN)."""
    if query["kind"] == "histogram":
        counts = np.asarray(answer, dtype=float).copy()
        counts[counts < threshold] = np.nan
        return counts
    return None if n_rows < threshold else answer


def output_checker(task: Task) -> str:
    """The party that pools and checks the tables: the card's aggregator, else the
    recipient."""
    aggregators = task.parties_with_role("aggregator")
    return aggregators[0] if aggregators else task.recipient


def _pool_tables(context: PartyContext) -> pd.DataFrame | None:
    """Each holder sends its cell table to the checker, which returns their sum; every
    other party returns None."""
    task = context.task
    checker = output_checker(task)
    holders = task.parties_with_role("data_holder")
    own = None
    if context.name in holders:
        with context.phase("compute"):
            own = local_aggregate(context.data, task).reset_index()
        if context.name != checker:
            context.send(checker, pack(own), tag="cell-table")
    if context.name != checker:
        return None
    tables = [
        own if h == checker else unpack(context.receive(h, tag="cell-table")) for h in holders
    ]
    group_by = list(task.params["group_by"])
    return sum(t.set_index(group_by) for t in tables)


def _checked_aggregate(
    context: PartyContext, check: Callable[[pd.DataFrame, Task], pd.DataFrame]
) -> AggregateOutput | None:
    """Pool the holders' tables at the checker, apply ``check(pooled, task) -> table`` there
    (the ``compute`` phase) and publish the table to the recipient, which returns it."""
    task = context.task
    checker = output_checker(task)
    pooled = _pool_tables(context)
    table = None
    if context.name == checker:
        assert pooled is not None
        with context.phase("compute"):
            table = check(pooled, task)
        if checker != task.recipient:
            context.send(task.recipient, pack(table.reset_index()), tag="published")
    if context.name != task.recipient:
        return None
    if table is None:
        received = unpack(context.receive(checker, tag="published"))
        table = received.set_index(list(task.params["group_by"]))
    out = AggregateOutput(table)
    context.reveal("table", out)
    return out


def _answer_queries(
    context: PartyContext, check: Callable[[dict[str, Any], Any, int], Any]
) -> QueryOutput | None:
    """The researcher sends its workload; the custodian answers it exactly, applies
    ``check(query, answer, rows)`` to each answer and sends the checked answers."""

    def answer(data: Any, workload: list[Any]) -> list[Any]:
        return [
            check(q, answer_query(data, q), len(select_rows(data, q.get("filter", ""))))
            for q in workload
        ]

    return serve_workload(context, answer)


def _heuristic(notes: str, leakage: tuple[str, ...]) -> Claim:
    return Claim(
        security_model=SecurityModel.TRUSTED_THIRD_PARTY,
        declared_leakage=leakage,
        formal=False,
        notes=f"Heuristic, no formal guarantee. {notes}",
    )


class SdcSuppress(Backend):
    """Small-cell suppression with secondary suppression.

    Parameters
    ----------
    threshold : int
        Smallest number of patients a released figure may rest on.
    secondary : bool
        Withhold complementary cells so margins cannot reveal a withheld cell.
    """

    def __init__(self, *, threshold: int = 10, secondary: bool = True) -> None:
        self.threshold = threshold
        self.secondary = secondary

    @property
    def capabilities(self) -> Capabilities:
        """Serves aggregate and query."""
        if not (isinstance(self.threshold, int) and self.threshold >= 1):
            raise ValueError(f"threshold must be a whole number >= 1, got {self.threshold!r}")
        return Capabilities(
            deterministic=True,
            task_kinds=frozenset({"aggregate", "query"}),
            pet_class=PetClass.SDC,
            claim=_heuristic(
                "Differences between released figures (two queries or cells that differ by "
                "a few patients) are not checked.",
                ("output", "holders' tables to the output checker"),
            ),
        )

    def run_party(self, context: PartyContext) -> AggregateOutput | QueryOutput | None:
        """Release the checked table (``aggregate``) or answers (``query``)."""
        self.capabilities  # noqa: B018
        kind = context.task.kind
        if kind == "aggregate":
            return _checked_aggregate(context, self._suppress)
        if kind == "query":
            return _answer_queries(context, self._check)
        raise UnsupportedTask(f"sdc-suppress serves aggregate and query, not {kind}")

    def _suppress(self, pooled: pd.DataFrame, task: Task) -> pd.DataFrame:
        table = finish_means(pooled, task)
        withheld = suppress_cells(
            pooled["n"], list(task.params["group_by"]), self.threshold, secondary=self.secondary
        )
        table.loc[withheld.to_numpy(), :] = np.nan
        return table

    def _check(self, query: dict[str, Any], answer: Any, n_rows: int) -> Any:
        return suppress_answer(query, answer, n_rows, self.threshold)


class SdcRound(Backend):
    """Rounding of counts to a base.

    Parameters
    ----------
    base : int
        Counts are rounded to the nearest multiple of this.
    """

    def __init__(self, *, base: int = 5) -> None:
        self.base = base

    @property
    def capabilities(self) -> Capabilities:
        """Serves aggregate and query."""
        if not (isinstance(self.base, int) and self.base >= 2):
            raise ValueError(f"base must be a whole number >= 2, got {self.base!r}")
        return Capabilities(
            deterministic=True,
            task_kinds=frozenset({"aggregate", "query"}),
            pet_class=PetClass.SDC,
            claim=_heuristic(
                "Sums and means are released unrounded; rounded counts of nested groups "
                "can still be differenced.",
                ("output", "holders' tables to the output checker"),
            ),
        )

    def _round(self, values: Any) -> Any:
        return np.round(np.asarray(values, dtype=float) / self.base) * self.base

    def run_party(self, context: PartyContext) -> AggregateOutput | QueryOutput | None:
        """Release the rounded table (``aggregate``) or answers (``query``)."""
        self.capabilities  # noqa: B018
        kind = context.task.kind
        if kind == "aggregate":
            return _checked_aggregate(context, self._round_table)
        if kind == "query":
            return _answer_queries(context, self._check)
        raise UnsupportedTask(f"sdc-round serves aggregate and query, not {kind}")

    def _round_table(self, pooled: pd.DataFrame, task: Task) -> pd.DataFrame:
        table = finish_means(pooled, task)
        table["n"] = self._round(table["n"])
        for measure in task.params["measures"]:
            if measure["stat"] == "count":
                name = f"{measure['column']}_count"
                table[name] = self._round(table[name])
        return table

    def _check(self, query: dict[str, Any], answer: Any, n_rows: int) -> Any:
        del n_rows
        if query["kind"] in ("count", "histogram"):
            rounded = self._round(answer)
            return float(rounded) if query["kind"] == "count" else rounded
        return answer


#: Generalisation ladders of the quasi-identifiers: level 0 keeps the value.
_AGE_WIDTHS = (1, 5, 10, 20, 120)
_DECILE_WIDTHS = (1, 2, 5, 10)


def _band(values: pd.Series, width: int, start: int) -> pd.Series:
    """Replace numbers by the middle of their band of ``width`` (numeric, so analyses
    that expect numbers still run)."""
    if width == 1:
        return values.astype(float)
    low = ((values.astype(float) - start) // width) * width + start
    return low + (width - 1) / 2


def _ethnicity(values: pd.Series, level: int) -> pd.Series:
    if level == 0:
        return values.astype(str)
    if level == 1:
        return values.astype(str).where(values.astype(str) == "White", "Not White")
    return pd.Series("Any", index=values.index)


class SdcKanon(TableRelease):
    """A k-anonymous release by generalisation and suppression.

    Parameters
    ----------
    k : int
        Least number of patients sharing each combination of quasi-identifiers.
    max_suppression : float
        Largest fraction of rows that may be dropped instead of generalising further.
    """

    def __init__(self, *, k: int = 5, max_suppression: float = 0.05) -> None:
        self.k = k
        self.max_suppression = max_suppression

    @property
    def capabilities(self) -> Capabilities:
        """Serves release."""
        if not (isinstance(self.k, int) and self.k >= 2):
            raise ValueError(f"k must be a whole number >= 2, got {self.k!r}")
        if not 0 <= self.max_suppression < 1:
            raise ValueError(f"max_suppression must be in [0, 1), got {self.max_suppression!r}")
        return Capabilities(
            deterministic=True,
            task_kinds=frozenset({"release"}),
            pet_class=PetClass.SDC,
            claim=_heuristic(
                "k-anonymity hides a patient among k on the quasi-identifiers only; the "
                "clinical columns are released as they are, so an attacker who knows them "
                "can still single a patient out, and a class sharing one diagnosis "
                "discloses it. The released rows are real patients' records.",
                ("output", "inputs"),
            ),
        )

    def generalise(self, frame: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, dict]:
        """Return the k-anonymous table and the generalisation chosen."""
        quasi = [c for c in ("age", "sex", "ethnicity", "deprivation_decile") if c in columns]
        ladders = {
            "age": range(len(_AGE_WIDTHS)),
            "deprivation_decile": range(len(_DECILE_WIDTHS)),
            "ethnicity": range(3),
        }
        searched = [c for c in quasi if c in ladders]
        candidates = sorted(
            itertools.product(*(ladders[c] for c in searched)), key=lambda lv: (sum(lv), lv)
        )
        for levels in candidates:
            chosen = dict(zip(searched, levels, strict=True))
            table = self._apply(frame[columns].copy(), chosen)
            sizes = table.groupby(quasi, observed=True, dropna=False)[quasi[0]].transform("size")
            small = sizes < self.k
            if small.mean() <= self.max_suppression:
                released = table[~small.to_numpy()].reset_index(drop=True)
                return released, {**chosen, "suppressed_rows": int(small.sum())}
        raise UnsupportedTask(f"no generalisation reaches {self.k}-anonymity")  # pragma: no cover

    @staticmethod
    def _apply(table: pd.DataFrame, levels: dict[str, int]) -> pd.DataFrame:
        if "age" in levels:
            table["age"] = _band(table["age"], _AGE_WIDTHS[levels["age"]], 0)
        if "deprivation_decile" in levels:
            width = _DECILE_WIDTHS[levels["deprivation_decile"]]
            table["deprivation_decile"] = _band(table["deprivation_decile"], width, 1)
        if "ethnicity" in levels:
            table["ethnicity"] = _ethnicity(table["ethnicity"], levels["ethnicity"])
        return table

    def publish(self, frame: pd.DataFrame, columns: list[str], task: Task) -> pd.DataFrame:
        """Return the analysis columns, k-anonymised; identifiers never leave."""
        if task.kind != "release":
            raise UnsupportedTask(f"sdc-kanon serves release, not {task.kind}")
        released, _ = self.generalise(frame, [c for c in columns if c not in IDENTIFIERS])
        return released
