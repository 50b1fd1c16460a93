"""What every attack is given and what it returns.

An attack family is a function ``attack(context) -> list[AttackResult]``. The
:class:`AttackContext` holds what the harness knows (the problem with every party's
data, the session with every party's view, the output the recipient learned, the
backend's claim) and a :class:`Rerun` oracle that runs the same backend, with the same
parameters, on data or a workload the harness chose: that is how the attacker's extra
observations are produced (a second release after a patient left, a researcher's own
queries, many runs on neighbouring inputs for a DP audit). The attack decides what the
attacker observes; the harness scores it, never the backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pets.api import Claim
from pets.leakage.rates import (
    Rate,
    balanced_coins,
    balanced_targets,
    control_share,
    residual_risk,
)
from pets.session import Session
from pets.tasks import Problem

__all__ = [
    "ATTACKER_MODELS",
    "EFFORT",
    "AttackContext",
    "AttackResult",
    "Effort",
    "Rerun",
    "balanced_coins",
    "balanced_targets",
    "control_share",
    "make_rerun",
    "not_applicable",
    "rate_result",
]

#: The attacker models, as named in scenario cards.
ATTACKER_MODELS = {
    "A0": "recipient of the released output",
    "A1": "motivated intruder: the output plus auxiliary quasi-identifiers of targets",
    "A2": "honest-but-curious party: its own input, its transcript and the outputs",
    "A3": "worst-case auditor: knows every record but the target",
}

#: ``rerun(problem) -> (output, session)``: run the cell's backend afresh on ``problem``.
Rerun = Callable[[Problem], "tuple[Any, Session]"]


@dataclass(frozen=True)
class Effort:
    """How hard the harness attacks in one leakage mode.

    Parameters
    ----------
    targets : int
        Target patients per differencing, reconstruction or linkage attack.
    attacks : int
        Attack attempts (queries, predicates, targets) per release attack.
    shadows : int
        Shadow models per membership-inference attack.
    audit_trials : int
        Runs of the mechanism in a DP audit of published figures (aggregates, query
        workloads): a count, never a time budget, so an audit is the same on any
        machine. An aggregate run carries one canary per cell of the grid.
    audit_model_trials : int
        Runs (trainings) in a DP audit of a trained model; 0 runs none.
    audit_release_trials : int
        Runs (syntheses) in a DP audit of a released table; 0 runs none.
    probe_seconds : float
        Time budget of an attack that reruns the backend once per target or two
        (cardinality probing, federated-update reconstruction); at least one rerun.
    """

    targets: int
    attacks: int
    shadows: int
    audit_trials: int
    audit_model_trials: int
    audit_release_trials: int
    probe_seconds: float


#: Effort per mode; ``off`` runs no attack.
EFFORT = {
    "fast": Effort(
        targets=40,
        attacks=500,
        shadows=8,
        audit_trials=60,
        audit_model_trials=0,
        audit_release_trials=0,
        probe_seconds=5,
    ),
    "full": Effort(
        targets=120,
        attacks=2000,
        shadows=16,
        audit_trials=800,
        audit_model_trials=200,
        audit_release_trials=60,
        probe_seconds=120,
    ),
}


@dataclass
class AttackContext:
    """Everything the harness hands an attack family.

    Parameters
    ----------
    problem : Problem
        The cell's problem: every party's data, the harness's evaluation material.
    session : Session
        The finished run's session: each party's received bytes and reveals.
    output : Any
        What the recipient learned.
    claim : Claim
        The backend's formal claim.
    attackers : tuple of str
        Attacker models the scenario card lists; attacks of other models are not run.
    effort : Effort
        How hard to attack.
    rng : numpy.random.Generator
        Seeded generator for target choice and controls.
    rerun : Rerun or None
        Oracle running the same backend on harness-chosen data; None when the harness
        has none (then attacks that need it say so).
    """

    problem: Problem
    session: Session
    output: Any
    claim: Claim
    attackers: tuple[str, ...]
    effort: Effort
    rng: np.random.Generator
    rerun: Rerun | None = None
    mode: str = "fast"
    reruns: int = field(default=0, init=False)
    rerun_seconds: float = field(default=0.0, init=False)

    def run_again(self, problem: Problem) -> tuple[Any, Session]:
        """Run the backend on ``problem`` through the oracle, counting runs and time."""
        if self.rerun is None:
            raise RuntimeError("no rerun oracle: this attack needs the backend run again")
        start = time.perf_counter()
        try:
            return self.rerun(problem)
        finally:
            self.reruns += 1
            self.rerun_seconds += time.perf_counter() - start

    def applies(self, model: str) -> bool:
        """Whether the card lists attacker ``model``."""
        return model in self.attackers


@dataclass
class AttackResult:
    """One attack by one attacker model against one observer's view.

    An attack that could not observe anything is ``applicable=False`` with a ``note``;
    it carries no rate, never a zero. ``diagnostic`` results (distance to closest
    record) are reported but never enter the headline or flags.
    """

    attack: str
    attacker: str
    observer: str
    applicable: bool = True
    success_rate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    baseline: float | None = None
    control_rate: float | None = None
    residual_risk: float | None = None
    trials: int | None = None
    cost_s: float = 0.0
    diagnostic: bool = False
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready data; fields that do not apply are left out."""
        out: dict[str, Any] = {
            "attack": self.attack,
            "attacker": self.attacker,
            "observer": self.observer,
            "applicable": self.applicable,
        }
        for name in (
            "success_rate",
            "ci_low",
            "ci_high",
            "baseline",
            "control_rate",
            "residual_risk",
            "trials",
        ):
            value = getattr(self, name)
            if value is not None:
                out[name] = float(value) if name != "trials" else int(value)
        out["cost_s"] = float(self.cost_s)
        if self.diagnostic:
            out["diagnostic"] = True
        if self.note:
            out["note"] = self.note
        out.update(self.extra)
        return out


