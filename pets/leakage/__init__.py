"""Leakage measured by the harness on what each attacker observes.

:func:`evaluate_leakage` gathers the backend's formal claim, runs every attack family
that applies to the task kind and the card's attacker models, checks every result
against the claim (:mod:`pets.leakage.claims`), and sums them up in a ``headline`` and
``flags``. Modules hold one attack family each; each family is a
function ``family(context) -> list[AttackResult]`` (see :mod:`pets.leakage._base`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pets.api import Capabilities
from pets.leakage._base import (
    ATTACKER_MODELS,
    EFFORT,
    AttackContext,
    AttackResult,
    Effort,
    Rerun,
    make_rerun,
    not_applicable,
    rate_result,
)
from pets.leakage.claims import EXPOSURE_ATTACKS, EXPOSURE_THRESHOLD, ClaimCheck, check_claim
from pets.leakage.rates import (
    Rate,
    clopper_pearson,
    residual_risk,
    residual_risk_interval,
    wilson_interval,
)
from pets.leakage.transcript import silent_input_parties, transcript_exposure
from pets.session import Session
from pets.tasks import Problem

__all__ = [
    "ATTACKER_MODELS",
    "EFFORT",
    "LEAKAGE_MODES",
    "AttackContext",
    "AttackResult",
    "ClaimCheck",
    "Effort",
    "Rate",
    "Rerun",
    "attack_families",
    "check_claim",
    "clopper_pearson",
    "evaluate_leakage",
    "make_rerun",
    "not_applicable",
    "rate_result",
    "residual_risk",
    "transcript_exposure",
    "wilson_interval",
]

LEAKAGE_MODES = ("fast", "full", "off")

#: Above this residual risk, at the lower end of the attack's interval, an attack on
#: individuals is taken as successful (the point estimate alone raises no flag).
RISK_THRESHOLD = 0.5

#: Flag raised when an attack family's residual risk passes :data:`RISK_THRESHOLD`.
RISK_FLAGS = {
    "differencing": "reveals_individuals",
    "reconstruction": "reconstructs",
    "dictionary_reidentification": "reidentifies",
    "cardinality_probing": "reveals_membership",
    "singling_out": "singles_out",
    "linkability": "links_records",
    "attribute_inference": "infers_attributes",
    "membership_inference": "reveals_membership",
    "membership_at_low_fpr": "reveals_membership",
    "record_copies": "copies_records",
    "model_extraction": "model_extracted",
    "update_reconstruction": "reconstructs",
}

Family = Callable[[AttackContext], Sequence[AttackResult]]


def attack_families() -> tuple[tuple[str, Family], ...]:
    """Return the built-in attack families as ``(name, function)`` pairs, in run order.

    Imported on call, so that a cell that does not attack pays nothing.
    """
    from pets.leakage import (
        differencing,
        distinguishing,
        dp_audit,
        extraction,
        federated,
        intermediates,
        linkage,
        membership,
        reconstruction,
        release,
        transcript,
    )
    from pets.leakage.release import exposure

    return (
        ("transcript_exposure", transcript.attack),
        ("intermediate_exposure", intermediates.attack),
        ("transcript_distinguishing", distinguishing.attack),
        ("differencing", differencing.attack),
        ("reconstruction", reconstruction.attack),
        ("linkage", linkage.attack),
        ("release", release.attack),
        ("release_exposure", exposure.attack),
        ("membership_inference", membership.attack),
        ("model_extraction", extraction.attack),
        ("update_reconstruction", federated.attack),
        ("dp_audit", dp_audit.attack),
    )


def evaluate_leakage(
    problem: Problem,
    session: Session,
    capabilities: Capabilities,
    *,
    output: Any = None,
    rerun: Rerun | None = None,
    attackers: Sequence[str] = tuple(ATTACKER_MODELS),
    mode: str = "fast",
    seed: int = 0,
    families: Sequence[tuple[str, Family]] | None = None,
) -> dict[str, Any]:
    """Attack what each party observed and compare with the backend's claim.

    Parameters
    ----------
    problem, session : Problem, Session
        The finished cell.
    capabilities : Capabilities
        The backend's capabilities; its claim is checked against the attacks.
    output : Any
        What the recipient learned.
    rerun : Rerun, optional
        Oracle that runs the same backend on harness-chosen data (needed by
        differencing, reconstruction, cardinality probing, federated-update
        reconstruction and the DP audit).
    attackers : sequence of str
        Attacker models the card lists.
    mode : {"fast", "full", "off"}
        How hard to attack; ``off`` runs nothing and says so.
    seed : int
        Seed for targets and controls.
    families : sequence, optional
        ``(name, function)`` pairs to run instead of :func:`attack_families`.

    Returns
    -------
    dict
        ``claim``, ``attacks`` (list; each scored one with its residual-risk interval
        and the claim checks it was part of), ``headline`` (worst residual risk with
        its interval and where it was found, worst epsilon lower bound, the attacks
        that contradict the claim), ``flags`` (risk flags on the lower end of the
        interval), ``contradictions`` (:class:`ClaimCheck` data: which part of the
        claim, which attack, its lower bound, the cap), ``mode`` and ``cost_s`` (time
        spent attacking, including reruns, kept apart from the backend's own cost).
    """
    if mode not in LEAKAGE_MODES:
        raise ValueError(f"leakage mode {mode!r}; allowed: {', '.join(LEAKAGE_MODES)}")
    start = time.perf_counter()
    claim = capabilities.claim
    results: list[dict[str, Any]] = []
    context = None
    if mode != "off":
        context = AttackContext(
            problem=problem,
            session=session,
            output=output,
            claim=claim,
            attackers=tuple(attackers),
            effort=EFFORT[mode],
            rng=np.random.default_rng([seed, 0xA77AC]),
            rerun=rerun,
            mode=mode,
        )
        for name, family in attack_families() if families is None else families:
            family_start = time.perf_counter()
            try:
                found = list(family(context))
            except Exception as exc:  # one broken attack must not lose the cell
                found = [
                    AttackResult(
                        attack=name,
                        attacker="-",
                        observer="-",
                        note=f"attack failed: {_safe_message(exc)}",
                        extra={"failed": True},
                        cost_s=time.perf_counter() - family_start,
                    )
                ]
            results += [r.to_dict() for r in found]
    flags, headline, contradicted = _judge(results, claim)
    silent = silent_input_parties(problem, session)
    if silent:
        flags.append("no_traffic_for_inputs")
    headline["epsilon_claimed"] = claim.epsilon
    return {
        "claim": claim.to_dict(),
        "attackers": list(attackers),
        "attacks": results,
        "headline": headline,
        "flags": flags,
        "contradictions": [c.to_dict() for c in contradicted],
        "silent_inputs": silent or [],
        "mode": mode,
        "reruns": 0 if context is None else context.reruns,
        "cost_s": time.perf_counter() - start,
    }


def _safe_message(exc: BaseException) -> str:
    """The exception's type and message with every quoted string and number masked.

    Attack workloads name targets by quasi-identifiers and probes carry identifiers, so
    a backend's error message may repeat them; the record keeps only its shape.
    """
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "<value>", str(exc))
    text = re.sub(r"\d+(\.\d+)?", "<n>", text)
    return f"{type(exc).__name__}: {text}"[:300]


def _judge(
    results: list[dict[str, Any]], claim: Any
) -> tuple[list[str], dict[str, Any], list[ClaimCheck]]:
    """Turn the attack results into flags and a headline; check the claim against each.

    A risk flag needs the residual risk at the lower end of the attack rate's interval
    above the threshold, not the point estimate; each scored result gets that interval
    (``residual_risk_low``, ``residual_risk_high``) and the claim checks it was part of
    (``claim_checks``).
    """
    scored = [
        r
        for r in results
        if r.get("applicable")
        and not r.get("diagnostic")
        and not r.get("failed")
        and r.get("residual_risk") is not None
    ]
    flags: list[str] = []

    def flag(name: str) -> None:
        if name not in flags:
            flags.append(name)

    for r in scored:
        if r.get("flag") in RISK_FLAGS.values():  # a per-person attack's own threshold
            flag(r["flag"])
        low = _risk_low(r)
        if r["attack"] in EXPOSURE_ATTACKS and low > EXPOSURE_THRESHOLD:
            flag("exposes_inputs")
        elif r["attack"] in RISK_FLAGS and low > RISK_THRESHOLD:
            flag(RISK_FLAGS[r["attack"]])
    contradicted: list[ClaimCheck] = []
    for r in results:  # each result's own checks (one attack may give several results)
        mine = check_claim(claim, [r])
        if mine:
            r["claim_checks"] = [
                {
                    k: v
                    for k, v in c.to_dict().items()
                    if k not in ("attack", "observer", "attacker")
                }
                for c in mine
            ]
        contradicted += [c for c in mine if c.contradicted]
    if contradicted:
        flag("claim_contradicted")
    audits = [r for r in results if r.get("epsilon_lower") is not None]
    worst_eps = max(audits, key=lambda r: r["epsilon_lower"], default=None)
    if any(r.get("failed") for r in results):
        flag("attack_failed")
    worst = max(scored, key=lambda r: r["residual_risk"], default=None)
    headline = {
        "worst_residual_risk": None if worst is None else worst["residual_risk"],
        "worst_residual_risk_low": None if worst is None else worst.get("residual_risk_low"),
        "worst_residual_risk_high": None if worst is None else worst.get("residual_risk_high"),
        "worst_attack": None if worst is None else f"{worst['attack']}@{worst['observer']}",
        "worst_attacker": None if worst is None else worst["attacker"],
        "epsilon_lower_bound": None if worst_eps is None else worst_eps["epsilon_lower"],
        "attacks_run": len(scored),
        "not_applicable": sum(1 for r in results if not r.get("applicable")),
        "claim_contradicted_by": ", ".join(
            dict.fromkeys(f"{c.attack}@{c.observer}" for c in contradicted)
        )
        or None,
    }
    return flags, headline, contradicted


def _risk_low(result: dict[str, Any]) -> float:
    """Residual risk at the lower end of the result's interval, stored on the result with
    the upper end; the point estimate where the result has no interval."""
    low, high = result.get("ci_low"), result.get("ci_high")
    if low is None or high is None:
        return float(result["residual_risk"])
    reference = result.get("control_rate")
    if reference is None:
        reference = result.get("baseline") or 0.0
    risk_low, risk_high = residual_risk_interval(float(low), float(high), float(reference))
    point = float(result["residual_risk"])  # the ends hold the point despite rounding
    risk_low, risk_high = min(risk_low, point), max(risk_high, point)
    result["residual_risk_low"], result["residual_risk_high"] = risk_low, risk_high
    return risk_low
