"""Every claim against every attack: the most each attack may achieve under a claim.

A formal claim bounds what any attack can do, so each attack's result is a test of it:

- **An epsilon claim** (with delta) caps every attack's advantage: for any event an
  attacker reads off what it observed, ``P[E | target in] <= e^ε · P[E | target out] + δ``
  and the same with the worlds swapped (add-remove neighbours, privacy unit the patient).
  An attack reported as a success rate against a control (the same attack on patients
  who were not in the input) is capped at
  ``min(1, e^ε · c + δ, 1 − e^−ε · (1 − c − δ))`` with ``c`` the control rate; a
  membership game scored as balanced accuracy over members and non-members is capped at
  ``(1 + a) / 2`` with ``a = (e^ε − 1 + 2δ) / (e^ε + 1)``, the largest advantage
  ``TPR − FPR`` an (ε, δ) mechanism allows (equivalently, AUC at most
  :func:`auc_cap`). Model extraction recovers the supplier's weights, not a patient's
  data, so a patient-level epsilon does not cap it.
- **A formal claim's declared leakage** caps every attack at what the declared leakage
  alone allows. Each attack exploits one channel (:data:`ALLOWED_BY` names the declared
  words that admit it): an exact aggregate's differencing works on the output and is
  allowed under ``"output"``; re-identifying hashed identifiers is allowed only under
  ``"identifiers"``, ``"pseudonymised identifiers"`` or ``"inputs"``; a claim declaring
  nothing allows no attack above its control. Words a DP mechanism protects
  (``"output"``, ``"noisy output"``, ``"noisy model updates"``) still leave the epsilon
  cap in force, and the "noisy" ones admit nothing without an epsilon (noise of no
  stated size is no declaration). Transcript exposure is checked against every claim,
  formal or not: a party that sees another party's raw values contradicts any claim
  that does not declare ``"inputs"``. For informal claims (heuristics) that check keeps
  the threshold of the ``exposes_inputs`` flag, because their declared words
  (``"linked columns"``) admit some exposure; for formal claims any exposure above the
  control contradicts.

The attack's side of every comparison is the lower end of its 95% Wilson interval, the
control's side the upper end of the control's interval (at its own number of trials when
the result says, ``control_trials``, else at the attack's), so a contradiction survives
the sampling error of both. A DP audit's own verdict (its epsilon lower bound against
the claimed epsilon) is carried over as a check of the epsilon claim.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pets.api import Claim
from pets.leakage.rates import wilson_interval

__all__ = [
    "ALLOWED_BY",
    "BALANCED_ATTACKS",
    "DP_PROTECTED",
    "EPSILON_EXEMPT",
    "EXPOSURE_ATTACKS",
    "EXPOSURE_THRESHOLD",
    "NOISY",
    "ClaimCheck",
    "auc_cap",
    "balanced_accuracy_cap",
    "check_claim",
    "epsilon_rate_cap",
    "max_advantage",
]

#: Above this residual risk (at the interval's lower end), another party's values are
#: taken as exposed; an informal claim not declaring ``"inputs"`` is contradicted there.
EXPOSURE_THRESHOLD = 0.5

_OUTPUT = ("output", "noisy output")

#: Attacks whose success means another party's inputs reached the observer.
EXPOSURE_ATTACKS = (
    "transcript_exposure",
    "intermediate_exposure",
    "transcript_distinguishing",
)

#: Declared-leakage words under which each attack may succeed (its channel is declared).
ALLOWED_BY: dict[str, tuple[str, ...]] = {
    "transcript_exposure": ("inputs",),
    "intermediate_exposure": ("inputs",),
    "transcript_distinguishing": ("inputs",),
    "dictionary_reidentification": ("inputs", "identifiers", "pseudonymised identifiers"),
    "update_reconstruction": ("inputs", "model updates", "noisy model updates"),
    "differencing": _OUTPUT,
    "reconstruction": _OUTPUT,
    "cardinality_probing": (*_OUTPUT, "intersection cardinality"),
    "singling_out": _OUTPUT,
    "linkability": _OUTPUT,
    "attribute_inference": _OUTPUT,
    "membership_inference": _OUTPUT,
    "membership_at_low_fpr": _OUTPUT,
    "record_copies": _OUTPUT,
    "model_extraction": (*_OUTPUT, "model scores reveal weights"),
}

#: Declared words a DP mechanism's noise protects: the epsilon cap still applies to them.
DP_PROTECTED = frozenset({"output", "noisy output", "noisy model updates"})

#: Declared words that admit an attack only under an epsilon claim, which caps it.
NOISY = frozenset({"noisy output", "noisy model updates"})

#: Attacks scored as balanced accuracy over members and non-members (baseline one half).
BALANCED_ATTACKS = frozenset({"membership_inference", "cardinality_probing"})

#: Attacks a patient-level epsilon does not bound (they recover no patient's data).
EPSILON_EXEMPT = frozenset({"model_extraction"})


@dataclass(frozen=True)
class ClaimCheck:
    """One attack result compared with one part of the claim.

    Parameters
    ----------
    claim : {"epsilon", "declared_leakage"}
        Which part of the claim is checked.
    attack, observer, attacker : str
        The attack, whose view it attacked, and the attacker model.
    statistic : str
        What is compared: ``"success_rate"``, ``"balanced_accuracy"`` or, for a DP
        audit, ``"epsilon_lower"``.
    bound : float
        The attack's figure: the lower end of its 95% interval (a DP audit's epsilon
        lower bound).
    cap : float
        The most the claim allows for that figure.
    reference : float or None
        The control (upper end of its interval) or baseline the cap was derived from.
    contradicted : bool
        ``bound > cap``.
    basis : str
        How the cap follows from the claim, in one phrase.
    """

    claim: str
    attack: str
    observer: str
    attacker: str
    statistic: str
    bound: float
    cap: float
    reference: float | None
    contradicted: bool
    basis: str

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClaimCheck:
        """Rebuild a check from :meth:`to_dict` data."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def max_advantage(epsilon: float, delta: float = 0.0) -> float:
    """Largest ``TPR − FPR`` of any test against an (ε, δ) mechanism:
    ``(e^ε − 1 + 2δ) / (e^ε + 1)``, at most 1."""
    if epsilon > 700:
        return 1.0
    e = math.exp(epsilon)
    return min(1.0, (e - 1.0 + 2.0 * delta) / (e + 1.0))


