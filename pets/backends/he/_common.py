"""What the three HE backends share: secure aggregate tables and secure federated sums."""

from __future__ import annotations

from typing import Any

import numpy as np

from pets.api import AggregateOutput, Backend, LogisticModel, PartyContext, UnsupportedTask
from pets.backends.federated import federated_averaging
from pets.backends.he._protocol import make_keys, secure_sum
from pets.tasks import cell_grid, finish_means, local_aggregate, sums_from_vector
from pets.wire import pack, unpack

__all__ = ["HomomorphicBackend"]


class HomomorphicBackend(Backend):
    """Base of the HE backends; subclasses provide ``scheme(kind)`` and ``_inference``.

    Every party of the card runs :meth:`run_party`; the HE backends bring no helper
    parties (the key holder and the aggregator are card parties).
    """

    rounds: int
    local_steps: int
    learning_rate: float
    l2: float

    def scheme(self, kind: str) -> Any:  # pragma: no cover - abstract
        """Return the additive scheme configured for task ``kind``."""
        raise NotImplementedError

    def run_party(self, context: PartyContext) -> Any:
        """This party's part of the task; the recipient returns the output, every other
        party None. Unsupported kinds raise :class:`UnsupportedTask`."""
        kind = context.task.kind
        if kind not in self.capabilities.task_kinds:
            raise UnsupportedTask(f"{type(self).__name__} does not serve {kind!r}")
        return getattr(self, f"_{kind}")(context)

    def _aggregate(self, context: PartyContext) -> AggregateOutput | None:
        """Secure aggregate: the recipient holds the key, the aggregator adds."""
        task = context.task
        aggregators = task.parties_with_role("aggregator")
        if not aggregators:
            raise UnsupportedTask(
                "secure aggregation needs a party with role 'aggregator' (who adds "
                "ciphertexts without the key) besides the recipient who decrypts"
            )
        holders = task.parties_with_role("data_holder")
        contribution = None
        if context.name in holders:
            with context.phase("encode"):
                contribution = local_aggregate(context.data, task).to_numpy().ravel()
        # The flattened table's length is public: cells × (count + one sum per column).
        columns = 1 + len({m["column"] for m in task.params["measures"]})
        total = secure_sum(
            context,
            self.scheme("aggregate"),
            key_holder=task.recipient,
            aggregator=aggregators[0],
            holders=holders,
            contribution=contribution,
            length=len(cell_grid(task)) * columns,
        )
        if total is None:
            return None
        with context.phase("reveal"):
            out = AggregateOutput(finish_means(sums_from_vector(total, task), task))
        context.reveal("table", out)
        return out

    def _train(self, context: PartyContext) -> LogisticModel | None:
        """Federated averaging whose sums of updates run under encryption.

        The first trust holds the key (made once per run, before the first round, in its
        own process) and sends each decrypted sum to the aggregator (the recipient), which
        adds ciphertexts.
        """
        task = context.task
        holders = list(task.parties_with_role("data_holder"))
        key_holder, aggregator = holders[0], task.recipient
        scheme = self.scheme("train")
        length = len(task.params["features"]) + 2  # n_k · w_k (weights, intercept), n_k
        keys: dict[str, Any] = {}
        if context.name == key_holder:
            # Keys go out before the first round, alongside the first global weights.
            make_keys(context, scheme, aggregator=aggregator, holders=holders, keys=keys)

        def aggregate(context: PartyContext, contribution: np.ndarray | None) -> np.ndarray | None:
            total = secure_sum(
                context,
                scheme,
                key_holder=key_holder,
                aggregator=aggregator,
                holders=holders,
                contribution=contribution,
                length=length,
                keys=keys,
            )
            if context.name == key_holder:
                context.send(aggregator, pack(total), tag="sum-clear")
            if context.name == aggregator:
                return unpack(context.receive(key_holder, tag="sum-clear"))
            return None

        return federated_averaging(
            context,
            aggregate,
            rounds=self.rounds,
            local_steps=self.local_steps,
            learning_rate=self.learning_rate,
            l2=self.l2,
        )
