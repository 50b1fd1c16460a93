"""``syft``: remote data science on PySyft 0.9.5 datasites the researcher never sees into.

Each data holder runs a PySyft datasite in its own party process and serves it over
HTTP on the loopback port the harness gives it; the researcher, in another process,
reaches each only through the harness's relay, which meters every byte
(:mod:`pets.backends.pysyft.datasite`). The flow is PySyft's own:

1. Each holder uploads its table as a dataset asset with a **mock** beside it, drawn
   from the harness's public cohort generator under a fresh random seed, so the mock
   holds no row, value range or identifier of the private table.
2. The researcher signs up, reads the mock (the only rows it ever sees) and submits
   code requests (:mod:`pets.backends.pysyft.code`): one function per workload query
   (``query``: ``tre_queries``), or one per-site table of counts and sums (``aggregate``:
   ``multi_site_prevalence``, a datasite per nation). Each function declares what it
   computes on its first line.
3. Each data owner reviews each request under the card's **approval policy**
   (:data:`POLICIES`): it reads the declaration, runs the code on the private rows,
   denies code whose output is not what it declares, then approves or denies with a
   reason. PySyft releases an approved output whole, so a policy decides per output.
4. Once every request is decided, the researcher runs each approved function on the
   private asset (the datasite runs it and returns only its output) and reads each
   denial's reason. A denied query is unanswered, with its reason in
   :attr:`~pets.tasks.QueryOutput.refused`; a denied site's table leaves every pooled
   cell withheld, since a pooled cell without one site's patients is not the cell.

PySyft 0.9.5 pins ``numpy<=1.24.4``, so the party programs run in an environment of
their own (``pets env sync syft``; docs/environments.md). The harness scores and
attacks what the researcher released, from outside; this module computes no score.
"""

from __future__ import annotations

import ast
import tempfile
from collections.abc import Mapping, Sequence
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
from pets.backends.pysyft.code import (
    DP_MECHANISM,
    declared,
    dp_query_code,
    function_name,
    query_code,
    site_table,
    table_code,
)
from pets.backends.pysyft.datasite import connect_all, serve_as_data_owner
from pets.backends.randomness import OPENDP_NOISE
from pets.backends.sdc import suppress_answer
from pets.tasks import (
    answer_query,
    answers_from_wire,
    answers_to_wire,
    cell_grid,
    finish_means,
    select_rows,
)

__all__ = ["POLICIES", "REQUIREMENTS", "Accountant", "Syft"]

#: What the party programs' environment holds besides the party runtime: PySyft 0.9.5
#: (the last release that runs a datasite offline), what it needs and does not declare
#: (``sniffio``), its numpy pin, ACRO for the ``acro`` policy and OpenDP for ``dp``.
REQUIREMENTS = ("syft==0.9.5", "sniffio", "numpy<=1.24.4", "acro==1.0.2", "opendp==0.16.*")

#: What every policy lets the researcher see beyond the pooled output: on aggregate
#: tasks each site's released table (per-cell counts and sums), since each datasite
#: approves its own output.
DECLARED_LEAKAGE = ("output", "holders' tables to the researcher")

#: Approval policies the data owner can apply, with what each releases.
POLICIES = {
    "approve_all": "every output as the submitted code computed it",
    "min_cell_size": "only outputs whose every released cell rests on at least "
    "min_cell_size patients",
    "acro": "only query outputs that pass ACRO's checks (threshold, zeros, nk-dominance, p-ratio)",
    "dp": "only query outputs released through OpenDP's Laplace measurement, within a "
    "privacy budget epsilon the data owner accounts",
}