def rate_result(
    attack: str,
    attacker: str,
    observer: str,
    *,
    successes: int,
    trials: int,
    baseline: float,
    control: Rate | float | None = None,
    cost_s: float = 0.0,
    note: str = "",
    **extra: Any,
) -> AttackResult:
    """Build an :class:`AttackResult` from a success count.

    The residual risk nets out the control rate when there is one, else the baseline
    (what guessing gets). ``control`` may be a :class:`Rate` (its value is used) or a
    rate already computed.
    """
    rate = Rate(successes, trials)
    low, high = rate.interval
    control_rate = control.value if isinstance(control, Rate) else control
    reference = baseline if control_rate is None else control_rate
    if rate.value <= baseline:
        warning = "the attack did no better than the baseline guess"
        note = f"{note}; {warning}" if note else warning
    return AttackResult(
        attack=attack,
        attacker=attacker,
        observer=observer,
        success_rate=rate.value,
        ci_low=low,
        ci_high=high,
        baseline=baseline,
        control_rate=control_rate,
        residual_risk=residual_risk(rate.value, reference),
        trials=trials,
        cost_s=cost_s,
        note=note,
        extra=dict(extra),
    )


def make_rerun(factory: Callable[[], Any]) -> Rerun:
    """Return a :data:`Rerun` oracle that runs a fresh backend from ``factory()`` on a
    problem in a fresh :class:`~pets.session.Session`."""

    def rerun(problem: Problem) -> tuple[Any, Session]:
        session = Session(problem.task.parties, problem.party_data)
        return factory().run(problem.task, session), session

    return rerun


def not_applicable(attack: str, attacker: str, observer: str, why: str) -> AttackResult:
    """Return the result of an attack whose attacker observes nothing to attack."""
    return AttackResult(attack, attacker, observer, applicable=False, note=why)
