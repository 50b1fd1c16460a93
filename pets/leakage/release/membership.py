"""Distance to closest record (diagnostic) and membership inference (attacker model A0)
on a release.

- ``distance_to_closest_record`` (A0, diagnostic only): the share of original targets
  closer to the release than the median held-out patient. It does not bound risk
  (releases that pass distance tests can still leak membership) and stays out of the
  headline and flags.
- ``membership_inference`` (A0): the score is minus the distance to the closest released
  row; members are original targets, non-members held-out patients, as many of each.
  Reported as for models (:mod:`pets.leakage.membership`): AUC, advantage, TPR at FPR
  1e-2 and 1e-3 and the smallest resolvable FPR; ``success_rate`` is the balanced
  accuracy of a threshold chosen on one half of the targets and applied to the other
  (both ways round), baseline one half, residual risk ``2 * rate - 1``.

"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pets.leakage._base import AttackResult, rate_result
from pets.leakage.rates import Rate, balanced_halves, cross_fitted_hits, roc_figures
from pets.leakage.release.view import AttackerView

__all__ = ["DCR", "MEMBERSHIP", "distance_attacks"]

DCR = "distance_to_closest_record"
MEMBERSHIP = "membership_inference"


def distance_attacks(
    view: AttackerView,
    members: np.ndarray,
    others: np.ndarray,
    rng: np.random.Generator,
    observer: str,
    common: dict[str, Any],
) -> list[AttackResult]:
    """The distance to closest record of ``members`` (original rows) and ``others``
    (held-out rows): the diagnostic and the membership attack on it."""
    start = time.perf_counter()
    dcr_in, dcr_out = view.closest_distances(members, others)
    shared = time.perf_counter() - start  # booked to the membership attack

    start = time.perf_counter()
    median_out = float(np.median(dcr_out))
    closer = int(np.sum(dcr_in < median_out))
    low, high = Rate(closer, len(dcr_in)).interval
    dcr = AttackResult(
        attack=DCR,
        attacker="A0",
        observer=observer,
        success_rate=closer / len(dcr_in),
        ci_low=low,
        ci_high=high,
        baseline=0.5,
        trials=len(dcr_in),
        cost_s=time.perf_counter() - start,
        diagnostic=True,
        note=(
            "diagnostic, does not bound risk: share of original targets closer to the "
            "release than the median held-out patient (distance per column)"
        ),
        extra={
            "median_distance_members": float(np.median(dcr_in)),
            "median_distance_non_members": median_out,
            "exact_copies_members": float(np.mean(dcr_in == 0)),
            "exact_copies_non_members": float(np.mean(dcr_out == 0)),
            **common,
        },
    )

    start = time.perf_counter()
    scores = -np.concatenate([dcr_in, dcr_out])
    is_member = np.concatenate([np.ones(len(dcr_in), bool), np.zeros(len(dcr_out), bool)])
    successes = cross_fitted_hits(scores, is_member, balanced_halves(is_member, rng))
    membership = rate_result(
        MEMBERSHIP,
        "A0",
        observer,
        successes=successes,
        trials=len(scores),
        baseline=0.5,
        control=None,
        cost_s=shared + time.perf_counter() - start,
        note=(
            "score: minus the distance to the closest released row; balanced accuracy of "
            "a threshold chosen on the other half of the targets"
        ),
        **{
            "method": "distance_to_closest_record",
            "members": len(dcr_in),
            "non_members": len(dcr_out),
            **roc_figures(scores, is_member),
            **common,
        },
    )
    return [dcr, membership]