class Syft(Backend):
    """Remote data science on a PySyft 0.9.5 datasite, with a data owner's approval policy.

    Parameters
    ----------
    policy : str
        How the data owner decides each code request; one of :data:`POLICIES`.
    min_cell_size : int
        Fewest patients an output may rest on under ``min_cell_size``.
    threshold, nk_n, nk_k, p_ratio :
        ACRO's settings under ``acro`` (see :class:`pets.backends.acro_backend.Acro`).
    epsilon : float
        Under ``dp``: the privacy budget per patient the data owner grants the
        researcher for the run, spent by basic sequential composition.
    query_epsilon : float or None
        Under ``dp``: what each query spends; None shares ``epsilon`` equally across
        the workload (requests past the budget are denied).
    """

    def __init__(
        self,
        *,
        policy: str = "approve_all",
        min_cell_size: int = 10,
        threshold: int = 10,
        nk_n: int = 2,
        nk_k: float = 0.9,
        p_ratio: float = 0.1,
        epsilon: float = 1.0,
        query_epsilon: float | None = None,
    ) -> None:
        self.policy = policy
        self.min_cell_size = min_cell_size
        self.threshold = threshold
        self.nk_n = nk_n
        self.nk_k = nk_k
        self.p_ratio = p_ratio
        self.epsilon = epsilon
        self.query_epsilon = query_epsilon

    @property
    def capabilities(self) -> Capabilities:
        """Serves query and aggregate; parties in their own environment; a heuristic
        claim."""
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if not (isinstance(self.min_cell_size, int) and self.min_cell_size >= 1):
            raise ValueError(
                f"min_cell_size must be a whole number >= 1, got {self.min_cell_size!r}"
            )
        if not (isinstance(self.epsilon, int | float) and self.epsilon > 0):
            raise ValueError(f"epsilon must be > 0, got {self.epsilon!r}")
        if self.query_epsilon is not None and not self.query_epsilon > 0:
            raise ValueError(f"query_epsilon must be > 0, got {self.query_epsilon!r}")
        dp = self.policy == "dp"
        claim = Claim(
            security_model=SecurityModel.TRUSTED_THIRD_PARTY,
            declared_leakage=DECLARED_LEAKAGE,
            formal=False,
            notes=f"Heuristic, no formal guarantee. The researcher sees a mock, never the "
            f"rows; the data owner releases {POLICIES[self.policy]}. Each request is "
            "judged on its own, so answers that differ by a few patients can each pass; "
            "on tables the researcher receives each site's table before pooling.",
        )
        if dp:
            claim = Claim(
                epsilon=float(self.epsilon),
                delta=0.0,
                privacy_unit="patient",
                neighbouring="add-remove",
                accountant="the data owner's basic sequential composition of the "
                "approved OpenDP releases",
                security_model=SecurityModel.TRUSTED_THIRD_PARTY,
                declared_leakage=DECLARED_LEAKAGE,
                formal=True,
                notes="The researcher sees a mock, never the rows; the data owner approves "
                "only code that is the OpenDP template for its declared query and epsilon, "
                "and denies requests past the budget. Bounds are public clinical ranges.",
            )
        return Capabilities(
            deterministic=not dp,
            task_kinds=frozenset({"query", "aggregate"}),
            pet_class=PetClass.REMOTE,
            sockets=True,
            requirements=REQUIREMENTS,
            claim=claim,
            unseeded_randomness=(OPENDP_NOISE,) if dp else (),
        )

    def acro(self) -> Any:
        """The ``acro`` backend with this backend's ACRO settings and suppression off
        (an output with a failing cell is withheld whole), for the ``acro`` policy."""
        from pets.backends.acro_backend import Acro

        return Acro(
            threshold=self.threshold,
            nk_n=self.nk_n,
            nk_k=self.nk_k,
            p_ratio=self.p_ratio,
            suppress=False,
        )

    def run_party(self, context: PartyContext) -> QueryOutput | AggregateOutput | None:
        """Data holders serve their datasites; the researcher works through them."""
        self.capabilities  # noqa: B018
        task = context.task
        if task.kind not in ("query", "aggregate"):
            raise UnsupportedTask(f"syft serves query and aggregate, not {task.kind}")
        if task.kind == "aggregate" and self.policy in ("acro", "dp"):
            instead = "acro" if self.policy == "acro" else "opendp"
            raise UnsupportedTask(
                f"the {self.policy} policy decides query outputs; for tables, the "
                f"{instead} backend serves them"
            )
        if context.network is None:
            raise UnsupportedTask("syft needs the harness's sockets")
        holders = self.holders(task)
        if context.name in holders:
            if task.kind == "aggregate":
                review = self._review_table
            elif self.policy == "dp":
                review = Accountant(self.epsilon).review
            else:
                review = self._review_query
            serve_as_data_owner(
                context, task.recipient, lambda source, run: review(context.data, source, run)
            )
            return None
        if context.name != task.recipient:
            return None
        if task.kind == "query":
            return self._ask_queries(context, holders[0])
        return self._ask_tables(context, holders)

    @staticmethod
    def holders(task: Task) -> tuple[str, ...]:
        """The parties that run a datasite: the custodian of a query task, the data
        holders of an aggregate."""
        if task.kind == "query":
            return tuple(n for n in task.party_names if n != task.recipient)
        return task.parties_with_role("data_holder")

    # -- the data owners -----------------------------------------------------------

    def decide(self, frame: pd.DataFrame, query: Mapping[str, Any], output: Any) -> str:
        """The data owner's decision on one query output: ``""`` to approve it, else the
        reason it is denied. A histogram with one failing bin is denied whole, as ACRO
        does with suppression off.

        Raises
        ------
        ValueError
            If ``output`` is not the declared query's answer on ``frame``.
        """
        truth = answer_query(frame, query)
        if not np.allclose(
            np.asarray(output, dtype=float), np.asarray(truth, dtype=float), equal_nan=True
        ):
            raise ValueError("the code does not compute the query it declares")
        if self.policy == "approve_all":
            return ""
        if self.policy == "min_cell_size":
            n_rows = len(select_rows(frame, query.get("filter", "")))
            released = suppress_answer(query, truth, n_rows, self.min_cell_size)
            if released is None or np.isnan(np.asarray(released, dtype=float)).any():
                return f"an output cell rests on fewer than {self.min_cell_size} patients"
            return ""
        with tempfile.TemporaryDirectory(prefix="acro-") as scratch:
            _, refused = self.acro().answer_workload(frame, [dict(query)], Path(scratch))
        return refused.get("0", "")

    def decide_table(self, frame: pd.DataFrame, spec: Mapping[str, Any], output: Any) -> str:
        """The data owner's decision on one site table: ``""`` to approve it, else the
        reason it is denied.

        Raises
        ------
        ValueError
            If ``output`` is not the declared table on ``frame``.
        """
        expected = site_table(frame, spec)
        if not (
            isinstance(output, pd.DataFrame)
            and list(output.columns) == list(expected.columns)
            and len(output) == len(expected)
        ):
            raise ValueError("the code does not compute the table it declares")
        keys = list(spec["group_by"])
        got = output.sort_values(keys).reset_index(drop=True)
        want = expected.sort_values(keys).reset_index(drop=True)
        values = [c for c in want.columns if c not in keys]
        if not (
            got[keys].astype(str).equals(want[keys])
            and np.allclose(
                got[values].to_numpy(float), want[values].to_numpy(float), equal_nan=True
            )
        ):
            raise ValueError("the code does not compute the table it declares")
        if self.policy == "approve_all":
            return ""
        small = int((want["n"].dropna() < self.min_cell_size).sum())
        if small:
            return f"{small} released cells rest on fewer than {self.min_cell_size} patients"
        return ""

    def _review_query(self, frame: pd.DataFrame, source: str, run: Any) -> str:
        query = declared(source)
        if query is None:
            return "the code declares no query on its first line"
        return self.decide(frame, query, run())

    def _review_table(self, frame: pd.DataFrame, source: str, run: Any) -> str:
        spec = declared(source)
        if spec is None or not {"group_by", "sums"} <= set(spec):
            return "the code declares no table on its first line"
        return self.decide_table(frame, spec, run())

    # -- the researcher ------------------------------------------------------------

    def _ask_queries(self, context: PartyContext, custodian: str) -> QueryOutput:
        (session,) = connect_all(context, [custodian])
        queries = list(context.task.params["queries"])
        per_query = self.query_epsilon or self.epsilon / max(len(queries), 1)
        with context.phase("compute"):
            for i, query in enumerate(queries):
                if self.policy == "dp":
                    session.submit(f"q{i}", dp_query_code(f"q{i}", query, per_query))
                else:
                    session.submit(f"q{i}", query_code(f"q{i}", query))
            session.done_submitting()
            answers, refused = session.collect()
        out = QueryOutput(answers_from_wire(answers_to_wire(answers)), refused=refused)
        context.reveal("answers", out)
        return out

    def _ask_tables(self, context: PartyContext, holders: Sequence[str]) -> AggregateOutput:
        task = context.task
        group_by = list(task.params["group_by"])
        sums = sorted({m["column"] for m in task.params["measures"]})
        rule = None if self.policy == "approve_all" else self.min_cell_size
        sessions = connect_all(context, holders)
        with context.phase("compute"):
            for session in sessions:
                session.submit("site_table", table_code("site_table", group_by, sums, rule))
                session.done_submitting()
            collected = [session.collect() for session in sessions]
        grid = cell_grid(task)
        pooled = pd.DataFrame(0.0, index=grid, columns=["n", *[f"{c}_sum" for c in sums]])
        denied: dict[str, str] = {}
        for holder, (outputs, refused) in zip(holders, collected, strict=True):
            if refused:
                denied[holder] = refused[0]
                pooled[:] = np.nan
                continue
            pooled = pooled + on_grid(outputs[0], grid, group_by).to_numpy()
        out = AggregateOutput(finish_means(pooled, task))
        context.reveal("table", out)
        if denied:
            context.reveal("denied", denied)
        return out


