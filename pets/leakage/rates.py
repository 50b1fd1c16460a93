"""Success rates with confidence intervals, and residual risk (Anonymeter's convention)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "Rate",
    "clopper_pearson",
    "residual_risk",
    "residual_risk_interval",
    "wilson_interval",
]


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
