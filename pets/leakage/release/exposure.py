"""Per-person exposure in a release (attacker model A0): copies of real records and
membership inference at a low false-positive rate.

Average figures (singling out, AUC, balanced accuracy) hardly move when a synthesiser
copies a few per cent of its real rows verbatim: the other rows dilute them. Privacy is
about the worst-off patient, so two attacks look at the tail instead. Both compare the
custodian's patients (members) with held-out patients who were never in its rows
(controls), by each patient's distance to the closest released row in the attacker's
view (Gower-like, per column: :meth:`AttackerView.closest_distances
<pets.leakage.release.view.AttackerView.closest_distances>`):

- ``record_copies``: the share of members with a released row at distance 0
  (``match="exact"``) or at most :data:`NEAR_DISTANCE` per column (``match="near"``:
  rounded or slightly perturbed copies), less the same share among controls (what
  chance and generalisation give a patient who was not in the data). The excess has
  Newcombe's hybrid score interval (from the two Wilson intervals); the result is
  flagged ``copies_records`` when its lower end is above :data:`COPY_THRESHOLD`.
- ``membership_at_low_fpr``: the attacker calls a patient a member when its closest
  released row is nearer than all but a share ``fpr`` of the controls, with ``fpr`` =
  :data:`TARGET_FPR` or, when there are too few controls to resolve it, one control
  (``1 / controls``; the result says which, as ``fpr_target`` and
  ``fpr_resolvable``). The true-positive rate on the members and the false-positive
  rate on the controls each get a Clopper-Pearson interval (extra keys ``tpr_low``,
  ``tpr_high``, ``fpr_low``, ``fpr_high``; ``ci_low`` and ``ci_high`` are the TPR's
  Wilson interval, as for every rate); the result is flagged
  ``reveals_membership`` when the TPR's lower end is above :data:`FPR_MULTIPLE` times
  the FPR's upper end (an honest release gives members and controls the same
  distances, so TPR and FPR agree).

The flag a result earns is in its extra key ``flag`` (absent when not earned); the
harness raises it. A family of its own (:func:`attack`), run after the release family
on the same attacker's view. Members and controls are as many as :data:`TARGETS_PER_ATTACK`
times the effort's attacks allows (all of them at the quick size).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pets.leakage._base import AttackContext, AttackResult, not_applicable, rate_result
from pets.leakage.rates import clopper_pearson, difference_interval
from pets.leakage.release.view import MIN_TARGETS, AttackerView, prepare_view, view_summary

__all__ = [
    "COPIES",
    "COPY_THRESHOLD",
    "FPR_MULTIPLE",
    "LOW_FPR",
    "NEAR_DISTANCE",
    "TARGETS_PER_ATTACK",
    "TARGET_FPR",
    "attack",
    "exposure_attacks",
    "exposure_targets",
]

COPIES = "record_copies"
LOW_FPR = "membership_at_low_fpr"

#: Largest distance per column (scaled numeric difference or category mismatch, averaged
#: over the compared columns) at which a released row counts as a near-exact copy.
NEAR_DISTANCE = 0.0005

#: Excess share of members with a copy in the release above which ``copies_records`` is
#: raised, by the lower end of the excess's interval.
COPY_THRESHOLD = 0.01

#: False-positive rate at which the true-positive rate is measured, when resolvable.
TARGET_FPR = 1e-3

#: ``reveals_membership`` when the TPR's lower end exceeds this multiple of the FPR's
#: upper end.
FPR_MULTIPLE = 3.0

#: Members and controls per unit of ``effort.attacks`` (each side at most).
TARGETS_PER_ATTACK = 4


def attack(context: AttackContext) -> list[AttackResult]:
    """Measure per-person exposure in the released table of a ``release`` task.

    Parameters
    ----------
    context : AttackContext
        The cell; attacker model A0.

    Returns
    -------
    list of AttackResult
        ``record_copies`` (exact, near) and ``membership_at_low_fpr``; empty for other
        task kinds or without A0; not applicable when there is nothing to compare.
    """
    task = context.problem.task
    if task.kind != "release" or not context.applies("A0"):
        return []
    observer = task.recipient
    prepared = prepare_view(context)
    if isinstance(prepared, str):
        why = prepared
    else:
        view, coding = prepared
        if min(len(view.original), len(view.control)) >= MIN_TARGETS:
            members, controls = exposure_targets(view, context.effort.attacks, context.rng)
            results = exposure_attacks(view, members, controls, observer, view_summary(view))
            for result in results:
                result.cost_s += coding / len(results)
            return results
        why = f"fewer than {MIN_TARGETS} original or held-out patients to compare"
    return [not_applicable(name, "A0", observer, why) for name in (COPIES, COPIES, LOW_FPR)]


def exposure_targets(
    view: AttackerView, attacks: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the members (original rows) and controls (held-out rows) to expose: each
    side at most ``TARGETS_PER_ATTACK * attacks``, all of them when fewer."""
    cap = TARGETS_PER_ATTACK * attacks
    members = rng.choice(len(view.original), min(cap, len(view.original)), replace=False)
    controls = rng.choice(len(view.control), min(cap, len(view.control)), replace=False)
    return members, controls


