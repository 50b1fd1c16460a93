"""Leakage measured by the harness on what each attacker observes.

:func:`evaluate_leakage` gathers the backend's formal claim, runs the attacks that
apply, and sums them up in a ``headline`` and ``flags``. Modules hold one attack
family each.
"""

from __future__ import annotations

import time
from typing import Any

from pets.api import Capabilities
from pets.leakage.rates import Rate, residual_risk, wilson_interval
from pets.leakage.transcript import transcript_exposure
from pets.session import Session
from pets.tasks import Problem

__all__ = [
    "LEAKAGE_MODES",
    "Rate",
    "evaluate_leakage",
    "residual_risk",
    "transcript_exposure",
    "wilson_interval",
]

LEAKAGE_MODES = ("fast", "full", "off")

#: Above this residual risk, another party's values are taken as exposed.
EXPOSURE_THRESHOLD = 0.5


def evaluate_leakage(
    problem: Problem,
    session: Session,
    capabilities: Capabilities,
    *,
    mode: str = "fast",
    seed: int = 0,
) -> dict[str, Any]:
    """Attack what each party observed and compare with the backend's claim.

    Returns
    -------
    dict
        ``claim``, ``attacks`` (list), ``headline`` (worst residual risk and where it was
        found), ``flags`` and ``cost_s`` (time spent attacking, kept apart from the
        backend's own cost).
    """
    if mode not in LEAKAGE_MODES:
        raise ValueError(f"leakage mode {mode!r}; allowed: {', '.join(LEAKAGE_MODES)}")
    start = time.perf_counter()
    claim = capabilities.claim
    attacks: list[dict[str, Any]] = []
    if mode != "off":
        received = {name: session.received_bytes(name) for name in session.party_names}
        attacks += transcript_exposure(received, problem.sensitive, seed=seed)
    applicable = [a for a in attacks if a.get("applicable")]
    flags = []
    exposed = [
        a
        for a in applicable
        if a["attack"] == "transcript_exposure" and a["residual_risk"] > EXPOSURE_THRESHOLD
    ]
    if exposed:
        flags.append("exposes_inputs")
        if "inputs" not in claim.declared_leakage:
            flags.append("claim_contradicted")
    worst = max(applicable, key=lambda a: a["residual_risk"], default=None)
    headline = {
        "worst_residual_risk": None if worst is None else worst["residual_risk"],
        "worst_attack": None if worst is None else f"{worst['attack']}@{worst['observer']}",
        "epsilon_claimed": claim.epsilon,
        "attacks_run": len(applicable),
    }
    return {
        "claim": claim.to_dict(),
        "attacks": attacks,
        "headline": headline,
        "flags": flags,
        "mode": mode,
        "cost_s": time.perf_counter() - start,
    }
