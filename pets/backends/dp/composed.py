"""``mpyc+opendp``: a differentially private aggregate whose noise no single party
removes.

The aggregate is computed by MPyC as in ``mpyc``, and every MPC party also secret-shares
a Gaussian noise vector it samples with OpenDP. Any coalition of up to ``t`` parties
knows only its own noise, so the honest parties' noise alone must carry the guarantee:
each of the ``m`` parties adds variance ``sigma**2 / (m - t)``. The recipient learns only
the noisy totals; nobody, not even the data holders together with up to ``t - 1``
others, sees an exact total. Each statistic vector (counts, and the clamped sums of each
measured column) gets an equal share of the zCDP budget, with its L2 sensitivity from
public bounds; the whole release is (``epsilon``, ``delta``)-DP per patient.
"""

from __future__ import annotations

import math

import numpy as np

from pets.api import AggregateOutput, Capabilities, Claim, PartyContext, PetClass, SecurityModel

# importing opendp_ops imports OpenDP, so the fork server the parties come from
# already holds it: every MPC party samples noise
from pets.backends.dp.opendp_ops import (
    clamp_means,
    clamped,
    gaussian_noise,
    public_bounds,
    zcdp_budget,
)
from pets.backends.mpc import Mpyc
from pets.backends.mpc.mpyc_backend import aggregate_length, to_fixed
from pets.backends.mpc.party import MpcParty
from pets.backends.randomness import OPENDP_NOISE
from pets.tasks import cell_grid, finish_means, local_aggregate, sums_from_vector

__all__ = ["MpycOpenDP"]


class MpycOpenDP(Mpyc):
    """Secure aggregation with distributed Gaussian noise (MPyC + OpenDP).

    Parameters
    ----------
    epsilon, delta : float
        The recipient's (epsilon, delta)-DP guarantee per patient (add/remove), which
        also holds against any ``threshold`` colluding parties.
    parties, threshold, vectorised, fraction_bits, start_timeout_s, step_timeout_s
        As for ``mpyc``.
    """

    def __init__(
        self,
        *,
        epsilon: float = 1.0,
        delta: float = 1e-6,
        parties: int = 3,
        threshold: int = 1,
        vectorised: bool = True,
        fraction_bits: int = 32,
        start_timeout_s: float = 60.0,
        step_timeout_s: float = 900.0,
    ) -> None:
        self.parties = parties
        self.threshold = threshold
        self.vectorised = vectorised
        self.fraction_bits = fraction_bits
        self.start_timeout_s = start_timeout_s
        self.step_timeout_s = step_timeout_s
        self.epsilon = epsilon
        self.delta = delta

    @property
    def capabilities(self) -> Capabilities:
        """Serves ``aggregate``: (epsilon, delta)-DP on top of the MPC claim."""
        mpc = super().capabilities.claim
        if not self.epsilon > 0 or not 0 < self.delta < 1:
            raise ValueError(
                f"need epsilon > 0 and 0 < delta < 1, got {self.epsilon!r}, {self.delta!r}"
            )
        return Capabilities(
            task_kinds=frozenset({"aggregate"}),
            pet_class=PetClass.DP,
            claim=Claim(
                epsilon=float(self.epsilon),
                delta=float(self.delta),
                neighbouring="add-remove",
                accountant="zCDP, equal shares per statistic, converted by OpenDP",
                security_model=SecurityModel.SEMI_HONEST,
                collusion_threshold=mpc.collusion_threshold,
                declared_leakage=("noisy output", "input sizes"),
                formal=True,
                notes="Nobody sees an exact total: the output is DP against the recipient "
                "and against up to t colluding parties, who know only their own noise.",
            ),
            needs_processes=True,
            extra="dp",
            sockets=True,
            unseeded_randomness=(OPENDP_NOISE,),
        )

    def _aggregate(self, context: PartyContext, mpc: MpcParty) -> AggregateOutput | None:
        """Every MPC party shares its own Gaussian noise, the data holders their clamped
        sums too; the recipient learns only the noisy totals."""
        task = context.task
        columns = sorted({m["column"] for m in task.params["measures"]})
        sensitivities = [1.0] + [max(abs(b) for b in public_bounds(c)) for c in columns]
        with context.phase("setup"):
            rho = zcdp_budget(self.epsilon, self.delta) / len(sensitivities)
        # each statistic vector's Gaussian standard deviation, shared by the honest parties
        sigmas = np.array([s / math.sqrt(2.0 * rho) for s in sensitivities])
        honest = mpc.m - self.threshold
        cells = len(cell_grid(task))
        with context.phase("encode"):
            noise = np.column_stack([gaussian_noise(cells, s / math.sqrt(honest)) for s in sigmas])
            if context.name in task.parties_with_role("data_holder"):
                noise += local_aggregate(clamped(context.data, columns), task).to_numpy()
            contribution = to_fixed(noise.ravel(), self.fraction_bits)
        total = self._secure_sum(
            context, mpc, contribution, senders=mpc.names, length=aggregate_length(task)
        )
        if total is None:
            return None
        sums = sums_from_vector(total, task)
        counts = sums["n"].clip(lower=0.0)
        table = finish_means(sums.assign(n=counts.clip(lower=1.0)), task)
        table["n"] = counts
        out = AggregateOutput(clamp_means(table, task))
        context.reveal("table", out)
        return out
