"""``acro``: output checking with ACRO, the SACRO project's checker used by UK TREs.

Every output is produced through an ``acro.ACRO`` session, which runs its disclosure
checks (threshold, zeros, nk-dominance, p-ratio, and the advisory differencing note)
on the rows behind each cell, and only what ACRO passes leaves the output checker:

- ``aggregate``: the data holders' rows are pooled at the output checker (the card's
  aggregator, as a TRE holds deposited data), which asks ACRO for one table per
  statistic (``pivot_table`` over the group-by columns: counts for ``n``, then each
  measure with its own ``aggfunc``). ACRO checks each statistic's cells on its own, so a
  cell's count can pass while its mean is withheld for dominance.
- ``query``: the custodian answers the researcher's workload through ACRO, one output
  per query: a count, sum or mean is a one-cell ``pivot_table`` of the query's
  population, a histogram a ``crosstab`` of its bins.

With ``suppress`` on (the default) ACRO suppresses the failing cells itself and the rest
is released; with it off an output with any failing cell is withheld whole, as an output
checker rejects it. A withheld query is released as unanswered (``None``, NaN bins) with
ACRO's reason in :attr:`~pets.tasks.QueryOutput.refused`; a withheld cell is NaN, and the
analyst receives ACRO's summary of each statistic (cells withheld per check). The
harness scores what was released and attacks it; this module computes no score.

ACRO logs through Python's loggers (kept to warnings here, so no table reaches a party's
stderr) and writes files: at :meth:`AcroSession.finalise` the output checker's bundle
(``results.json``, one CSV per output, ``config.json``), and plots under
``acro_artifacts`` of the working directory (this module asks for none). Both go to the
party's scratch folder, the working directory while ACRO runs, which the harness removes
when the cell ends.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
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
from pets.backends.plaintext import pool_rows
from pets.backends.sdc import output_checker
from pets.tasks import (
    answers_from_wire,
    answers_to_wire,
    cell_grid,
    select_rows,
)
from pets.tasks.aggregate import measure_name
from pets.tasks.query import histogram_labels
from pets.wire import pack, unpack

__all__ = ["Acro", "AcroSession", "CheckedOutput"]

#: The label ACRO gives a cell that passed every check.
PASSED = "ok"
#: Names of the two populations a one-cell query output is tabulated over.
SELECTED, REST = "selected", "rest"


@dataclass(frozen=True)
class CheckedOutput:
    """One output as ACRO checked it.

    Parameters
    ----------
    table : DataFrame
        The table ACRO returned (suppressed cells NaN when suppression is on).
    outcome : DataFrame
        ACRO's verdict per cell, the same shape: ``"ok"`` or the failing checks
        (``"NKCheck; PPercentCheck; "``).
    status : str
        ACRO's status of the whole output: ``pass``, ``fail`` or ``review``.
    summary : str
        ACRO's summary for the output checker.
    """

    table: pd.DataFrame
    outcome: pd.DataFrame
    status: str
    summary: str

    def failing_lines(self) -> list[str]:
        """ACRO's summary lines of the checks that failed."""
        return [line.strip() for line in self.summary.splitlines() if "fail" in line]


def _quiet_import() -> Any:
    """Import ``acro`` without its import-time ``logging.basicConfig(level=INFO)`` taking
    over this process's root logger, and keep its own loggers to warnings."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import acro  # the tre extra

    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith("acro"):
            logging.getLogger(name).setLevel(logging.WARNING)
    return acro


#: Imported when the module loads, so a warm fork server holds it for every party.
_ACRO = _quiet_import()


class AcroSession:
    """An ``acro.ACRO`` session with the backend's risk appetite, working in ``scratch``.

    Parameters
    ----------
    scratch : Path
        The party's own folder: ACRO's working directory and where :meth:`finalise`
        writes the output checker's bundle.
    suppress : bool
        ACRO's own suppression of failing cells.
    risk_appetite : Mapping
        Values for ACRO's configuration keys (``safe_threshold``, ``safe_nk_n``,
        ``safe_nk_k``, ``safe_pratio_p``, ``zeros_are_disclosive``).
    """

    def __init__(self, scratch: Path, *, suppress: bool, risk_appetite: Mapping[str, Any]):
        self.scratch = Path(scratch)
        with self._inside():
            self._acro = _ACRO.ACRO(suppress=suppress)
        # ACRO reads its risk appetite from the YAML beside the package; its checks read
        # this dict (the session's config is the checks' risk appetite, one object).
        self._acro.config.update(risk_appetite)

    @contextlib.contextmanager
    def _inside(self) -> Iterator[None]:
        """Run ACRO with the scratch folder as working directory and its pandas
        warnings silenced."""
        # ACRO formats its tables into debug messages whether or not they are logged:
        # short display options keep that cheap
        with (
            contextlib.chdir(self.scratch),
            warnings.catch_warnings(),
            pd.option_context("display.max_rows", 4, "display.max_columns", 4),
        ):
            warnings.simplefilter("ignore")
            yield

    def _last(self, table: pd.DataFrame) -> CheckedOutput:
        record = self._acro.results.results[f"output_{self._acro.results.output_id - 1}"]
        return CheckedOutput(table, record.outcome, str(record.status), str(record.summary))

    def pivot_table(self, frame: pd.DataFrame, **kwargs: Any) -> CheckedOutput:
        """``ACRO.pivot_table`` on ``frame``; returns the table with ACRO's verdict."""
        with self._inside():
            table = self._acro.pivot_table(frame, **kwargs)
        return self._last(table)

    def crosstab(self, index: Any, columns: Any, **kwargs: Any) -> CheckedOutput:
        """``ACRO.crosstab``; returns the table with ACRO's verdict."""
        with self._inside():
            table = self._acro.crosstab(index, columns, **kwargs)
        return self._last(table)

    def finalise(self, folder: str = "acro-outputs") -> Path:
        """Write the output checker's bundle (JSON) under the scratch folder."""
        target = self.scratch / folder
        with self._inside():
            self._acro.finalise(str(target), "json")
        return target


