"""Releasing a table: the raw hand-over, the de-identified extract, and the common
protocol every table-releasing backend follows.

A :class:`TableRelease` backend serves two task kinds the same way. The custodian
builds one table from its own rows (:meth:`TableRelease.publish`) and sends it; the
researcher either keeps it (``release``) or answers its own query workload on it
(``query``), so the custodian never learns the queries and a synthetic release is
compared with DP query answering on the same workload. For ``query`` the custodian
publishes only the columns the workload reads.

- ``raw``: the custodian hands over its table as it is, identifiers included: the worst
  case, without any governance.
- ``deidentified``: what is often called "anonymised": NHS number and GP practice
  dropped, date of birth coarsened to year of birth, postcode kept at district level;
  every other column is released as it is, row for row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pets.api import (
    Backend,
    Capabilities,
    Claim,
    PartyContext,
    PetClass,
    QueryOutput,
    ReleaseOutput,
    SecurityModel,
    Task,
    UnsupportedTask,
)
from pets.tasks import answer_query
from pets.tasks.query import workload_columns
from pets.wire import pack, unpack

__all__ = ["Deidentified", "Raw", "TableRelease", "deidentify", "release_columns"]


def release_columns(task: Task) -> list[str]:
    """The columns a release for ``task`` must hold: the card's analysis columns for
    ``release``, the columns the workload reads for ``query``."""
    if task.kind == "release":
        return list(task.params["columns"])
    if task.kind == "query":
        return workload_columns(task.params["queries"])
    raise UnsupportedTask(f"a table release serves release and query, not {task.kind}")


class TableRelease(Backend):
    """Base class of backends that answer by publishing one table.

    Subclasses implement :meth:`publish`. The party program (:meth:`run_party`) runs it
    at the custodian, timed as the ``generate`` phase, sends the table to the
    researcher as one message and, for ``query``, answers the workload on it at the
    researcher (``compute``).
    """

    #: Task kinds a table release serves.
    TASK_KINDS = frozenset({"release", "query"})

    def publish(self, frame: pd.DataFrame, columns: list[str], task: Task) -> pd.DataFrame:
        """Return the table the custodian sends, built from its own rows ``frame``.

        Parameters
        ----------
        frame : DataFrame
            The custodian's rows (every column of the data source).
        columns : list of str
            Columns the researcher's use needs (see :func:`release_columns`).
        task : Task
            The task being answered.
        """
        raise NotImplementedError

    def run_party(self, context: PartyContext) -> ReleaseOutput | QueryOutput | None:
        """Publish at the custodian and send the table; at the researcher, keep it
        (``release``) or answer the workload on it (``query``)."""
        self.capabilities  # noqa: B018  (checks the parameters)
        task = context.task
        columns = release_columns(task)
        (custodian,) = [n for n in task.party_names if n != task.recipient]
        if context.name == custodian:
            with context.phase("generate"):
                table = self.publish(context.data, columns, task)
            context.send(task.recipient, pack(table.reset_index(drop=True)), tag="release")
            return None
        if context.name != task.recipient:
            return None
        table = unpack(context.receive(custodian, tag="release"))
        if task.kind == "release":
            out: ReleaseOutput | QueryOutput = ReleaseOutput(table)
            context.reveal("release", out)
            return out
        with context.phase("compute"):
            answers = tuple(answer_query(table, q) for q in task.params["queries"])
        out = QueryOutput(answers)
        context.reveal("answers", out)
        return out


class Raw(TableRelease):
    """The custodian hands its table over unchanged, identifiers and all.

    It has no parameters. Its claim is that it protects nothing.
    """

    def __init__(self) -> None:
        pass

    @property
    def capabilities(self) -> Capabilities:
        """Serves release and query; declares identifiers and inputs revealed."""
        return Capabilities(
            deterministic=True,
            task_kinds=self.TASK_KINDS,
            pet_class=PetClass.BASELINE,
            claim=Claim(
                security_model=SecurityModel.TRUSTED_THIRD_PARTY,
                declared_leakage=("inputs", "identifiers", "output"),
                formal=False,
                notes="The researcher receives every row with NHS number and date of birth.",
            ),
        )

    def publish(self, frame: pd.DataFrame, columns: list[str], task: Task) -> pd.DataFrame:
        """Return the custodian's whole table."""
        del columns, task
        return frame


#: Columns a de-identified extract drops outright.
DROPPED = ("nhs_number", "gp_practice")


def deidentify(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop direct identifiers and coarsen dates: NHS number and GP practice removed,
    date of birth replaced by year of birth; postcode stays at district level."""
    out = frame.drop(columns=[c for c in DROPPED if c in frame.columns])
    if "date_of_birth" in out.columns:
        year = pd.to_datetime(out["date_of_birth"]).dt.year.astype(np.int16)
        out = out.drop(columns=["date_of_birth"]).assign(year_of_birth=year)
    return out


class Deidentified(TableRelease):
    """A de-identified extract: identifiers dropped, dates coarsened, rows real.

    It has no parameters.
    """

    def __init__(self) -> None:
        pass

    @property
    def capabilities(self) -> Capabilities:
        """Serves release and query; heuristic, declares the real rows revealed."""
        return Capabilities(
            deterministic=True,
            task_kinds=self.TASK_KINDS,
            pet_class=PetClass.SDC,
            claim=Claim(
                security_model=SecurityModel.TRUSTED_THIRD_PARTY,
                declared_leakage=("inputs", "quasi-identifiers", "output"),
                formal=False,
                notes=(
                    "Heuristic, no formal guarantee. Every row is a real patient's record; "
                    "year of birth, sex, ethnicity and postcode district together single "
                    "out many patients to anyone who knows them."
                ),
            ),
        )

    def publish(self, frame: pd.DataFrame, columns: list[str], task: Task) -> pd.DataFrame:
        """Return the de-identified table (all non-identifying columns)."""
        del columns, task
        return deidentify(frame)