class Accountant:
    """The data owner's review under the ``dp`` policy: approve only code that is the
    OpenDP template for the query and epsilon it declares, whose measurement's privacy
    map (OpenDP's own) is within the declared epsilon, while the budget lasts. The code
    is not run before approval: every run of a DP release spends budget.

    Parameters
    ----------
    budget : float
        The epsilon per patient granted for the run.
    """

    def __init__(self, budget: float) -> None:
        self.budget = float(budget)
        self.spent = 0.0

    def review(self, frame: pd.DataFrame, source: str, run: Any) -> str:
        """``""`` to approve the request in ``source``, else why it is denied."""
        from pets.backends.dp.opendp_backend import query_measurement

        spec, name = declared(source), function_name(source)
        if spec is None or name is None or spec.get("mechanism") != DP_MECHANISM:
            return f"the code declares no release through {DP_MECHANISM}"
        epsilon = float(spec["epsilon"])
        template = dp_query_code(name, spec["query"], epsilon)
        if ast.dump(ast.parse(source)) != ast.dump(ast.parse(template)):
            return "the code is not the approved DP template for what it declares"
        if not float(query_measurement(spec["query"], epsilon).map(1)) <= epsilon * (1 + 1e-9):
            return "the measurement's privacy loss exceeds the declared epsilon"
        if self.spent + epsilon > self.budget * (1 + 1e-9):
            return f"the privacy budget (epsilon {self.budget:g}) is spent"
        self.spent += epsilon
        return ""


def on_grid(table: pd.DataFrame, grid: pd.MultiIndex, group_by: Sequence[str]) -> pd.DataFrame:
    """A site's released table on the public grid, matched on the cells' labels as
    text: a cell the table lacks has no patients there (0); a suppressed cell is NaN."""
    labels = pd.MultiIndex.from_frame(table[list(group_by)].astype(str))
    values = table.drop(columns=list(group_by)).set_index(labels)
    as_text = pd.MultiIndex.from_tuples([tuple(str(v) for v in k) for k in grid])
    released = values.reindex(as_text)
    released.loc[~as_text.isin(labels)] = 0.0
    return released