def _reason(labels: Sequence[str]) -> str:
    """ACRO's reason for withholding the cells whose verdicts are ``labels``: each failing
    check with the number of those cells it failed (``NKCheck (1), PPercentCheck (1)``)."""
    counts: dict[str, int] = {}
    for label in labels:
        for check in {c.strip() for c in label.split(";") if c.strip()}:
            counts[check] = counts.get(check, 0) + 1
    return "ACRO withheld it: " + ", ".join(f"{c} ({counts[c]})" for c in sorted(counts))


class Acro(Backend):
    """Output checking with ACRO (``acro`` 1.0.2): threshold, zeros and dominance.

    Parameters
    ----------
    threshold : int
        ACRO's ``safe_threshold``: fewest patients a released cell may rest on.
    nk_n, nk_k : int, float
        ACRO's nk-dominance rule: a cell fails when its ``nk_n`` largest values make up
        at least ``nk_k`` of its total.
    p_ratio : float
        ACRO's p-ratio rule: a cell fails when its total less its two largest values is
        under ``p_ratio`` times its largest value.
    zeros_are_disclosive : bool
        Empty cells fail (class disclosure).
    suppress : bool
        On: ACRO suppresses failing cells and the rest of an output is released. Off: an
        output with any failing cell is withheld whole.
    """

    def __init__(
        self,
        *,
        threshold: int = 10,
        nk_n: int = 2,
        nk_k: float = 0.9,
        p_ratio: float = 0.1,
        zeros_are_disclosive: bool = True,
        suppress: bool = True,
    ) -> None:
        self.threshold = threshold
        self.nk_n = nk_n
        self.nk_k = nk_k
        self.p_ratio = p_ratio
        self.zeros_are_disclosive = zeros_are_disclosive
        self.suppress = suppress

    @property
    def capabilities(self) -> Capabilities:
        """Serves aggregate and query; a heuristic claim that declares the holders' rows
        pooled at the output checker."""
        if not (isinstance(self.threshold, int) and self.threshold >= 1):
            raise ValueError(f"threshold must be a whole number >= 1, got {self.threshold!r}")
        if not (isinstance(self.nk_n, int) and self.nk_n >= 1):
            raise ValueError(f"nk_n must be a whole number >= 1, got {self.nk_n!r}")
        if not 0 < self.nk_k <= 1:
            raise ValueError(f"nk_k must be in (0, 1], got {self.nk_k!r}")
        if not 0 <= self.p_ratio < 1:
            raise ValueError(f"p_ratio must be in [0, 1), got {self.p_ratio!r}")
        return Capabilities(
            deterministic=True,
            task_kinds=frozenset({"aggregate", "query"}),
            pet_class=PetClass.SDC,
            claim=Claim(
                security_model=SecurityModel.TRUSTED_THIRD_PARTY,
                declared_leakage=("output", "inputs"),
                formal=False,
                notes="Heuristic, no formal guarantee. ACRO checks each output on its own: "
                "small cells, empty cells and cells one or two patients dominate are "
                "withheld, but differences between outputs (two queries whose populations "
                "differ by one patient) are only flagged for a manual review, never "
                "withheld. The data holders' rows are pooled at the output checker (the "
                "TRE), which sees them in the clear; a withheld output's reason is sent "
                "with it.",
            ),
            extra="tre",
        )

    def risk_appetite(self) -> dict[str, Any]:
        """The backend's parameters as ACRO's configuration keys."""
        return {
            "safe_threshold": self.threshold,
            "safe_nk_n": self.nk_n,
            "safe_nk_k": self.nk_k,
            "safe_pratio_p": self.p_ratio,
            "zeros_are_disclosive": self.zeros_are_disclosive,
        }

    def session(self, scratch: Path) -> AcroSession:
        """A fresh ACRO session with this backend's settings, working in ``scratch``."""
        return AcroSession(scratch, suppress=self.suppress, risk_appetite=self.risk_appetite())

    def run_party(self, context: PartyContext) -> AggregateOutput | QueryOutput | None:
        """Release the checked table (``aggregate``) or answers (``query``)."""
        self.capabilities  # noqa: B018
        kind = context.task.kind
        if kind == "aggregate":
            return self._aggregate(context)
        if kind == "query":
            return self._query(context)
        raise UnsupportedTask(f"acro serves aggregate and query, not {kind}")

    # -- aggregate ---------------------------------------------------------------

    def _aggregate(self, context: PartyContext) -> AggregateOutput | None:
        task = context.task
        checker = output_checker(task)
        pooled = pool_rows(context, task.parties_with_role("data_holder"), checker)
        if context.name == checker:
            assert pooled is not None
            with context.phase("compute"):
                table, summary = self.check_table(pooled, task, context.scratch)
            if checker != task.recipient:
                context.send(task.recipient, pack(table.reset_index()), tag="published")
                context.send(task.recipient, pack(summary), tag="acro-summary")
        if context.name != task.recipient:
            return None
        if context.name != checker:
            received = unpack(context.receive(checker, tag="published"))
            table = received.set_index(list(task.params["group_by"]))
            summary = unpack(context.receive(checker, tag="acro-summary"))
        out = AggregateOutput(table)
        context.reveal("table", out)
        context.reveal("acro-summary", summary)
        return out

    def check_table(
        self, pooled: pd.DataFrame, task: Task, scratch: Path
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Produce the task's table through ACRO on the pooled rows.

        Returns
        -------
        table : DataFrame
            ``n`` and one column per measure on the public cell grid; what ACRO withheld
            is NaN.
        summary : dict
            Per statistic: ACRO's ``status``, its summary lines of the failing checks, and
            the number of cells withheld.
        """
        group_by = list(task.params["group_by"])
        grid = cell_grid(task)
        frame = pooled[group_by].copy()
        frame["patients"] = 1
        session = self.session(scratch)
        statistics: dict[str, tuple[str, str]] = {"n": ("patients", "count")}
        for measure in task.params["measures"]:
            column, stat = measure["column"], measure["stat"]
            frame[column] = pooled[column].to_numpy(dtype=float)
            values = "patients" if stat == "count" else column
            statistics[measure_name(column, stat)] = (values, stat)
        table = pd.DataFrame(index=grid)
        summary: dict[str, Any] = {}
        # the last group-by column across (ACRO builds a cell's redaction query from the
        # row and column labels, and joins several row levels only with a column level)
        rows, across = (group_by[:-1], group_by[-1:]) if len(group_by) > 1 else (group_by, [])
        for name, (values, stat) in statistics.items():
            checked = session.pivot_table(
                frame, index=rows, columns=across, values=values, aggfunc=stat, observed=False
            )
            released, outcome = self._released(checked)
            table[name] = _on_grid(released, grid)
            passed = _on_grid(outcome, grid).fillna(PASSED) == PASSED
            table.loc[~passed.to_numpy(), name] = np.nan
            summary[name] = {
                "status": checked.status,
                "failing_checks": checked.failing_lines(),
                "cells_withheld": int((~passed | table[name].isna()).sum()),
            }
        session.finalise()
        return table, summary

    def _released(self, checked: CheckedOutput) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The table as released and the verdict per cell: with suppression off, an
        output that did not pass is withheld whole."""
        outcome = checked.outcome.astype(str)
        if self.suppress or checked.status == "pass":
            return checked.table, outcome
        return checked.table * np.nan, outcome.where(
            outcome != PASSED, "rejected with the output; "
        )

    # -- query -------------------------------------------------------------------

    def _query(self, context: PartyContext) -> QueryOutput | None:
        """The researcher sends its workload; the custodian answers it through ACRO and
        sends back the released answers with ACRO's reasons for what it withheld."""
        task = context.task
        (custodian,) = [n for n in task.party_names if n != task.recipient]
        if context.name == custodian:
            workload = unpack(context.receive(task.recipient, tag="workload"))
            with context.phase("compute"):
                answers, refused = self.answer_workload(context.data, workload, context.scratch)
            message = {"answers": answers_to_wire(answers), "refused": refused}
            context.send(task.recipient, pack(message), tag="answers")
            return None
        if context.name != task.recipient:
            return None
        context.send(custodian, pack(list(task.params["queries"])), tag="workload")
        message = unpack(context.receive(custodian, tag="answers"))
        out = QueryOutput(
            answers_from_wire(message["answers"]),
            refused={int(k): str(v) for k, v in message["refused"].items()},
        )
        context.reveal("answers", out)
        return out

    def answer_workload(
        self, frame: pd.DataFrame, workload: Sequence[Mapping[str, Any]], scratch: Path
    ) -> tuple[list[Any], dict[str, str]]:
        """Answer each query through ACRO on ``frame`` (the custodian's rows).

        Returns
        -------
        answers : list
            A float, a histogram array (withheld bins NaN) or None per query.
        refused : dict of str to str
            Query position to ACRO's reason, for every query ACRO withheld whole or in
            part (some histogram bins).
        """
        session = self.session(scratch)
        answers: list[Any] = []
        refused: dict[str, str] = {}
        for i, query in enumerate(workload):
            selected = pd.Series(False, index=frame.index)
            selected[select_rows(frame, query.get("filter", "")).index] = True
            population = pd.Categorical(
                np.where(selected, SELECTED, REST), categories=[SELECTED, REST]
            )
            if query["kind"] == "histogram":
                answer, reason = self._histogram(session, frame, query, population)
            else:
                answer, reason = self._one_cell(session, frame, query, population)
            answers.append(answer)
            if reason:
                refused[str(i)] = reason
        session.finalise()
        return answers, refused

    def _one_cell(
        self, session: AcroSession, frame: pd.DataFrame, query: Mapping[str, Any], population: Any
    ) -> tuple[float | None, str]:
        """A count, sum or mean: a ``pivot_table`` of the query's population (its rows
        against the rest, so an empty population is a cell ACRO sees)."""
        kind = query["kind"]
        values = "patients" if kind == "count" else query["column"]
        data = pd.DataFrame({"population": population})
        data[values] = 1 if kind == "count" else frame[values].to_numpy(dtype=float)
        checked = session.pivot_table(
            data, index="population", values=values, aggfunc=kind, observed=False
        )
        table, outcome = self._released(checked)
        verdict = str(outcome.iloc[:, 0].get(SELECTED, "not tabulated; "))
        value = table.iloc[:, 0].get(SELECTED, np.nan)
        if verdict != PASSED or not np.isfinite(value):
            return None, _reason([verdict])
        return float(value), ""

    def _histogram(
        self, session: AcroSession, frame: pd.DataFrame, query: Mapping[str, Any], population: Any
    ) -> tuple[np.ndarray, str]:
        """A histogram: a ``crosstab`` of its bins against the population."""
        labels = list(histogram_labels(query))
        column = frame[query["column"]]
        if "categories" in query:
            bins = pd.Categorical(column.astype(str), categories=labels)
        else:
            lo, hi = query["range"]
            x = np.clip(column.to_numpy(dtype=float), lo, hi)
            codes = np.minimum(
                ((x - lo) / (hi - lo) * query["bins"]).astype(np.int64), len(labels) - 1
            )
            bins = pd.Categorical.from_codes(codes, categories=labels)
        checked = session.crosstab(
            pd.Series(bins, name="bin"), pd.Series(population, name="population")
        )
        table, outcome = self._released(checked)
        counts = table[SELECTED].reindex(labels).to_numpy(dtype=float)
        verdicts = outcome[SELECTED].reindex(labels).fillna("not tabulated; ").astype(str)
        withheld = (verdicts != PASSED).to_numpy() | ~np.isfinite(counts)
        counts[withheld] = np.nan
        if not withheld.any():
            return counts, ""
        return counts, _reason(list(verdicts[withheld]))


def _on_grid(table: pd.DataFrame, grid: pd.MultiIndex) -> pd.Series:
    """A statistic ACRO tabulated (rows by the first group-by columns, columns by the
    last) as one value per cell of the public grid; labels are compared as text."""
    cells = (
        table.stack(future_stack=True)
        if table.shape[1] > 1 or grid.nlevels > 1
        else table.iloc[:, 0]
    )
    keys = [
        tuple(str(v) for v in (key if isinstance(key, tuple) else (key,))) for key in cells.index
    ]
    by_key = dict(zip(keys, cells.to_numpy(), strict=True))
    return pd.Series([by_key.get(tuple(str(v) for v in cell), np.nan) for cell in grid], index=grid)
