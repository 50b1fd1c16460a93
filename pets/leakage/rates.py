"""Statistics shared by the attack families.

Success rates with their confidence intervals, residual risk (Anonymeter's convention),
balanced targets and coins, and the figures of a membership score (ROC, TPR at low
FPR, thresholds fitted on one half of the targets and scored on the other).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FPR_LEVELS",
    "Rate",
    "balanced_coins",
    "balanced_halves",
    "balanced_targets",
    "best_threshold",
    "clopper_pearson",
    "control_share",
    "cross_fitted_hits",
    "difference_interval",
    "residual_risk",
    "residual_risk_interval",
    "roc_figures",
    "wilson_interval",
]

#: False-positive rates at which the true-positive rate is reported.
FPR_LEVELS = (1e-2, 1e-3)


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float, float]:
    """Return (centre, low, high) of the Wilson score interval for ``successes``/``trials``.

    centre = (k + z²/2) / (n + z²);
    half-width = z / (n + z²) · sqrt(k (n − k) / n + z² / 4).
    """
    if trials <= 0:
        raise ValueError("trials must be positive")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, {trials}], got {successes}")
    k, n, z2 = successes, trials, z * z
    centre = (k + z2 / 2) / (n + z2)
    half = z / (n + z2) * math.sqrt(k * (n - k) / n + z2 / 4)
    return centre, max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Rate:
    """An attack's success count, with its Wilson interval."""

    successes: int
    trials: int

    @property
    def value(self) -> float:
        """Observed share ``successes / trials``."""
        return self.successes / self.trials

    @property
    def interval(self) -> tuple[float, float]:
        """95% Wilson interval."""
        _, low, high = wilson_interval(self.successes, self.trials)
        return low, high


def difference_interval(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, z: float = 1.96
) -> tuple[float, float, float]:
    """Return (difference, low, high) of ``a - b`` for two independent rates, with
    Newcombe's hybrid score interval (method 10), built from the two Wilson intervals.

    low = d - sqrt((p_a - l_a)^2 + (u_b - p_b)^2);
    high = d + sqrt((u_a - p_a)^2 + (p_b - l_b)^2).
    """
    p_a, p_b = successes_a / trials_a, successes_b / trials_b
    _, l_a, u_a = wilson_interval(successes_a, trials_a, z)
    _, l_b, u_b = wilson_interval(successes_b, trials_b, z)
    d = p_a - p_b
    low = d - math.sqrt((p_a - l_a) ** 2 + (u_b - p_b) ** 2)
    high = d + math.sqrt((u_a - p_a) ** 2 + (p_b - l_b) ** 2)
    return d, max(-1.0, low), min(1.0, high)


def residual_risk(attack: float, control: float) -> float:
    """Return ``(attack − control) / (1 − control)`` clipped to [0, 1]."""
    if control >= 1.0:
        return 0.0
    return min(1.0, max(0.0, (attack - control) / (1.0 - control)))


def residual_risk_interval(low: float, high: float, control: float) -> tuple[float, float]:
    """Return the residual risk at both ends of the attack rate's interval ``(low, high)``
    against the control (or baseline) rate, as Anonymeter carries the attack's interval
    through; the control's own uncertainty is not included."""
    return residual_risk(low, control), residual_risk(high, control)


def clopper_pearson(successes: int, trials: int, alpha: float = 0.05) -> tuple[float, float]:
    """Return the exact two-sided Clopper-Pearson interval at level ``1 - alpha``.

    Each side holds ``alpha / 2``; for a one-sided bound at level ``1 - a`` pass
    ``alpha = 2 a`` and read one end.
    """
    from scipy.stats import beta

    if trials <= 0:
        raise ValueError("trials must be positive")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, {trials}], got {successes}")
    k, n = successes, trials
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def control_share(hits: int, trials: int) -> float | None:
    """Return the control rate ``hits / trials``, or None when there was no control."""
    return hits / trials if trials > 0 else None


def balanced_coins(count: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``count`` secrets of hypothetical non-members, half 0 and half 1."""
    return rng.permutation(np.arange(count) % 2)


def balanced_targets(
    secrets: np.ndarray,
    count: int,
    rng: np.random.Generator,
    eligible: Sequence[bool] | None = None,
) -> np.ndarray:
    """Return up to ``count`` row positions, half with secret 1 and half with 0.

    Balanced targets make the baseline (guessing) exactly one half, so a high
    success rate is never the prevalence of the majority value.
    """
    secrets = np.asarray(secrets)
    mask = np.ones(len(secrets), bool) if eligible is None else np.asarray(eligible, bool)
    ones = np.flatnonzero(mask & (secrets == 1))
    zeros = np.flatnonzero(mask & (secrets == 0))
    half = min(count // 2, len(ones), len(zeros))
    picked = np.concatenate(
        [rng.choice(ones, half, replace=False), rng.choice(zeros, half, replace=False)]
    )
    return rng.permutation(picked)


def roc_figures(scores: np.ndarray, is_member: np.ndarray) -> dict[str, float]:
    """Return AUC, advantage (max TPR - FPR), TPR at :data:`FPR_LEVELS` and the
    smallest resolvable FPR of a membership score (higher: member)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0, posinf=1e300)
    scores = np.maximum(scores, -1e300)
    fpr, tpr, _ = roc_curve(is_member, scores)
    out = {
        "auc": float(roc_auc_score(is_member, scores)),
        "advantage": float(max(0.0, np.max(tpr - fpr))),
    }
    for level in FPR_LEVELS:
        out[f"tpr_at_fpr_{level:.0e}".replace("e-0", "e-")] = float(tpr[fpr <= level].max())
    out["min_resolvable_fpr"] = 1.0 / int(np.sum(~np.asarray(is_member, bool)))
    return out


def balanced_halves(is_member: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Assign each target to half 0 or 1, members and non-members split evenly."""
    is_member = np.asarray(is_member, bool)
    half = np.empty(len(is_member), int)
    for group in (is_member, ~is_member):
        where = np.flatnonzero(group)
        side = np.zeros(len(where), int)
        side[len(where) // 2 :] = 1
        half[where] = rng.permutation(side)
    return half


def best_threshold(scores: np.ndarray, is_member: np.ndarray) -> float:
    """The threshold (member when score >= it) with the best balanced accuracy."""
    values = np.unique(scores)
    candidates = np.concatenate(
        [[values[0] - 1.0], (values[:-1] + values[1:]) / 2.0, [values[-1] + 1.0]]
    )
    members, others = np.sort(scores[is_member]), np.sort(scores[~is_member])
    tpr = 1.0 - np.searchsorted(members, candidates, side="left") / max(1, len(members))
    tnr = np.searchsorted(others, candidates, side="left") / max(1, len(others))
    return float(candidates[int(np.argmax(tpr + tnr))])


def cross_fitted_hits(scores: np.ndarray, is_member: np.ndarray, halves: np.ndarray) -> int:
    """Correct calls of thresholds each chosen on one half of the targets and applied to
    the other half (so the threshold search is not scored on its own data)."""
    hits = 0
    for fit_half in (0, 1):
        fit, test = halves == fit_half, halves != fit_half
        t = best_threshold(scores[fit], is_member[fit])
        hits += int(np.sum((scores[test] >= t) == is_member[test]))
    return hits
