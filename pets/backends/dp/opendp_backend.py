"""``opendp``: differentially private aggregates and query answering with OpenDP.

The data holder (or custodian) computes each statistic on its own rows and releases it
through an OpenDP measurement; only noisy values leave it. Bounds come from the public
column ranges (``pets.data.COLUMN_RANGES``), never from the data; values outside them
are clamped before summing. Every party runs in its own process, and each holder builds
its own measurements from the public task.

- ``aggregate``: every patient falls in one cell, so each statistic vector over the
  cell grid (counts; clamped sums of each measured column) has L1 sensitivity 1 or the
  column's largest absolute bound. Each data holder spends ``epsilon`` on its own
  patients (split equally across the statistic vectors), so the recipient's table is
  ``epsilon``-DP for every patient (parallel composition across holders). Each holder
  sends its noisy vectors to the recipient (one message, ``noisy-table``); the
  recipient adds them up. Means are noisy sum over noisy count, clamped to the
  column's bounds.
- ``query``: the researcher sends the workload (``workload``) and the custodian
  answers it (``answers``) through OpenDP's adaptive
  sequential compositor, set up for ``floor(epsilon / query_epsilon)`` queries of
  ``query_epsilon`` each; the compositor refuses every query past the budget, and the
  refusal is recorded as an unanswered query (never answered, never noised). A mean
  spends half its share on the sum and half on the count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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
    Task,
    UnsupportedTask,
)
from pets.backends.dp.opendp_ops import (
    clamp_means,
    clamped,
    compositor,
    laplace_release,
    opendp,
    public_bounds,
    statistic,
)
from pets.backends.plaintext import serve_workload
from pets.backends.randomness import OPENDP_NOISE
from pets.tasks import (
    finish_means,
    local_aggregate,
    select_rows,
    sums_from_vector,
)
from pets.wire import pack, unpack

__all__ = ["OpenDP", "aggregate_measurements", "query_measurement"]


def aggregate_measurements(task: Task, epsilon: float) -> dict[str, Any]:
    """Return, per statistic vector of the aggregate (``n`` and ``<column>_sum``), an
    OpenDP measurement from a holder's table to that noisy vector; together they spend
    ``epsilon``. The cell table behind the vectors is computed once per table (the
    last one measured is kept, with the table itself, so its identity stays valid)."""
    columns = sorted({m["column"] for m in task.params["measures"]})
    share = epsilon / (1 + len(columns))
    last: list[Any] = [None, None]  # the table measured last and its cell sums

    def cells(frame: pd.DataFrame) -> pd.DataFrame:
        if last[0] is not frame:
            last[:] = [frame, local_aggregate(clamped(frame, columns), task)]
        return last[1]

    def vector(name: str) -> Any:
        return lambda frame: cells(frame)[name].to_numpy()

    out = {"n": laplace_release(statistic(vector("n"), 1.0), share)}
    for column in columns:
        lo, hi = public_bounds(column)
        sensitivity = max(abs(lo), abs(hi))
        out[f"{column}_sum"] = laplace_release(
            statistic(vector(f"{column}_sum"), sensitivity), share
        )
    return out


def query_measurement(query: Mapping[str, Any], epsilon: float) -> Any:
    """Return an OpenDP measurement answering one workload query at ``epsilon``."""
    dp = opendp()

    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        return select_rows(frame, query.get("filter", ""))

    kind = query["kind"]
    if kind == "count":
        return laplace_release(statistic(lambda f: [float(len(rows(f)))], 1.0), epsilon)
    if kind == "histogram":
        if "categories" in query:
            categories = list(query["categories"])

            def counts(frame: pd.DataFrame) -> np.ndarray:
                values = rows(frame)[query["column"]].astype(str).value_counts()
                return np.array([float(values.get(c, 0)) for c in categories])
        else:
            lo, hi = query["range"]
            bins = query["bins"]

            def counts(frame: pd.DataFrame) -> np.ndarray:
                x = np.clip(rows(frame)[query["column"]].to_numpy(dtype=float), lo, hi)
                codes = np.minimum(((x - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)
                return np.bincount(codes, minlength=bins).astype(float)

        return laplace_release(statistic(counts, 1.0), epsilon)
    column = query["column"]
    lo, hi = public_bounds(column)

    def total(frame: pd.DataFrame) -> list[float]:
        return [float(rows(frame)[column].astype(float).clip(lo, hi).sum())]

    sensitivity = max(abs(lo), abs(hi))
    if kind == "sum":
        return laplace_release(statistic(total, sensitivity), epsilon)
    # mean: a noisy sum and a noisy count, half the share each, divided afterwards
    both = dp.c.make_composition(
        [
            laplace_release(statistic(total, sensitivity), epsilon / 2),
            laplace_release(statistic(lambda f: [float(len(rows(f)))], 1.0), epsilon / 2),
        ]
    )
    return both >> dp.new_function(
        lambda pair: [float(np.clip(pair[0][0] / max(pair[1][0], 1.0), lo, hi))],
        TO="Vec<f64>",
    )


class OpenDP(Backend):
    """Differential privacy with OpenDP (Laplace mechanism, pure epsilon-DP).

    Parameters
    ----------
    epsilon : float
        Total privacy loss per patient for the run.
    query_epsilon : float or None
        Loss spent per query of a workload; None shares ``epsilon`` equally across the
        card's queries. A workload that needs more than ``epsilon`` has its later
        queries refused.
    """

    def __init__(self, *, epsilon: float = 1.0, query_epsilon: float | None = None) -> None:
        self.epsilon = epsilon
        self.query_epsilon = query_epsilon

    @property
    def capabilities(self) -> Capabilities:
        """Serves aggregate and query; pure epsilon-DP per patient (add/remove)."""
        if not (isinstance(self.epsilon, int | float) and self.epsilon > 0):
            raise ValueError(f"epsilon must be > 0, got {self.epsilon!r}")
        if self.query_epsilon is not None and not self.query_epsilon > 0:
            raise ValueError(f"query_epsilon must be > 0, got {self.query_epsilon!r}")
        return Capabilities(
            task_kinds=frozenset({"aggregate", "query"}),
            pet_class=PetClass.DP,
            claim=Claim(
                epsilon=float(self.epsilon),
                delta=0.0,
                privacy_unit="patient",
                neighbouring="add-remove",
                accountant="basic sequential composition (OpenDP adaptive compositor); "
                "parallel across disjoint holders and cells",
                declared_leakage=("output",),
                formal=True,
                notes="Bounds are public clinical ranges; values outside are clamped. "
                "The data holder computes on its own rows and sees them in the clear.",
            ),
            extra="dp",
            unseeded_randomness=(OPENDP_NOISE,),
        )

    def run_party(self, context: PartyContext) -> AggregateOutput | QueryOutput | None:
        """Answer the task with noisy releases, as one party's program."""
        self.capabilities  # noqa: B018  (validates the parameters)
        if context.task.kind == "aggregate":
            return self._aggregate(context)
        if context.task.kind == "query":
            return self._query(context)
        raise UnsupportedTask(f"opendp serves aggregate and query, not {context.task.kind}")

    def _aggregate(self, context: PartyContext) -> AggregateOutput | None:
        """Each data holder releases its noisy statistic vectors to the recipient, which
        adds them up; only noisy values leave a holder."""
        task = context.task
        holders = task.parties_with_role("data_holder")
        own = None
        if context.name in holders:
            with context.phase("setup"):
                measurements = aggregate_measurements(task, self.epsilon)
            with context.phase("compute"):
                own = pd.DataFrame({name: m(context.data) for name, m in measurements.items()})
            if context.name != task.recipient:
                context.send(task.recipient, pack(own), tag="noisy-table")
        if context.name != task.recipient:
            return None
        tables = [
            own if h == context.name else unpack(context.receive(h, tag="noisy-table"))
            for h in holders
        ]
        with context.phase("compute"):
            total = sum(t.to_numpy() for t in tables)
            sums = sums_from_vector(np.asarray(total).ravel(), task)
            counts = sums["n"].clip(lower=0.0)
            # a noisy count can be 0 or negative: divide by at least one patient
            table = finish_means(sums.assign(n=counts.clip(lower=1.0)), task)
            table["n"] = counts
            out = AggregateOutput(clamp_means(table, task))
        context.reveal("table", out)
        return out

    def _query(self, context: PartyContext) -> QueryOutput | None:
        """The researcher sends the workload; the custodian answers it through OpenDP's
        compositor and sends back the noisy answers (None for a refused query)."""
        planned = len(context.task.params["queries"])
        return serve_workload(context, lambda data, workload: self._answer(data, workload, planned))

    def _answer(self, data: pd.DataFrame, workload: list[Any], planned: int) -> list[Any]:
        """Answer ``workload`` on ``data`` under one compositor; ``planned`` is the
        card's number of queries, which shares the budget when ``query_epsilon`` is
        None."""
        from opendp.mod import OpenDPException

        per_query = self.query_epsilon or self.epsilon / planned
        affordable = math.floor(self.epsilon / per_query + 1e-9)
        accountant = compositor([per_query] * affordable)(data)
        answers: list[Any] = []
        for query in workload:
            try:
                value = accountant(query_measurement(query, per_query))
            except OpenDPException as exc:
                if "out of queries" not in str(exc):
                    raise
                answers.append(None)  # the accountant refused: over budget
                continue
            answers.append(value if query["kind"] == "histogram" else value[0])
        return answers
