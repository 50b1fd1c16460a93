"""Plain-language ratings of scorecard figures, with the thresholds behind them as data.

Each scale is a list of bands: a figure gets the word of the first band whose bound it
does not pass. The report prints the same bands as a table, so the page states every
threshold it uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pets.report.units import is_missing, show_bytes, show_seconds

__all__ = [
    "RATING_SCALES",
    "Band",
    "Rating",
    "RatingScale",
    "rate",
    "rate_accuracy",
    "rate_epsilon",
]


@dataclass(frozen=True)
class Rating:
    """A word for a figure and its tone (``good``, ``fair``, ``poor`` or ``none``)."""

    word: str
    tone: str


@dataclass(frozen=True)
class Band:
    """Figures up to ``bound`` (down to it, on a higher-is-better scale) get ``word``."""

    bound: float
    word: str
    tone: str


@dataclass(frozen=True)
class RatingScale:
    """One column's bands.

    Parameters
    ----------
    column : str
        The scorecard column it rates.
    bands : sequence of Band
        In order; the last band catches everything left.
    higher_is_better : bool
        True when bands are lower bounds (accuracy scores), False for upper bounds.
    unit : str
        How bounds are written: ``"seconds"``, ``"bytes"`` or ``""`` (plain numbers).
    meaning : str
        One sentence on what the figure is.
    """

    column: str
    bands: Sequence[Band]
    higher_is_better: bool = False
    unit: str = ""
    meaning: str = ""

    def rate(self, value: Any) -> Rating:
        """Return the rating of ``value`` (``not measured`` when missing)."""
        if is_missing(value):
            return Rating("not measured", "none")
        v = float(value)
        for band in self.bands:
            inside = v >= band.bound if self.higher_is_better else v <= band.bound
            if inside:
                return Rating(band.word, band.tone)
        last = self.bands[-1]
        return Rating(last.word, last.tone)

    def describe(self) -> list[tuple[str, str]]:
        """Return each band as (range in words, rating word)."""
        out = []
        for i, band in enumerate(self.bands):
            if i == len(self.bands) - 1:
                edge = self._bound(self.bands[i - 1].bound) if i else "any"
                out.append((f"{'below' if self.higher_is_better else 'above'} {edge}", band.word))
            else:
                word = "at least" if self.higher_is_better else "at most"
                out.append((f"{word} {self._bound(band.bound)}", band.word))
        return out

    def _bound(self, value: float) -> str:
        if self.unit == "seconds":
            return show_seconds(value)
        if self.unit == "bytes":
            return show_bytes(value)
        return f"{value:g}"


_INF = float("inf")

#: Every scale the report uses, by key.
RATING_SCALES: dict[str, RatingScale] = {
    "error": RatingScale(
        "accuracy (an error: relative error, AUC shortfall, distance between distributions)",
        (
            Band(0.01, "exact or nearly", "good"),
            Band(0.05, "close", "good"),
            Band(0.25, "approximate", "fair"),
            Band(_INF, "poor", "poor"),
        ),
        meaning="The task's primary metric against the plaintext answer; 0 is exact.",
    ),
    "score": RatingScale(
        "accuracy (a score: F1, decision agreement)",
        (
            Band(0.99, "exact or nearly", "good"),
            Band(0.95, "close", "good"),
            Band(0.8, "approximate", "fair"),
            Band(-_INF, "poor", "poor"),
        ),
        higher_is_better=True,
        meaning="The task's primary metric against the plaintext answer; 1 is exact.",
    ),
    "seconds": RatingScale(
        "time (measured here, and modelled on a WAN)",
        (
            Band(1.0, "instant", "good"),
            Band(60.0, "seconds", "good"),
            Band(3600.0, "minutes", "fair"),
            Band(_INF, "hours", "poor"),
        ),
        unit="seconds",
        meaning="Wall time of the protocol from the moment every party holds its data to "
        "the last party's end; the WAN figure adds 50 ms per round and 100 Mbit/s for the busiest "
        "link's bytes.",
    ),
    "bytes": RatingScale(
        "bytes exchanged",
        (
            Band(1024**2, "light", "good"),
            Band(100 * 1024**2, "moderate", "good"),
            Band(10 * 1024**3, "heavy", "fair"),
            Band(_INF, "very heavy", "poor"),
        ),
        unit="bytes",
        meaning="Every byte every party sent through the harness, summed.",
    ),
    "rounds": RatingScale(
        "rounds of communication",
        (
            Band(2, "few", "good"),
            Band(20, "several", "fair"),
            Band(_INF, "many", "poor"),
        ),
        meaning="The longest chain of messages each waiting for the one before: each "
        "round costs one network latency.",
    ),
    "risk": RatingScale(
        "worst residual risk",
        (
            Band(0.1, "low", "good"),
            Band(0.5, "elevated", "fair"),
            Band(_INF, "high", "poor"),
        ),
        meaning="The best attack's success beyond a control: (attack − control) / "
        "(1 − control); 0 means no better than guessing, 1 complete. Above 0.5 at the "
        "lower end of its 95% interval the harness flags the attack as successful.",
    ),
    "epsilon": RatingScale(
        "differential-privacy epsilon (claimed)",
        (
            Band(1.0, "strong", "good"),
            Band(5.0, "moderate", "fair"),
            Band(_INF, "weak", "poor"),
        ),
        meaning="The worst-case bound on what the output reveals about any one patient; "
        "smaller is stronger. No figure means the backend makes no DP claim.",
    ),
}


def rate(scale: str, value: Any) -> Rating:
    """Return the rating of ``value`` on the scale named ``scale``."""
    return RATING_SCALES[scale].rate(value)


def rate_accuracy(value: Any, higher_is_better: bool) -> Rating:
    """Return the accuracy rating on the error or the score scale."""
    return rate("score" if higher_is_better else "error", value)


def rate_epsilon(claimed: Any, lower_bound: Any) -> Rating:
    """Return the rating of a DP claim: ``contradicted`` when the audited lower bound is
    above the claim, ``no DP claim`` without one, else the epsilon scale."""
    if is_missing(claimed):
        return Rating("no DP claim", "none")
    if not is_missing(lower_bound) and float(lower_bound) > float(claimed):
        return Rating("contradicted", "poor")
    return rate("epsilon", claimed)
