"""How cost grows with the number of patients: the log-log slope per backend.

A slope of 1 means cost proportional to patients; near 0, cost dominated by fixed
costs (keys, party start-up); above 1, worse than linear. The fit is a least-squares
line through (log size, log cost) of the median cost at each size
(``numpy.polyfit``), over the ``ok`` records of a run folder: a size sweep
(``pets run --sizes`` or a card's ``sizes``), or one ``pets bench --scaling CARD`` runs.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pets.records import Record

__all__ = [
    "ScalingError",
    "ScalingFit",
    "fit_scaling",
    "log_log_slope",
    "read_run_records",
    "scaling_table",
]


class ScalingError(ValueError):
    """No slope can be fitted; the message is one line saying why and what to run."""


def log_log_slope(sizes: Sequence[float], costs: Sequence[float]) -> float:
    """The slope of ``log(cost)`` against ``log(size)`` (least squares).

    Raises
    ------
    ScalingError
        Fewer than two distinct sizes, or a cost that is not positive.
    """
    if len(set(sizes)) < 2:
        raise ScalingError(f"a slope needs at least two distinct sizes, got {sorted(set(sizes))}")
    if any(not (c > 0 and math.isfinite(c)) for c in costs):
        raise ScalingError("a slope needs positive costs at every size")
    slope, _ = np.polyfit(np.log(np.asarray(sizes, float)), np.log(np.asarray(costs, float)), 1)
    return float(slope)


@dataclass(frozen=True)
class ScalingFit:
    """The fitted growth of one backend's cost on one scenario.

    Attributes
    ----------
    scenario, backend, params : str
        What ran (``params`` as sorted JSON).
    sizes : tuple of int
        The distinct sizes with an ``ok`` record.
    wall_s : tuple of float
        Median ``cost.wall_s`` at each size.
    wall_slope : float or None
        Log-log slope of wall time (None with fewer than two sizes).
    bytes_slope : float or None
        Log-log slope of ``cost.bytes_total``, where every size moved bytes.
    """

    scenario: str
    backend: str
    params: str
    sizes: tuple[int, ...]
    wall_s: tuple[float, ...]
    wall_slope: float | None
    bytes_slope: float | None


def fit_scaling(records: Iterable[Record]) -> list[ScalingFit]:
    """Fit the slope of every (scenario, backend, params) of ``records``.

    Raises
    ------
    ScalingError
        No group has ``ok`` records at two or more distinct sizes.
    """
    groups: dict[tuple[str, str, str], dict[int, list[Record]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for record in records:
        if record.status == "ok" and record.cost.get("wall_s"):
            key = (record.scenario, record.backend, json.dumps(record.params, sort_keys=True))
            groups[key][int(record.size)].append(record)
    fits = []
    for (scenario, backend, params), by_size in sorted(groups.items()):
        sizes = tuple(sorted(by_size))
        walls = tuple(float(statistics.median(r.cost["wall_s"] for r in by_size[n])) for n in sizes)
        moved = [
            float(statistics.median(float(r.cost.get("bytes_total") or 0) for r in by_size[n]))
            for n in sizes
        ]
        enough = len(sizes) >= 2
        fits.append(
            ScalingFit(
                scenario,
                backend,
                params,
                sizes,
                walls,
                log_log_slope(sizes, walls) if enough else None,
                log_log_slope(sizes, moved) if enough and all(b > 0 for b in moved) else None,
            )
        )
    if not any(f.wall_slope is not None for f in fits):
        seen = ", ".join(map(str, sorted({n for f in fits for n in f.sizes}))) or "none"
        raise ScalingError(
            f"the records hold ok cells at one size at most ({seen}); "
            "a slope needs at least two: run with --sizes 1000,10000 or a card that lists sizes"
        )
    return fits


def _slope(value: float) -> str:
    return f"{0.0 if abs(value) < 0.005 else value:.2f}"


def scaling_table(fits: Sequence[ScalingFit]) -> str:
    """The fits as a text table: scenario, backend, sizes, wall time at each, slopes."""
    rows = [("scenario", "backend", "params", "sizes", "wall s at each size", "slope", "bytes")]
    for f in fits:
        rows.append(
            (
                f.scenario,
                f.backend,
                "" if f.params == "{}" else f.params,
                ", ".join(f"{n:,}" for n in f.sizes),
                ", ".join(f"{w:.3g}" for w in f.wall_s),
                "needs 2 sizes" if f.wall_slope is None else _slope(f.wall_slope),
                "-" if f.bytes_slope is None else _slope(f.bytes_slope),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def read_run_records(folder: Path) -> list[Record]:
    """The records of a run folder (refused with one line if it has none)."""
    from pets.records import ResultStore

    store = ResultStore(folder)
    if not store.jsonl_path.exists():
        raise ScalingError(f"{folder} is not a run folder (no records.jsonl)")
    return store.read()
