"""Federated averaging of logistic regression, with plain or secure aggregation.

Each round the aggregator sends the global weights to every trust; each trust runs
``local_steps`` full-batch gradient steps on its own rows (L2-penalised logistic loss)
and contributes ``n_k · w_k`` and ``n_k``; the sums give the new global weights
``Σ n_k w_k / Σ n_k``. With plain aggregation the aggregator sees each trust's update;
with secure aggregation (see :mod:`pets.backends.he`, :mod:`pets.backends.mpc`, and
``fedavg-secagg`` here, which runs the rounds on one of them) it sees only the sum.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

from pets.api import (
    Backend,
    Capabilities,
    Claim,
    LogisticModel,
    PartyContext,
    PartyRole,
    PetClass,
    SecurityModel,
    Task,
    UnsupportedTask,
)
from pets.tasks import design_matrix, labels
from pets.wire import pack, unpack

__all__ = [
    "Aggregation",
    "FedAvg",
    "FedAvgSecAgg",
    "federated_averaging",
    "local_update",
    "plain_sum",
]

#: ``aggregate(context, contribution) -> total``: a party program that sums the data
#: holders' contributions (None at every other party) and returns the sum at the
#: recipient (None elsewhere).
Aggregation = Callable[[PartyContext, "np.ndarray | None"], "np.ndarray | None"]


def local_update(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    *,
    steps: int,
    learning_rate: float,
    l2: float,
) -> np.ndarray:
    """Run ``steps`` full-batch gradient steps from ``weights`` (last entry: intercept)."""
    w = weights.copy()
    xb = np.hstack([x, np.ones((len(x), 1))])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) / max(len(y), 1)
        grad[:-1] += l2 * w[:-1]
        w -= learning_rate * grad
    return w


def federated_averaging(
    context: PartyContext,
    aggregate: Aggregation,
    *,
    rounds: int,
    local_steps: int,
    learning_rate: float,
    l2: float,
) -> LogisticModel | None:
    """Train with federated averaging, as one party's program.

    The aggregator (the recipient) sends the global weights to every data holder each
    round; each holder trains locally and contributes ``n_k · w_k`` and ``n_k`` to
    ``aggregate``, whose sum, at the aggregator, gives the new weights. Every party runs
    ``aggregate`` each round (helper parties of a secure sum take part). The aggregator
    returns the model; every other party returns None.
    """
    task = context.task
    features = list(task.params["features"])
    aggregator = task.recipient
    holders = list(task.parties_with_role("data_holder"))
    weights = np.zeros(len(features) + 1)
    if context.name in holders:
        x, y = design_matrix(context.data, features), labels(context.data, task)
    for _ in range(rounds):
        contribution = None
        if context.name == aggregator:
            for holder in holders:
                if holder != aggregator:
                    context.send(holder, pack(weights), tag="global")
        if context.name in holders:
            start = (
                weights
                if context.name == aggregator
                else unpack(context.receive(aggregator, tag="global"))
            )
            with context.phase("train"):
                w = local_update(x, y, start, steps=local_steps, learning_rate=learning_rate, l2=l2)
            contribution = np.append(len(y) * w, len(y))
        total = aggregate(context, contribution)
        if context.name == aggregator:
            assert total is not None
            weights = total[:-1] / total[-1]
    if context.name != aggregator:
        return None
    model = LogisticModel(coef=weights[:-1], intercept=float(weights[-1]), features=tuple(features))
    context.reveal("model", model)
    return model


class FedAvg(Backend):
    """Federated averaging with plain aggregation: each trust's update reaches the
    aggregator in the clear.

    Parameters
    ----------
    rounds : int
        Communication rounds.
    local_steps : int
        Gradient steps per trust per round.
    learning_rate : float
        Step size.
    l2 : float
        L2 penalty on the weights (not the intercept).
    """

    def __init__(
        self,
        *,
        rounds: int = 30,
        local_steps: int = 10,
        learning_rate: float = 4.0,
        l2: float = 1e-4,
    ) -> None:
        self.rounds = rounds
        self.local_steps = local_steps
        self.learning_rate = learning_rate
        self.l2 = l2

    @property
    def capabilities(self) -> Capabilities:
        """Serves ``train``; declares that the aggregator sees each trust's update."""
        return Capabilities(
            deterministic=True,
            task_kinds=frozenset({"train"}),
            pet_class=PetClass.FEDERATED,
            claim=Claim(
                declared_leakage=("model updates", "output"),
                formal=False,
                notes="Rows stay with the trusts; each trust's update is seen by "
                "the aggregator, and one patient's gradient reveals them.",
            ),
        )

    def run_party(self, context: PartyContext) -> LogisticModel | None:
        """Train across the data holders; updates reach the aggregator in the clear."""
        if context.task.kind != "train":
            raise UnsupportedTask(f"fedavg serves train, not {context.task.kind}")
        return federated_averaging(
            context,
            plain_sum,
            rounds=self.rounds,
            local_steps=self.local_steps,
            learning_rate=self.learning_rate,
            l2=self.l2,
        )