def exposure_attacks(
    view: AttackerView,
    members: np.ndarray,
    controls: np.ndarray,
    observer: str,
    common: dict[str, Any],
) -> list[AttackResult]:
    """Run ``record_copies`` (exact and near) and ``membership_at_low_fpr`` on the
    distances of ``members`` and ``controls`` to their closest released rows."""
    start = time.perf_counter()
    dist_in, dist_out = view.closest_distances(members, controls)
    shared = (time.perf_counter() - start) / 3  # the distances, booked to each result
    sizes = {"members": len(members), "controls": len(controls), **common}
    results = [
        _copies(dist_in, dist_out, match, limit, observer, shared, sizes)
        for match, limit in (("exact", 0.0), ("near", NEAR_DISTANCE))
    ]
    results.append(_low_fpr(dist_in, dist_out, observer, shared, sizes))
    return results


def _copies(
    dist_in: np.ndarray,
    dist_out: np.ndarray,
    match: str,
    limit: float,
    observer: str,
    shared: float,
    extra: dict[str, Any],
) -> AttackResult:
    start = time.perf_counter()
    hits_in = int(np.sum(dist_in <= limit))
    hits_out = int(np.sum(dist_out <= limit))
    excess, low, high = difference_interval(hits_in, len(dist_in), hits_out, len(dist_out))
    flagged = low > COPY_THRESHOLD
    how = "at distance 0" if match == "exact" else f"within {limit:g} per column"
    return rate_result(
        COPIES,
        "A0",
        observer,
        successes=hits_in,
        trials=len(dist_in),
        baseline=0.0,
        control=hits_out / len(dist_out),
        cost_s=shared + time.perf_counter() - start,
        note=(
            f"share of the custodian's patients with a released row {how}; control: "
            f"held-out patients; flagged when the excess's lower end passes {COPY_THRESHOLD}"
        ),
        match=match,
        max_distance_per_column=limit,
        excess=excess,
        excess_low=low,
        excess_high=high,
        threshold=COPY_THRESHOLD,
        **({"flag": "copies_records"} if flagged else {}),
        **extra,
    )


def _low_fpr(
    dist_in: np.ndarray,
    dist_out: np.ndarray,
    observer: str,
    shared: float,
    extra: dict[str, Any],
) -> AttackResult:
    start = time.perf_counter()
    controls = len(dist_out)
    resolvable = 1.0 / controls
    fpr_target = max(TARGET_FPR, resolvable)
    allowed = int(np.floor(fpr_target * controls + 1e-9))
    # member when strictly nearer than the (allowed + 1)-th nearest control
    cut = np.sort(dist_out)[min(allowed, controls - 1)]
    positives = int(np.sum(dist_in < cut))
    false = int(np.sum(dist_out < cut))
    tpr_low, tpr_high = clopper_pearson(positives, len(dist_in))
    fpr_low, fpr_high = clopper_pearson(false, controls)
    flagged = tpr_low > FPR_MULTIPLE * fpr_high
    return rate_result(
        LOW_FPR,
        "A0",
        observer,
        successes=positives,
        trials=len(dist_in),
        baseline=false / controls,
        control=false / controls,
        cost_s=shared + time.perf_counter() - start,
        note=(
            f"member when nearer the release than all but {allowed} of {controls} "
            f"held-out patients (FPR {fpr_target:.0e}"
            f"{'' if fpr_target == TARGET_FPR else ', the lowest these controls resolve'}); "
            f"flagged when the TPR's lower end passes {FPR_MULTIPLE:g} times the FPR's "
            "upper end (Clopper-Pearson)"
        ),
        fpr_target=fpr_target,
        fpr_resolvable=resolvable,
        fpr=false / controls,
        fpr_low=fpr_low,
        fpr_high=fpr_high,
        tpr_low=tpr_low,
        tpr_high=tpr_high,
        multiple=FPR_MULTIPLE,
        **({"flag": "reveals_membership"} if flagged else {}),
        **extra,
    )