def balanced_accuracy_cap(epsilon: float, delta: float = 0.0) -> float:
    """Largest balanced accuracy of a membership test under (ε, δ): ``(1 + a) / 2``."""
    return (1.0 + max_advantage(epsilon, delta)) / 2.0


def epsilon_rate_cap(control: float, epsilon: float, delta: float = 0.0) -> float:
    """Largest success rate on members when the same attack succeeds at rate ``control``
    on non-members: ``min(1, e^ε·c + δ, 1 − e^−ε·(1 − c − δ))``."""
    if epsilon > 700:
        return 1.0
    forward = math.exp(epsilon) * control + delta
    backward = 1.0 - math.exp(-epsilon) * max(0.0, 1.0 - control - delta)
    return min(1.0, forward, backward)


def auc_cap(epsilon: float, delta: float = 0.0) -> float:
    """Largest membership AUC under (ε, δ): the area under the ROC boundary
    ``TPR(x) = min(1, e^ε x + δ, 1 − e^−ε (1 − x − δ))``; ``e^ε / (1 + e^ε)`` when δ = 0.

    The boundary is piecewise linear, so the trapezoids between its corners are exact.
    """
    if epsilon > 700:
        return 1.0
    a, b = math.exp(epsilon), math.exp(-epsilon)
    corner = (1.0 - b * (1.0 - delta) - delta) / (a - b)
    xs = sorted({0.0, 1.0, min(1.0, max(0.0, corner)), min(1.0, max(0.0, 1.0 - delta))})
    ys = [epsilon_rate_cap(x, epsilon, delta) for x in xs]
    return sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2.0 for i in range(len(xs) - 1))


def _reference_high(result: Mapping[str, Any]) -> tuple[float | None, str]:
    """Upper end of the control's interval (or the baseline when there is no control)."""
    control = result.get("control_rate")
    if control is None:
        baseline = result.get("baseline")
        return (None if baseline is None else float(baseline)), "baseline"
    n = int(result.get("control_trials") or result.get("trials") or 0)
    if n <= 0:
        return float(control), "control"
    k = min(n, max(0, round(float(control) * n)))
    return wilson_interval(k, n)[2], "control"


def _checkable(result: Mapping[str, Any]) -> bool:
    return bool(
        result.get("applicable")
        and not result.get("diagnostic")
        and not result.get("failed")
        and not result.get("skipped")
        and result.get("ci_low") is not None
    )


