"""Linkability (attacker model A1): two halves of a target point to one released row.

- ``linkability`` (A1). The attacker holds two tables about the same patients that
  share no column: the demographic columns and the clinical ones. For each target, the
  nearest released row on each half; the two halves are linked when they point to the
  same row (:data:`LINK_NEIGHBOURS` nearest rows each, ties broken at random). The
  baseline is two random rows.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from scipy.special import gammaln

from pets.leakage._base import AttackResult, not_applicable, rate_result
from pets.leakage.release.distances import nearest_rows
from pets.leakage.release.view import AttackerView

__all__ = ["DEMOGRAPHICS", "LINKABILITY", "LINK_NEIGHBOURS", "linkability"]

LINKABILITY = "linkability"

#: Columns the linkability attacker's first table holds; the second holds the rest.
DEMOGRAPHICS = (
    "age",
    "year_of_birth",
    "age_band",
    "sex",
    "ethnicity",
    "deprivation_decile",
    "postcode_district",
    "nation",
)

#: Nearest released rows per half in the linkability attack.
LINK_NEIGHBOURS = 1


def linkability(
    view: AttackerView,
    members: np.ndarray,
    others: np.ndarray,
    rng: np.random.Generator,
    observer: str,
    common: dict[str, Any],
) -> AttackResult:
    """Link each target's two halves through the release; control: held-out patients."""
    start = time.perf_counter()
    first = [j for j, c in enumerate(view.columns) if c in DEMOGRAPHICS]
    second = [j for j, c in enumerate(view.columns) if c not in DEMOGRAPHICS]
    if not first or not second:
        half = len(view.columns) // 2
        first, second = list(range(half)), list(range(half, len(view.columns)))
    if not first or not second:
        return not_applicable(
            LINKABILITY, "A1", observer, "one release column cannot be split in two halves"
        )
    k = LINK_NEIGHBOURS

    def links(rows: np.ndarray) -> int:
        found = []
        for half in (first, second):
            released = view.scaled(view.release, half)
            idx, _ = nearest_rows(
                view.scaled(rows, half), released, view.numeric[half], k=k, rng=rng
            )
            found.append(idx)
        a, b = found
        return int(sum(bool(set(x) & set(y)) for x, y in zip(a, b, strict=True)))

    baseline = _random_link_rate(len(view.release), k)
    successes = links(view.original[members])
    control = links(view.control[others]) / len(others)
    names = [view.columns[j] for j in first], [view.columns[j] for j in second]
    note = (
        f"the two halves of a target ({', '.join(names[0])} | {', '.join(names[1])}) "
        f"point to the same released row ({k} nearest each); control: held-out patients"
    )
    return rate_result(
        LINKABILITY,
        "A1",
        observer,
        successes=successes,
        trials=len(members),
        baseline=baseline,
        control=control,
        cost_s=time.perf_counter() - start,
        note=note,
        **{"neighbours": k, "halves": [list(names[0]), list(names[1])], **common},
    )


def _random_link_rate(rows: int, k: int) -> float:
    """Chance that two random sets of ``k`` rows out of ``rows`` share one:
    ``1 - C(rows - k, k) / C(rows, k)``."""
    k = min(k, rows)
    if rows < 2 * k:
        return 1.0
    log_apart = 2 * gammaln(rows - k + 1) - gammaln(rows + 1) - gammaln(rows - 2 * k + 1)
    return float(1.0 - math.exp(log_apart))
