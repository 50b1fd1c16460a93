"""``mpyc``: secure multi-party computation with MPyC (Shamir secret sharing).

Every party of the card, plus compute servers up to ``parties`` (MPyC's Shamir sharing
needs an honest majority, so two-party cards get a third server), runs this party
program in its own operating-system process, with only its own data; the parties talk
over MPyC's own sockets, which the harness relays and meters. Inputs are fixed-point
integers (``fraction_bits``) in MPyC secure integers, so sums are exact to
``2**-fraction_bits`` per input.

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

from collections.abc import Sequence
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
    PartyContext,
    PartyRole,
    PetClass,
    SecurityModel,
    Task,
    UnsupportedTask,
)
from pets.backends.federated import federated_averaging
from pets.backends.mpc.party import MpcParty
from pets.tasks import (
    cell_grid,
    design_matrix,
    eligible,
    finish_means,
    local_aggregate,
    sums_from_vector,
)

__all__ = ["Mpyc", "aggregate_length", "from_fixed", "to_fixed"]

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


def aggregate_length(task: Task) -> int:
    """Length of a flattened :func:`~pets.tasks.local_aggregate` table (public)."""
    columns = {m["column"] for m in task.params["measures"]}
    return len(cell_grid(task)) * (1 + len(columns))


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
    start_timeout_s : float
        How long each party waits for every other party to connect before it gives up
        (the cell then ends ``party_failed``).
    step_timeout_s : float
        How long each party waits for one secure step (a sum, a linkage, the scores,
        the shutdown) before it gives up: a peer that stops answering without dying.
    max_pairs : int
        Largest number of identifier pairs a linkage compares (every pair is one
        secure multiplication and one opened field element); larger linkages are
        refused once the two (public) list sizes are known, before any secure work.
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
            deterministic=True,
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
            sockets=True,
        )

    def helpers(self, task: Task) -> tuple[PartyRole, ...]:
        """Compute servers ``mpc_server_1``, ... until there are ``parties`` parties."""
        extra = max(self.parties, len(task.party_names)) - len(task.party_names)
        return tuple(PartyRole(f"mpc_server_{i}", "compute") for i in range(1, extra + 1))

    # -- the party program ---------------------------------------------------------------
    def run_party(self, context: PartyContext) -> Any:
        """Start MPyC on the relayed sockets, run the task's secure protocol, shut down."""
        task = context.task
        if task.kind not in self.capabilities.task_kinds:
            raise UnsupportedTask(f"{type(self).__name__} does not serve {task.kind!r}")
        if task.kind == "linkage" and task.params["reveal"] != "intersection":
            raise UnsupportedTask(
                "mpyc linkage opens the matches to the recipient; for a count-only "
                "linkage use psi-ecdh in cardinality mode"
            )
        if context.network is None:
            raise RuntimeError("mpyc needs the harness's sockets (Capabilities.sockets)")
        with context.phase("setup"):
            mpc = MpcParty(
                context.network,
                context.name,
                threshold=self.threshold,
                bit_length=_BIT_LENGTH,
                start_timeout_s=self.start_timeout_s,
                step_timeout_s=self.step_timeout_s,
            )
        try:
            out = getattr(self, f"_{task.kind}")(context, mpc)
        except BaseException:
            mpc.abort()
            raise
        with context.phase("setup"):
            mpc.stop()
        return out

    def _secure_sum(
        self,
        context: PartyContext,
        mpc: MpcParty,
        contribution: np.ndarray | None,
        *,
        senders: Sequence[str],
        length: int,
    ) -> np.ndarray | None:
        """Sum the senders' fixed-point vectors; return the floats at the recipient."""
        with context.phase("compute"):
            out = mpc.run(
                mpc.secure_sum(
                    contribution,
                    length,
                    [mpc.pid_of(s) for s in senders],
                    [mpc.pid_of(context.task.recipient)],
                    vectorised=self.vectorised,
                ),
                "the secure sum",
            )
        return None if out is None else from_fixed(out, self.fraction_bits)

    # -- tasks -------------------------------------------------------------------------
    def _aggregate(self, context: PartyContext, mpc: MpcParty) -> AggregateOutput | None:
        task = context.task
        holders = task.parties_with_role("data_holder")
        contribution = None
        if context.name in holders:
            with context.phase("encode"):
                vector = local_aggregate(context.data, task).to_numpy().ravel()
                contribution = to_fixed(vector, self.fraction_bits)
        total = self._secure_sum(
            context, mpc, contribution, senders=holders, length=aggregate_length(task)
        )
        if total is None:
            return None
        out = AggregateOutput(finish_means(sums_from_vector(total, task), task))
        context.reveal("table", out)
        return out

    def _linkage(self, context: PartyContext, mpc: MpcParty) -> LinkageOutput | None:
        task = context.task
        recipient = task.recipient
        (other,) = [n for n in task.party_names if n != recipient]
        id_column = task.params["id_column"]
        stats = list(task.params["statistics"])
        theirs = [s for s in stats if s["party"] == other]
        ids = values = mine = None
        if context.name == recipient:
            with context.phase("encode"):
                mine = eligible(context.data, task, recipient).sample(frac=1.0)
                mine = mine.reset_index(drop=True)
                ids = mine[id_column].to_numpy(np.int64)
        elif context.name == other:
            with context.phase("encode"):
                rows = eligible(context.data, task, other).sample(frac=1.0)
                ids = rows[id_column].to_numpy(np.int64)
                found = rows[[s["column"] for s in theirs]].to_numpy(np.float64)
                values = to_fixed(found, self.fraction_bits).ravel()
        owner, holder = mpc.pid_of(recipient), mpc.pid_of(other)
        size = None if ids is None else len(ids)
        with context.phase("compute"):
            n_x = mpc.run(mpc.exchange(size, owner), "the list sizes")
            n_y = mpc.run(mpc.exchange(size, holder), "the list sizes")
        if n_x * n_y > self.max_pairs:  # both list sizes are public in this protocol
            raise UnsupportedTask(
                f"mpyc linkage compares every pair: {n_x} x {n_y} = {n_x * n_y} pairs "
                f"exceeds max_pairs={self.max_pairs}; raise max_pairs (2.4 million pairs "
                "took 47 s and 1.5 GB per party on 2 cores) or use psi-ecdh"
            )
        with context.phase("compute"):
            found = mpc.run(
                mpc.link(
                    ids,
                    values,
                    sizes=(n_x, n_y),
                    owner=owner,
                    other=holder,
                    n_values=len(theirs),
                ),
                "the linkage",
            )
        if found is None:
            return None
        assert mine is not None
        with context.phase("reveal"):
            sums, rows_matched = found
            count = int(sums[0])
            totals = from_fixed(sums[1:], self.fraction_bits)
            matched = mine.iloc[rows_matched]
            statistics = {}
            for stat in stats:
                name = f"{stat['column']}_{stat['stat']}"
                if stat["party"] == recipient:
                    total = float(matched[stat["column"]].sum())
                else:
                    total = float(totals[theirs.index(stat)])
                if stat["stat"] == "mean":
                    statistics[name] = total / count if count else float("nan")
                else:
                    statistics[name] = total
            matches = frozenset(int(v) for v in matched[id_column])
            linked = LinkageOutput(matches=matches, cardinality=count, statistics=statistics)
            context.reveal("linkage", linked)
        return linked

    def _inference(self, context: PartyContext, mpc: MpcParty) -> InferenceOutput | None:
        task = context.task
        provider, supplier = task.recipient, task.params["supplier"]
        f = self.fraction_bits
        d = len(task.params["features"]) + 1
        x = w = None
        if context.name == provider:
            with context.phase("encode"):
                x = design_matrix(context.data, task.params["features"])
                x = to_fixed(np.hstack([x, np.ones((len(x), 1))]), f)
        elif context.name == supplier:
            with context.phase("encode"):
                model = context.data
                w = to_fixed(np.append(model.coef, model.intercept), f)
        with context.phase("compute"):
            # the number of patients is the provider's; the other parties need it
            n = mpc.run(
                mpc.exchange(None if x is None else len(x), mpc.pid_of(provider)),
                "the number of patients",
            )
            out = mpc.run(
                mpc.score(
                    x,
                    w,
                    n=n,
                    d=d,
                    provider=mpc.pid_of(provider),
                    supplier=mpc.pid_of(supplier),
                ),
                "the scores",
            )
        if out is None:
            return None
        with context.phase("reveal"):
            logits = from_fixed(out, 2 * f)
            result = InferenceOutput(1.0 / (1.0 + np.exp(-logits)))
            context.reveal("scores", result)
        return result

    def _train(self, context: PartyContext, mpc: MpcParty) -> LogisticModel | None:
        task = context.task
        holders = task.parties_with_role("data_holder")
        length = len(task.params["features"]) + 2  # n_k * weights (intercept last), n_k

        def aggregate(ctx: PartyContext, contribution: np.ndarray | None) -> np.ndarray | None:
            fixed = None
            if contribution is not None:
                with ctx.phase("encode"):
                    fixed = to_fixed(contribution, self.fraction_bits)
            return self._secure_sum(ctx, mpc, fixed, senders=holders, length=length)

        return federated_averaging(
            context,
            aggregate,
            rounds=self.rounds,
            local_steps=self.local_steps,
            learning_rate=self.learning_rate,
            l2=self.l2,
        )