def check_claim(claim: Claim, results: Sequence[Mapping[str, Any]]) -> list[ClaimCheck]:
    """Compare every attack result with every part of ``claim`` that bounds it.

    Parameters
    ----------
    claim : Claim
        The backend's formal claim.
    results : sequence of Mapping
        Attack results as :meth:`~pets.leakage.AttackResult.to_dict` gives them.

    Returns
    -------
    list of ClaimCheck
        One check per (attack result, part of the claim that bounds it); a result no
        part bounds gives none.
    """
    checks: list[ClaimCheck] = []
    declared = set(claim.declared_leakage)
    for r in results:
        if r.get("epsilon_lower") is not None and r.get("epsilon_claimed") is not None:
            checks.append(_audit_check(r))
            continue
        if not _checkable(r):
            continue
        attack = str(r["attack"])
        admitted = set(ALLOWED_BY.get(attack, ())) & declared
        if claim.epsilon is None:
            admitted -= NOISY  # "noisy" admits nothing without the epsilon that bounds it
        if attack in EXPOSURE_ATTACKS and not admitted and not claim.formal:
            checks.append(_exposure_check(r))
        elif attack in ALLOWED_BY and claim.formal and not admitted:
            checks.append(_declared_check(r, claim))
        if claim.epsilon is not None and attack not in EPSILON_EXEMPT:
            if admitted and not admitted & DP_PROTECTED:
                continue  # declared in the clear (a curator sees inputs): DP does not cover it
            check = _epsilon_check(r, float(claim.epsilon), float(claim.delta or 0.0))
            if check is not None:
                checks.append(check)
    return checks


def _base(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "attack": str(r["attack"]),
        "observer": str(r.get("observer", "-")),
        "attacker": str(r.get("attacker", "-")),
    }


def _statistic(r: Mapping[str, Any]) -> str:
    return "balanced_accuracy" if r["attack"] in BALANCED_ATTACKS else "success_rate"


def _audit_check(r: Mapping[str, Any]) -> ClaimCheck:
    lower, claimed = float(r["epsilon_lower"]), float(r["epsilon_claimed"])
    return ClaimCheck(
        claim="epsilon",
        **_base(r),
        statistic="epsilon_lower",
        bound=lower,
        cap=claimed,
        reference=None,
        contradicted=bool(r.get("claim_contradicted", lower > claimed)),
        basis="the DP audit's epsilon lower bound against the claimed epsilon",
    )


def _exposure_check(r: Mapping[str, Any]) -> ClaimCheck:
    reference, _ = _reference_high(r)
    control = float(r.get("control_rate") or 0.0)
    cap = control + EXPOSURE_THRESHOLD * (1.0 - control)  # residual risk at the threshold
    low = float(r["ci_low"])
    return ClaimCheck(
        claim="declared_leakage",
        **_base(r),
        statistic="success_rate",
        bound=low,
        cap=cap,
        reference=reference,
        contradicted=low > cap,
        basis="a heuristic claim not declaring 'inputs': exposure may not pass the "
        f"exposes_inputs threshold (residual risk {EXPOSURE_THRESHOLD})",
    )


def _declared_check(r: Mapping[str, Any], claim: Claim) -> ClaimCheck:
    reference, kind = _reference_high(r)
    cap = 0.0 if reference is None else reference
    low = float(r["ci_low"])
    words = ", ".join(repr(w) for w in claim.declared_leakage) or "nothing"
    return ClaimCheck(
        claim="declared_leakage",
        **_base(r),
        statistic=_statistic(r),
        bound=low,
        cap=cap,
        reference=reference,
        contradicted=low > cap,
        basis=f"a formal claim declaring {words}: this attack's channel is not declared, "
        f"so it may do no better than its {kind}",
    )


def _epsilon_check(r: Mapping[str, Any], epsilon: float, delta: float) -> ClaimCheck | None:
    low = float(r["ci_low"])
    if r["attack"] in BALANCED_ATTACKS:
        cap = balanced_accuracy_cap(epsilon, delta)
        reference: float | None = 0.5
        basis = f"(1 + max advantage) / 2 at epsilon {epsilon:g}, delta {delta:g}"
    else:
        reference, kind = _reference_high(r)
        if reference is None or r.get("control_rate") is None:
            return None  # no rate on patients who were not in the input to compare with
        cap = epsilon_rate_cap(reference, epsilon, delta)
        basis = f"e^ε·{kind} + δ (both ways round) at epsilon {epsilon:g}, delta {delta:g}"
    return ClaimCheck(
        claim="epsilon",
        **_base(r),
        statistic=_statistic(r),
        bound=low,
        cap=cap,
        reference=reference,
        contradicted=low > cap,
        basis=basis,
    )
