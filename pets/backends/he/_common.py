"""What the three HE backends share: secure aggregate tables and secure federated sums."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pets.api import AggregateOutput, Backend, LogisticModel, Task, UnsupportedTask
from pets.backends.federated import federated_averaging
from pets.backends.he._protocol import secure_sum
from pets.session import PartyView, Session
from pets.tasks import finish_means, local_aggregate, sums_from_vector
from pets.wire import pack, unpack

__all__ = ["HomomorphicBackend"]


class HomomorphicBackend(Backend):
    """Base of the HE backends; subclasses provide ``scheme(kind)`` and ``_inference``."""

    rounds: int
    local_steps: int
    learning_rate: float
    l2: float

    def scheme(self, kind: str) -> Any:  # pragma: no cover - abstract
        """Return the additive scheme configured for task ``kind``."""
        raise NotImplementedError

    def run(self, task: Task, session: Session) -> Any:
        """Answer ``task``; unsupported kinds raise :class:`UnsupportedTask`."""
        if task.kind not in self.capabilities.task_kinds:
            raise UnsupportedTask(f"{type(self).__name__} does not serve {task.kind!r}")
        return getattr(self, f"_{task.kind}")(task, session)

    def _aggregate(self, task: Task, session: Session) -> AggregateOutput:
        aggregators = task.parties_with_role("aggregator")
        if not aggregators:
            raise UnsupportedTask(
                "secure aggregation needs a party with role 'aggregator' (who adds "
                "ciphertexts without the key) besides the recipient who decrypts"
            )
        total = secure_sum(
            session,
            self.scheme("aggregate"),
            key_holder=task.recipient,
            aggregator=aggregators[0],
            holders=task.parties_with_role("data_holder"),
            contribution=lambda party: local_aggregate(party.data, task).to_numpy().ravel(),
        )
        with session.as_party(task.recipient) as party:
            with session.phase("reveal"):
                out = AggregateOutput(finish_means(sums_from_vector(total, task), task))
            party.reveal("table", out)
        return out

    def _train(self, task: Task, session: Session) -> LogisticModel:
        holders = list(task.parties_with_role("data_holder"))
        key_holder, aggregator = holders[0], task.recipient
        scheme = self.scheme("train")
        state: dict[str, Any] = {}

        def aggregate(
            contribution: Callable[[PartyView], np.ndarray], parties: Sequence[str]
        ) -> np.ndarray:
            total = secure_sum(
                session,
                scheme,
                key_holder=key_holder,
                aggregator=aggregator,
                holders=parties,
                contribution=contribution,
                state=state,
            )
            with session.as_party(key_holder) as party:
                party.send(aggregator, pack(total), tag="sum-clear")
            with session.as_party(aggregator) as party:
                return unpack(party.receive(key_holder, tag="sum-clear"))

        return federated_averaging(
            task,
            session,
            aggregate,
            rounds=self.rounds,
            local_steps=self.local_steps,
            learning_rate=self.learning_rate,
            l2=self.l2,
        )
