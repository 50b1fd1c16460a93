"""``mpyc``: secure multi-party computation with MPyC (Shamir secret sharing).

Every party of the card, plus extra compute servers up to ``parties`` (MPyC's Shamir
sharing needs an honest majority, so two-party cards get a third server), runs as its
own operating-system process; they talk over MPyC's own sockets on loopback. Inputs are
fixed-point integers (``fraction_bits``) in MPyC secure integers, so sums are exact to
``2**-fraction_bits`` per input. The harness meters every party's sockets.

- ``aggregate``: each data holder secret-shares its local sums and counts per cell; the
  parties add the shares; only the recipient learns the totals.
- ``linkage``: the recipient and the other holder secret-share their eligible
  identifiers; for every pair the parties open ``r * (x - y)`` (fresh secret random
  ``r``) to the recipient alone, which is zero exactly for equal identifiers; the
  recipient then secret-shares its match indicator and learns only the statistics'
  sums over the matches.
- ``inference``: the provider shares its patients' features, the supplier its weights;
  only the provider learns the linear scores (and applies the sigmoid itself).
- ``train``: federated averaging whose per-round sum of updates is computed by the
  parties; the aggregator learns only the sum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pets.api import (
    AggregateOutput,
    Backend,
    Capabilities,
    Claim,
    InferenceOutput,
    LinkageOutput,
    LogisticModel,
    PetClass,
    SecurityModel,
    Task,
    UnsupportedTask,
)
from pets.backends.federated import federated_averaging
from pets.backends.mpc._pool import PartyPool
from pets.session import PartyView, Session
from pets.tasks import (
    design_matrix,
    eligible,
    finish_means,
    local_aggregate,
    sums_from_vector,
)

__all__ = ["Mpyc", "from_fixed", "to_fixed"]

#: Bit length of the secure integers: room for sums of 2**fraction_bits-scaled inputs
#: and for products of two such inputs in inference.
_BIT_LENGTH = 96


def to_fixed(values: np.ndarray, fraction_bits: int) -> np.ndarray:
    """Encode floats as Python integers scaled by ``2**fraction_bits`` (object array)."""
    scaled = np.rint(np.asarray(values, dtype=np.float64) * 2.0**fraction_bits)
    return np.array([int(v) for v in scaled.ravel()], dtype=object).reshape(scaled.shape)


def from_fixed(values: np.ndarray, fraction_bits: int) -> np.ndarray:
    """Decode integers scaled by ``2**fraction_bits`` back to floats."""
    return np.array([int(v) for v in np.ravel(values)], dtype=np.float64) / 2.0**fraction_bits


class Mpyc(Backend):
    """Secure multi-party computation with MPyC, each party its own process.

    Parameters
    ----------
    parties : int
        Least number of MPyC parties; the card's parties come first, then compute
        servers ``mpc_server_<i>`` until there are this many.
    threshold : int
        Shamir threshold t: the claim holds against up to t colluding parties;
        needs more than 2t parties.
    vectorised : bool
        Use MPyC's secure arrays for sums; False sends one secure integer per value
        (kept to measure the difference).
    fraction_bits : int
        Fixed-point precision of inputs.
    base_port : int or None
        First of consecutive loopback ports, one per party; None picks free ports.
    start_timeout_s, step_timeout_s : float
        Deadlines for the parties to connect and for each secure step.
    max_pairs : int
        Largest number of identifier pairs a linkage compares (every pair is one
        secure multiplication and one opened field element); larger linkages are
        refused before any work.
    rounds, local_steps, learning_rate, l2
        Federated-averaging settings for ``train`` (as for ``fedavg``).
    """

    def __init__(
        self,
        *,
        parties: int = 3,
        threshold: int = 1,
        vectorised: bool = True,
        fraction_bits: int = 32,
        base_port: int | None = None,
        start_timeout_s: float = 60.0,
        step_timeout_s: float = 900.0,
        max_pairs: int = 5_000_000,
        rounds: int = 30,
        local_steps: int = 10,
        learning_rate: float = 4.0,
        l2: float = 1e-4,
    ) -> None:
        self.parties = parties
        self.threshold = threshold
        self.vectorised = vectorised
        self.fraction_bits = fraction_bits
        self.base_port = base_port
        self.start_timeout_s = start_timeout_s
        self.step_timeout_s = step_timeout_s
        self.max_pairs = max_pairs
        self.rounds = rounds
        self.local_steps = local_steps
        self.learning_rate = learning_rate
        self.l2 = l2

    @property
    def capabilities(self) -> Capabilities:
        """Serves aggregate, linkage, inference and train; semi-honest, t colluders."""
        if self.threshold < 0 or 2 * self.threshold >= max(self.parties, 1):
            raise ValueError(
                f"threshold {self.threshold} needs more than {2 * self.threshold} parties "
                f"(Shamir sharing with an honest majority); parties={self.parties}"
            )
        if not 0 < self.fraction_bits <= 32:
            raise ValueError(f"fraction_bits must be in 1..32, got {self.fraction_bits}")
        return Capabilities(
            task_kinds=frozenset({"aggregate", "linkage", "inference", "train"}),
            pet_class=PetClass.MPC,
            claim=Claim(
                security_model=SecurityModel.SEMI_HONEST,
                collusion_threshold=self.threshold,
                declared_leakage=("output", "input sizes"),
                formal=True,
                notes="Shamir shares reveal nothing to up to t colluding parties that "
                "follow the protocol; in linkage the recipient learns which of its own "
                "rows match. The loopback links here are unencrypted: between sites "
                "they need TLS.",
            ),
            needs_processes=True,
            extra="mpc",
        )

    # -- plumbing ----------------------------------------------------------------------
    def _pool(self, task: Task, session: Session) -> PartyPool:
        names = list(task.party_names)
        for i in range(1, max(self.parties, len(names)) - len(names) + 1):
            session.add_helper(f"mpc_server_{i}", role="compute")
            names.append(f"mpc_server_{i}")
        self.capabilities  # noqa: B018  (validates the parameters)
        return PartyPool(
            session,
            names,
            threshold=self.threshold,
            bit_length=_BIT_LENGTH,
            base_port=self.base_port,
            start_timeout_s=self.start_timeout_s,
            step_timeout_s=self.step_timeout_s,
        )

    def _secure_sum(
        self,
        pool: PartyPool,
        session: Session,
        contributions: dict[str, np.ndarray],
        receiver: str,
    ) -> np.ndarray:
        length = len(next(iter(contributions.values())))
        with session.phase("compute"):
            out = pool.run(
                "secure_sum",
                {pool.pid_of(h): {"input": v} for h, v in contributions.items()},
                length=length,
                senders=[pool.pid_of(h) for h in contributions],
                receivers=[pool.pid_of(receiver)],
                vectorised=self.vectorised,
            )
        with session.as_party(receiver):
            return from_fixed(out[pool.pid_of(receiver)], self.fraction_bits)

    def run(self, task: Task, session: Session) -> Any:
        """Answer ``task`` with the parties as separate processes."""
        if task.kind not in self.capabilities.task_kinds:
            raise UnsupportedTask(f"mpyc does not serve {task.kind!r}")
        if task.kind == "linkage" and task.params["reveal"] != "intersection":
            raise UnsupportedTask(
                "mpyc linkage opens the matches to the recipient; for a count-only "
                "linkage use psi-ecdh in cardinality mode"
            )
        with session.phase("setup"):
            pool = self._pool(task, session)
            pool.__enter__()
        try:
            out = getattr(self, f"_{task.kind}")(task, session, pool)
        except BaseException as exc:
            pool.__exit__(type(exc), exc, exc.__traceback__)
            raise
        with session.phase("setup"):
            pool.__exit__(None, None, None)
        return out

    # -- tasks -------------------------------------------------------------------------
    def _aggregate(self, task: Task, session: Session, pool: PartyPool) -> AggregateOutput:
        contributions = {}
        for holder in task.parties_with_role("data_holder"):
            with session.as_party(holder) as party, session.phase("encode"):
                vector = local_aggregate(party.data, task).to_numpy().ravel()
                contributions[holder] = to_fixed(vector, self.fraction_bits)
        total = self._secure_sum(pool, session, contributions, task.recipient)
        with session.as_party(task.recipient) as party:
            out = AggregateOutput(finish_means(sums_from_vector(total, task), task))
            party.reveal("table", out)
        return out

    def _linkage(self, task: Task, session: Session, pool: PartyPool) -> LinkageOutput:
        recipient = task.recipient
        (other,) = [n for n in task.party_names if n != recipient]
        id_column = task.params["id_column"]
        stats = list(task.params["statistics"])
        theirs = [s for s in stats if s["party"] == other]
        inputs: dict[int, dict[str, np.ndarray]] = {}
        with session.as_party(recipient) as party, session.phase("encode"):
            mine = eligible(party.data, task, recipient).sample(frac=1.0).reset_index(drop=True)
            inputs[pool.pid_of(recipient)] = {"ids": mine[id_column].to_numpy(np.int64)}
        with session.as_party(other) as party, session.phase("encode"):
            rows = eligible(party.data, task, other).sample(frac=1.0)
            values = rows[[s["column"] for s in theirs]].to_numpy(np.float64)
            inputs[pool.pid_of(other)] = {
                "ids": rows[id_column].to_numpy(np.int64),
                "values": to_fixed(values, self.fraction_bits).ravel(),
            }
        pairs = len(mine) * len(rows)  # both list sizes are public in this protocol
        if pairs > self.max_pairs:
            raise UnsupportedTask(
                f"mpyc linkage compares every pair: {len(mine)} x {len(rows)} = {pairs} "
                f"pairs exceeds max_pairs={self.max_pairs}; raise max_pairs (2.4 million "
                "pairs took 47 s and 1.5 GB per party on 2 cores) or use psi-ecdh"
            )
        with session.phase("compute"):
            out = pool.run(
                "link",
                inputs,
                owner=pool.pid_of(recipient),
                other=pool.pid_of(other),
                receiver=pool.pid_of(recipient),
                n_values=len(theirs),
            )
        with session.as_party(recipient) as party, session.phase("reveal"):
            result = out[pool.pid_of(recipient)]
            count = int(result[0])
            sums = from_fixed(result[1 : 1 + len(theirs)], self.fraction_bits)
            rows_matched = np.asarray(result[1 + len(theirs) :], dtype=np.int64)
            matched = mine.iloc[rows_matched]
            statistics = {}
            for stat in stats:
                name = f"{stat['column']}_{stat['stat']}"
                if stat["party"] == recipient:
                    total = float(matched[stat["column"]].sum())
                else:
                    total = float(sums[theirs.index(stat)])
                if stat["stat"] == "mean":
                    statistics[name] = total / count if count else float("nan")
                else:
                    statistics[name] = total
            ids = frozenset(int(v) for v in matched[id_column])
            linked = LinkageOutput(matches=ids, cardinality=count, statistics=statistics)
            party.reveal("linkage", linked)
        return linked

    def _inference(self, task: Task, session: Session, pool: PartyPool) -> InferenceOutput:
        provider, supplier = task.recipient, task.params["supplier"]
        f = self.fraction_bits
        with session.as_party(provider) as party, session.phase("encode"):
            x = design_matrix(party.data, task.params["features"])
            x = np.hstack([x, np.ones((len(x), 1))])
        with session.as_party(supplier) as party, session.phase("encode"):
            model = party.data
            weights = np.append(model.coef, model.intercept)
        with session.phase("compute"):
            out = pool.run(
                "score",
                {
                    pool.pid_of(provider): {"input": to_fixed(x, f).ravel()},
                    pool.pid_of(supplier): {"input": to_fixed(weights, f)},
                },
                provider=pool.pid_of(provider),
                supplier=pool.pid_of(supplier),
                n=len(x),
                d=x.shape[1],
            )
        with session.as_party(provider) as party, session.phase("reveal"):
            logits = from_fixed(out[pool.pid_of(provider)], 2 * f)
            result = InferenceOutput(1.0 / (1.0 + np.exp(-logits)))
            party.reveal("scores", result)
        return result

    def _train(self, task: Task, session: Session, pool: PartyPool) -> LogisticModel:
        def aggregate(
            contribution: Callable[[PartyView], np.ndarray], holders: Sequence[str]
        ) -> np.ndarray:
            contributions = {}
            for holder in holders:
                with session.as_party(holder) as party:
                    vector = contribution(party)
                    with session.phase("encode"):
                        contributions[holder] = to_fixed(vector, self.fraction_bits)
            return self._secure_sum(pool, session, contributions, task.recipient)

        return federated_averaging(
            task,
            session,
            aggregate,
            rounds=self.rounds,
            local_steps=self.local_steps,
            learning_rate=self.learning_rate,
            l2=self.l2,
        )
