"""Attribute inference (attacker model A1): a secret guessed from the nearest released row.

- ``attribute_inference`` (A1). The attacker knows the target's quasi-identifiers
  (:data:`AUX_QIS` present in the release) and guesses a secret column
  (:data:`SECRETS`) from the nearest released row: exact for categorical or 0/1 columns,
  within :data:`TOLERANCE` of the true value for continuous ones. The baseline is a
  value drawn from the release's own column.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pets.leakage._base import AttackResult, not_applicable, rate_result
from pets.leakage.rates import balanced_targets
from pets.leakage.release.distances import nearest_rows
from pets.leakage.release.view import AttackerView

__all__ = ["AUX_QIS", "INFERENCE", "SECRETS", "TOLERANCE", "attribute_inference"]

INFERENCE = "attribute_inference"

#: Quasi-identifiers the attribute-inference attacker knows of its targets.
AUX_QIS = ("age", "sex", "ethnicity", "deprivation_decile", "postcode_district")

#: Secret columns the attribute-inference attacker guesses, when released.
SECRETS = ("t2_diabetes", "hba1c")

#: Relative tolerance of a correct guess of a continuous secret.
TOLERANCE = 0.05


def attribute_inference(
    view: AttackerView,
    members: np.ndarray,
    others: np.ndarray,
    rng: np.random.Generator,
    observer: str,
    common: dict[str, Any],
) -> list[AttackResult]:
    """Guess each secret column of the targets from the released row nearest on the
    quasi-identifiers; control: held-out patients; baseline: a value drawn from the
    release."""
    aux = [j for j, c in enumerate(view.columns) if c in AUX_QIS]
    if not aux:
        why = "the release holds none of the quasi-identifiers"
        return [not_applicable(INFERENCE, "A1", observer, why)]
    secrets = [view.columns.index(c) for c in SECRETS if c in view.columns and c not in AUX_QIS]
    if not secrets:
        secrets = [j for j in range(len(view.columns)) if j not in aux][:1]
    if not secrets:
        return [not_applicable(INFERENCE, "A1", observer, "no column left to infer")]
    released = view.scaled(view.release, aux)
    known = [view.columns[j] for j in aux]
    results = []
    for s in secrets:
        start = time.perf_counter()
        column = view.columns[s]
        continuous = bool(view.numeric[s]) and not _whole_numbers(view.release[:, s])
        targets, balanced = _inference_targets(view, s, members, others, rng)
        if targets is None:
            why = f"too few patients with and without {column} to balance the targets"
            results.append(not_applicable(INFERENCE, "A1", observer, why))
            continue
        hits = []
        for rows in (view.original[targets[0]], view.control[targets[1]]):
            idx, _ = nearest_rows(view.scaled(rows, aux), released, view.numeric[aux], rng=rng)
            guess = view.release[idx[:, 0], s]
            hits.append(int(np.sum(_guessed(guess, rows[:, s], continuous))))
        truth = view.original[targets[0], s]
        draws = view.release[rng.integers(0, len(view.release), len(truth)), s]
        baseline = float(np.mean(_guessed(draws, truth, continuous)))
        how = f"within {TOLERANCE:.0%}" if continuous else "exactly"
        note = (
            f"{column} guessed {how} from the released row nearest on {', '.join(known)}"
            f"{'; targets half with it, half without' if balanced else ''}; control: "
            "held-out patients; baseline: a value drawn from the release"
        )
        results.append(
            rate_result(
                INFERENCE,
                "A1",
                observer,
                successes=hits[0],
                trials=len(truth),
                baseline=baseline,
                control=hits[1] / len(targets[1]),
                cost_s=time.perf_counter() - start,
                note=note,
                **{
                    "secret": column,
                    "known": known,
                    "continuous": continuous,
                    "balanced_targets": balanced,
                    **common,
                },
            )
        )
    return results


def _inference_targets(
    view: AttackerView,
    secret: int,
    members: np.ndarray,
    others: np.ndarray,
    rng: np.random.Generator,
) -> tuple[tuple[np.ndarray, np.ndarray] | None, bool]:
    """Targets for guessing column ``secret``: for a 0/1 secret, as many original and
    held-out patients with it as without (so that a guess from any marginal scores one
    half and the control rate stays away from one, where the residual risk would
    magnify noise), each side as many as it has; otherwise the shared random targets."""
    ori, ctl = view.original[:, secret], view.control[:, secret]
    is_flag = bool(view.numeric[secret]) and set(np.unique(ori[np.isfinite(ori)])) <= {0.0, 1.0}
    if not is_flag:
        return (members, others), False
    picked = []
    for values in (ori, ctl):
        count = min(len(members), 2 * int(np.sum(values == 1)), 2 * int(np.sum(values == 0)))
        if count < 20:
            return None, True
        picked.append(balanced_targets(values, count, rng))
    return (picked[0], picked[1]), True


def _guessed(guess: np.ndarray, truth: np.ndarray, continuous: bool) -> np.ndarray:
    """Whether each guess is right: within :data:`TOLERANCE` of the truth for a
    continuous secret, equal otherwise."""
    if continuous:
        return np.abs(guess - truth) <= TOLERANCE * np.abs(truth)
    return guess == truth


def _whole_numbers(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return bool(np.all(finite == np.round(finite)))
