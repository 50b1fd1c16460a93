"""DP backends that leak more than they claim, each by one route an outside supplier
could take, for the DP audit's tests. They are run as a supplier's plugin is: by import
target (``dp_leaks:TenthNoise``), each party program in its own process.

Every one claims epsilon-DP under add-remove neighbours (delta 0 unless a test sets
it). The data holders send exact sums to the aggregator, which adds the noise (central
DP), so the noise each backend adds is decided in one place.
"""

from __future__ import annotations

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
)
from pets.backends.plaintext import pool_rows, serve_workload
from pets.tasks import (
    LogisticModel,
    ReleaseOutput,
    answer_query,
    design_matrix,
    finish_means,
    fit_logistic,
    labels,
    local_aggregate,
    public_ranges,
    sums_from_vector,
)
from pets.wire import pack, unpack


def _claim(epsilon: float, note: str, delta: float = 0.0) -> Claim:
    return Claim(
        epsilon=float(epsilon),
        delta=float(delta),
        neighbouring="add-remove",
        accountant=note,
        formal=True,
    )


class _CentralAggregate(Backend):
    """Exact sums to the aggregator, which adds Laplace noise of ``scale(n)`` times the
    honest scale (``k * bound / epsilon`` per statistic: the budget split evenly over the
    count and each clamped sum) and hands the table to the analyst.

    Parameters
    ----------
    epsilon : float
        The claimed epsilon.
    seed : int or None
        Seed of the noise (None: fresh noise each run).
    delta : float
        The claimed delta (0: pure DP, audited by canary guessing; above 0, by the
        threshold test on one canary per run).
    """

    def __init__(
        self, *, epsilon: float = 1.0, seed: int | None = None, delta: float = 0.0
    ) -> None:
        self.epsilon = epsilon
        self.seed = seed
        self.delta = delta

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            task_kinds=frozenset({"aggregate"}),
            pet_class=PetClass.DP,
            claim=_claim(self.epsilon, type(self).__name__, self.delta),
        )

    def shortfall(self, rows: float) -> float:
        """The share of the honest noise added when the holders hold ``rows`` rows."""
        raise NotImplementedError

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        task = context.task
        ranges = public_ranges()
        columns = sorted({m["column"] for m in task.params["measures"]})
        holders = task.parties_with_role("data_holder")
        aggregator = task.parties_with_role("aggregator")[0]
        if context.name in holders:
            frame = context.data.assign(
                **{c: context.data[c].astype(float).clip(*ranges[c]) for c in columns}
            )
            context.send(aggregator, pack(local_aggregate(frame, task).to_numpy()), tag="sums")
            return None
        if context.name == aggregator:
            total = sum(np.asarray(unpack(context.receive(h, tag="sums"))) for h in holders)
            bounds = np.array([1.0] + [max(abs(v) for v in ranges[c]) for c in columns])
            honest = len(bounds) * bounds / self.epsilon
            share = self.shortfall(float(np.asarray(total)[:, 0].sum()))
            rng = np.random.default_rng(self.seed)
            noisy = total + rng.laplace(0.0, 1.0, np.shape(total)) * honest * share
            context.send(task.recipient, pack(noisy), tag="noisy")
            return None
        if context.name != task.recipient:
            return None
        sums = sums_from_vector(np.asarray(unpack(context.receive(aggregator, tag="noisy"))), task)
        counts = sums["n"].clip(lower=0.0)
        table = finish_means(sums.assign(n=counts.clip(lower=1.0)), task)
        table["n"] = counts
        out = AggregateOutput(table)
        context.reveal("table", out)
        return out


class HonestCentral(_CentralAggregate):
    """The honest noise on every input (the control of the planted leaks)."""

    def shortfall(self, rows: float) -> float:
        return 1.0


class TenthNoise(_CentralAggregate):
    """A tenth of the honest noise on every input."""

    def shortfall(self, rows: float) -> float:
        return 0.1


class NoNoise(_CentralAggregate):
    """No noise at all: the exact table under a DP claim."""

    def shortfall(self, rows: float) -> float:
        return 0.0


class SizeAware(_CentralAggregate):
    """The honest noise when the holders hold fewer than ``small`` rows in all (an
    audit's small neighbouring inputs), a tenth of it otherwise."""

    def __init__(
        self,
        *,
        epsilon: float = 1.0,
        seed: int | None = None,
        small: int = 1000,
        delta: float = 0.0,
    ):
        super().__init__(epsilon=epsilon, seed=seed, delta=delta)
        self.small = small

    def shortfall(self, rows: float) -> float:
        return 1.0 if rows < self.small else 0.1


class PerQueryTotal(Backend):
    """Answers a query workload with Laplace noise calibrated to ``epsilon`` per query,
    but claims ``epsilon`` for the whole workload: the total is understated by the
    number of queries.

    Parameters
    ----------
    epsilon : float
        The claimed (total) epsilon, spent in full on every query.
    seed : int or None
        Seed of the noise.
    """

    def __init__(self, *, epsilon: float = 1.0, seed: int | None = None) -> None:
        self.epsilon = epsilon
        self.seed = seed

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            task_kinds=frozenset({"query"}),
            pet_class=PetClass.DP,
            claim=_claim(self.epsilon, "per query, not composed"),
        )

    def run_party(self, context: PartyContext) -> QueryOutput | None:
        rng = np.random.default_rng(self.seed)
        ranges = public_ranges()

        def answer(data: pd.DataFrame, workload: list) -> list:
            answers = []
            for q in workload:
                exact = np.asarray(answer_query(data, q), float)
                if q["kind"] in ("sum", "mean"):
                    bound = max(abs(v) for v in ranges.get(q["column"], (1.0, 1.0)))
                    scale = bound / self.epsilon
                    if q["kind"] == "mean":
                        scale /= max(1.0, float(answer_query(data, {**q, "kind": "count"})))
                else:
                    scale = 1.0 / self.epsilon
                noisy = exact + rng.laplace(0.0, scale, exact.shape)
                answers.append(float(noisy) if noisy.ndim == 0 else noisy)
            return answers

        return serve_workload(context, answer)


class UnnoisedTraining(Backend):
    """Pools the trusts' rows and fits the logistic regression in the clear, claiming
    epsilon-DP for the model: no noise at all."""

    def __init__(self, *, epsilon: float = 1.0) -> None:
        self.epsilon = epsilon

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            task_kinds=frozenset({"train"}),
            pet_class=PetClass.DP,
            claim=_claim(self.epsilon, "none: the model is fitted without noise"),
        )

    def run_party(self, context: PartyContext) -> LogisticModel | None:
        task = context.task
        pooled = pool_rows(context, task.parties_with_role("data_holder"), task.recipient)
        if pooled is None:
            return None
        x = design_matrix(pooled, task.params["features"])
        out = fit_logistic(x, labels(pooled, task), task)
        context.reveal("model", out)
        return out


class CopyingRelease(Backend):
    """Releases the custodian's rows as they are, claiming epsilon-DP synthesis."""

    def __init__(self, *, epsilon: float = 1.0) -> None:
        self.epsilon = epsilon

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            task_kinds=frozenset({"release"}),
            pet_class=PetClass.DP,
            claim=_claim(self.epsilon, "none: the rows are copied"),
        )

    def run_party(self, context: PartyContext) -> ReleaseOutput | None:
        task = context.task
        (custodian,) = [n for n in task.party_names if n != task.recipient]
        pooled = pool_rows(context, [custodian], task.recipient)
        if pooled is None:
            return None
        out = ReleaseOutput(pooled[list(task.params["columns"])])
        context.reveal("release", out)
        return out
