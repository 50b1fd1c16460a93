"""``fedavg-dp``: differentially private federated averaging.

Each trust runs its local steps as DP-SGD: every patient's gradient is
clipped to L2 norm ``clip``, the clipped gradients are summed, and Gaussian noise of
standard deviation ``noise_multiplier * clip`` (sampled by OpenDP) is added before the
step. A trust releases its patient count once, with Gaussian noise, for the weighting.
Every step is a Gaussian mechanism on the trust's own patients, so the privacy loss of
one patient is the zCDP sum over the trust's ``rounds * local_steps`` steps and its
count; each patient is in one trust, so the same guarantee covers the federation, and
it holds against the aggregator, which sees each trust's noisy update. The noise
multiplier is set so the whole run is (``epsilon``, ``delta``)-DP, by OpenDP's zCDP to
approximate-DP conversion.

Every party runs in its own process. Each trust sends its noisy count to the aggregator
(the recipient) once (``count``); each round the aggregator sends the global weights to
every trust (``global``) and each trust sends back its noisy local model (``update``).
The aggregator averages the models weighted by the noisy counts.
"""

from __future__ import annotations

import math

import numpy as np

from pets.api import (
    Backend,
    Capabilities,
    Claim,
    LogisticModel,
    PartyContext,
    PetClass,
    UnsupportedTask,
)
from pets.backends.dp.opendp_ops import gaussian_noise, zcdp_budget
from pets.backends.randomness import OPENDP_NOISE
from pets.tasks import design_matrix, labels
from pets.wire import pack, unpack

__all__ = ["FedAvgDP", "dp_sgd_update"]

#: Noise of the one-off count release, in patients (standard deviation).
_COUNT_NOISE = 10.0


def dp_sgd_update(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    *,
    steps: int,
    learning_rate: float,
    l2: float,
    clip: float,
    noise_multiplier: float,
    n_public: float,
) -> np.ndarray:
    """Run ``steps`` full-batch DP-SGD steps from ``weights`` (last entry: intercept).

    Each patient's gradient is clipped to L2 norm ``clip``; Gaussian noise of standard
    deviation ``noise_multiplier * clip`` is added to the sum, which is divided by the
    trust's released (noisy) count ``n_public``.
    """
    w = weights.copy()
    xb = np.hstack([x, np.ones((len(x), 1))])
    row_norms = np.linalg.norm(xb, axis=1)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        residual = p - y
        scale = np.minimum(1.0, clip / np.maximum(np.abs(residual) * row_norms, 1e-12))
        total = xb.T @ (residual * scale)
        noisy = total + gaussian_noise(len(w), noise_multiplier * clip)
        grad = noisy / max(n_public, 1.0)
        grad[:-1] += l2 * w[:-1]
        w -= learning_rate * grad
    return w


class FedAvgDP(Backend):
    """Federated averaging with DP-SGD at each trust.

    Parameters
    ----------
    epsilon, delta : float
        The run's (epsilon, delta)-DP guarantee per patient (add/remove).
    clip : float
        L2 bound of one patient's gradient.
    rounds, local_steps, learning_rate, l2
        As for ``fedavg``.
    """

    def __init__(
        self,
        *,
        epsilon: float = 1.0,
        delta: float = 1e-5,
        clip: float = 1.0,
        rounds: int = 20,
        local_steps: int = 5,
        learning_rate: float = 8.0,
        l2: float = 1e-4,
    ) -> None:
        self.epsilon = epsilon
        self.delta = delta
        self.clip = clip
        self.rounds = rounds
        self.local_steps = local_steps
        self.learning_rate = learning_rate
        self.l2 = l2

    @property
    def capabilities(self) -> Capabilities:
        """Serves ``train``; (epsilon, delta)-DP per patient."""
        if not self.epsilon > 0 or not 0 < self.delta < 1:
            raise ValueError(
                f"need epsilon > 0 and 0 < delta < 1, got {self.epsilon!r}, {self.delta!r}"
            )
        if not self.clip > 0:
            raise ValueError(f"clip must be > 0, got {self.clip!r}")
        return Capabilities(
            task_kinds=frozenset({"train"}),
            pet_class=PetClass.DP,
            claim=Claim(
                epsilon=float(self.epsilon),
                delta=float(self.delta),
                neighbouring="add-remove",
                accountant="zCDP over every DP-SGD step and the count release, "
                "converted by OpenDP; parallel across trusts",
                declared_leakage=("noisy model updates", "output"),
                formal=True,
                notes="Holds against the aggregator and anyone who sees the model; a "
                "trust's own rows never leave it.",
            ),
            extra="dp",
            unseeded_randomness=(OPENDP_NOISE,),
        )

    def noise_multiplier(self) -> float:
        """Noise standard deviation per unit of ``clip`` that spends the budget."""
        rho = zcdp_budget(self.epsilon, self.delta)
        rho_count = 1.0 / (2.0 * _COUNT_NOISE**2)
        if rho <= rho_count:
            raise UnsupportedTask(
                f"epsilon={self.epsilon} at delta={self.delta} is spent by the count "
                "release alone; raise epsilon"
            )
        steps = self.rounds * self.local_steps
        return math.sqrt(steps / (2.0 * (rho - rho_count)))

    def run_party(self, context: PartyContext) -> LogisticModel | None:
        """Train with DP-SGD at each trust, as one party's program: the aggregator (the
        recipient) averages the trusts' noisy models, weighted by their noisy counts."""
        self.capabilities  # noqa: B018
        task = context.task
        if task.kind != "train":
            raise UnsupportedTask(f"fedavg-dp serves train, not {task.kind}")
        features = list(task.params["features"])
        aggregator = task.recipient
        holders = list(task.parties_with_role("data_holder"))
        weights = np.zeros(len(features) + 1)
        if context.name in holders:
            with context.phase("setup"):
                sigma = self.noise_multiplier()
            noisy = len(context.data) + float(gaussian_noise(1, _COUNT_NOISE)[0])
            count = max(noisy, 1.0)
            x, y = design_matrix(context.data, features), labels(context.data, task)
            if context.name != aggregator:
                context.send(aggregator, pack(np.array([count])), tag="count")
        if context.name == aggregator:
            weights_of = {
                h: count if h == context.name else float(unpack(context.receive(h, tag="count"))[0])
                for h in holders
            }
        for _ in range(self.rounds):
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
                    local = dp_sgd_update(
                        x,
                        y,
                        start,
                        steps=self.local_steps,
                        learning_rate=self.learning_rate,
                        l2=self.l2,
                        clip=self.clip,
                        noise_multiplier=sigma,
                        n_public=count,
                    )
                if context.name != aggregator:
                    context.send(aggregator, pack(local), tag="update")
            if context.name == aggregator:
                total = sum(weights_of.values())
                weights = (
                    sum(
                        weights_of[h]
                        * (local if h == context.name else unpack(context.receive(h, tag="update")))
                        for h in holders
                    )
                    / total
                )
        if context.name != aggregator:
            return None
        model = LogisticModel(
            coef=weights[:-1], intercept=float(weights[-1]), features=tuple(features)
        )
        context.reveal("model", model)
        return model