def plain_sum(context: PartyContext, contribution: np.ndarray | None) -> np.ndarray | None:
    """Each data holder sends its contribution to the recipient in the clear; the
    recipient returns their sum (an :data:`Aggregation` without any protection)."""
    task = context.task
    holders = task.parties_with_role("data_holder")
    if context.name != task.recipient:
        if contribution is not None:
            context.send(task.recipient, pack(contribution), tag="update")
        return None
    parts = [
        contribution if h == context.name else unpack(context.receive(h, tag="update"))
        for h in holders
    ]
    return sum(parts)


#: Secure-aggregation backends fedavg-secagg can run on: name -> (module, class, extra).
_SECURE_SUMS = {
    "mpyc": ("pets.backends.mpc", "Mpyc", "mpc"),
    "paillier": ("pets.backends.he.paillier", "Paillier", "he"),
    "tenseal-ckks": ("pets.backends.he.ckks", "TensealCKKS", "he"),
}


class FedAvgSecAgg(Backend):
    """Federated averaging with secure aggregation of the updates.

    Parameters
    ----------
    via : {"mpyc", "paillier", "tenseal-ckks"}
        The secure-aggregation backend.
    rounds, local_steps, learning_rate, l2
        As for ``fedavg``.
    """

    def __init__(
        self,
        *,
        via: str = "mpyc",
        rounds: int = 30,
        local_steps: int = 10,
        learning_rate: float = 4.0,
        l2: float = 1e-4,
    ) -> None:
        self.via = via
        self.rounds = rounds
        self.local_steps = local_steps
        self.learning_rate = learning_rate
        self.l2 = l2

    def _secure(self) -> Backend:
        if self.via not in _SECURE_SUMS:
            raise ValueError(f"via {self.via!r}; allowed: {', '.join(_SECURE_SUMS)}")
        module, name, extra = _SECURE_SUMS[self.via]
        try:
            cls: Callable[..., Backend] = getattr(importlib.import_module(module), name)
        except ImportError as exc:
            raise UnsupportedTask(
                f"fedavg-secagg via {self.via} needs the {extra!r} extra: {exc}"
            ) from None
        return cls(
            rounds=self.rounds,
            local_steps=self.local_steps,
            learning_rate=self.learning_rate,
            l2=self.l2,
        )

    @property
    def capabilities(self) -> Capabilities:
        """Serves ``train``; the claim is the secure-aggregation backend's."""
        if self.via not in _SECURE_SUMS:
            raise ValueError(f"via {self.via!r}; allowed: {', '.join(_SECURE_SUMS)}")
        try:
            claim = self._secure().capabilities.claim
        except UnsupportedTask:
            claim = Claim(security_model=SecurityModel.SEMI_HONEST, formal=True)
        return Capabilities(
            deterministic=True,
            task_kinds=frozenset({"train"}),
            pet_class=PetClass.FEDERATED,
            claim=claim,
            needs_processes=self.via == "mpyc",
            extra=_SECURE_SUMS[self.via][2],
            sockets=self.via == "mpyc",
        )

    def helpers(self, task: Task) -> tuple[PartyRole, ...]:
        """The secure-aggregation backend's helper parties."""
        return self._secure().helpers(task)

    def run_party(self, context: PartyContext) -> LogisticModel | None:
        """Train; each round's sum of updates runs on the secure backend."""
        if context.task.kind != "train":
            raise UnsupportedTask(f"fedavg-secagg serves train, not {context.task.kind}")
        return self._secure().run_party(context)
