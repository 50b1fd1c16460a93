"""Attacks on a released patient-level table (task kind ``release``).

The recipient holds the table the custodian published. Anonymeter's three risks
(Giomi et al., 2023: singling out, linkability, attribute inference) are measured the
way Anonymeter defines them, each against a control: the same attack on held-out real
patients who were never in the custodian's rows (``evaluation["holdout"]``). Residual
risk is ``(attack - control) / (1 - control)``. Attacks on distances complete the
family:

- ``singling_out`` (A0, no auxiliary knowledge). Predicates are built from the release
  alone and kept when they match exactly one released row. ``multivariate``: a random
  released row and :data:`PREDICATE_COLUMNS` random columns; equality on categorical
  columns, and on numeric columns ``>=`` the row's value when it lies above the
  column's median, else ``<=``. ``univariate``: ``<=`` the minimum, ``>=`` the maximum,
  and equality with values that occur once. Success: the predicate matches exactly one
  of the original rows. The control is the share of the same predicates that single out
  one held-out patient. Both kinds are reported (extra key ``mode``); multivariate is
  the main one (Anonymeter's default).
- ``linkability`` (A1). The attacker holds two tables about the same patients that
  share no column: the demographic columns and the clinical ones. For each target, the
  nearest released row on each half; the two halves are linked when they point to the
  same row (:data:`LINK_NEIGHBOURS` nearest rows each, ties broken at random). The
  baseline is two random rows.
- ``attribute_inference`` (A1). The attacker knows the target's quasi-identifiers
  (:data:`AUX_QIS` present in the release) and guesses a secret column
  (:data:`SECRETS`) from the nearest released row: exact for categorical or 0/1 columns,
  within :data:`TOLERANCE` of the true value for continuous ones. The baseline is a
  value drawn from the release's own column.
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
- ``record_copies`` and ``membership_at_low_fpr`` (A0): per-person exposure, the share
  of patients with an exact or near-exact copy in the release and the true-positive
  rate at a false-positive rate of 1e-3; a family of its own
  (:func:`pets.leakage.release.exposure.attack`), on the same view.

Results hold rates, counts, column names and distances summed over many patients, never
a patient's values.

One module per concern: :mod:`~pets.leakage.release.view` (the attacker's view: the
three tables in the release's coding), :mod:`~pets.leakage.release.distances`,
:mod:`~pets.leakage.release.singling_out`, :mod:`~pets.leakage.release.linkability`,
:mod:`~pets.leakage.release.inference`, :mod:`~pets.leakage.release.membership`
(distance to closest record and membership inference) and
:mod:`~pets.leakage.release.exposure` (per-person exposure: copies of real records and
membership inference at a low false-positive rate).
"""

from __future__ import annotations

import time

from pets.leakage._base import AttackContext, AttackResult, not_applicable
from pets.leakage.release.distances import gower_distances, nearest_rows
from pets.leakage.release.inference import (
    AUX_QIS,
    INFERENCE,
    SECRETS,
    TOLERANCE,
    attribute_inference,
)
from pets.leakage.release.linkability import (
    DEMOGRAPHICS,
    LINK_NEIGHBOURS,
    LINKABILITY,
    linkability,
)
from pets.leakage.release.membership import DCR, MEMBERSHIP, distance_attacks
from pets.leakage.release.singling_out import (
    PREDICATE_COLUMNS,
    SINGLING_OUT,
    control_rate_at_size,
    rank_codes,
    singling_out,
)
from pets.leakage.release.view import (
    MIN_TARGETS,
    AttackerView,
    attacker_view,
    prepare_view,
    view_summary,
)

__all__ = [
    "AUX_QIS",
    "DEMOGRAPHICS",
    "LINK_NEIGHBOURS",
    "MIN_TARGETS",
    "PREDICATE_COLUMNS",
    "SECRETS",
    "TOLERANCE",
    "AttackerView",
    "attack",
    "attacker_view",
    "control_rate_at_size",
    "gower_distances",
    "nearest_rows",
]


def attack(context: AttackContext) -> list[AttackResult]:
    """Attack the released table of a ``release`` task.

    Parameters
    ----------
    context : AttackContext
        The cell. Singling out, distance to closest record and membership inference run
        for attacker model A0; linkability and attribute inference for A1.

    Returns
    -------
    list of AttackResult
        Empty for other task kinds; not-applicable results when there is no table or no
        held-out rows.
    """
    problem = context.problem
    task = problem.task
    if task.kind != "release":
        return []
    wanted = [(n, "A0") for n in (SINGLING_OUT, DCR, MEMBERSHIP) if context.applies("A0")]
    wanted += [(n, "A1") for n in (LINKABILITY, INFERENCE) if context.applies("A1")]
    if not wanted:
        return []
    observer = task.recipient

    def none_of(why: str) -> list[AttackResult]:
        return [not_applicable(name, model, observer, why) for name, model in wanted]

    prepared = prepare_view(context)
    if isinstance(prepared, str):
        return none_of(prepared)
    view, coding = prepared
    rng = context.rng
    effort = context.effort
    n_targets = min(effort.attacks, len(view.control), len(view.original))
    members = rng.choice(len(view.original), n_targets, replace=False)
    others = rng.choice(len(view.control), n_targets, replace=False)
    common = view_summary(view)

    results: list[AttackResult] = []
    few = n_targets < MIN_TARGETS
    why = f"fewer than {MIN_TARGETS} original or held-out patients to attack"
    if context.applies("A0"):
        start = time.perf_counter()
        ranks = rank_codes(view)
        coding += time.perf_counter() - start
        for mode in ("multivariate", "univariate"):
            found = singling_out(view, ranks, mode, effort.attacks, rng, observer, common)
            found.cost_s += coding / 2  # the shared coding, booked to singling out
            results.append(found)
        if few:
            results += [not_applicable(n, "A0", observer, why) for n in (DCR, MEMBERSHIP)]
        else:
            results += distance_attacks(view, members, others, rng, observer, common)
    if context.applies("A1"):
        if few:
            results += [not_applicable(n, "A1", observer, why) for n in (LINKABILITY, INFERENCE)]
        else:
            results.append(linkability(view, members, others, rng, observer, common))
            results += attribute_inference(view, members, others, rng, observer, common)
    return results
