"""What one benchmark measurement is, how its two sides are timed, and where it is kept.

Every measurement is a ratio of two timings taken in the same process and the same
run (a numerator and a denominator), each the median of several repeats, so that a
slow or busy machine moves both sides alike. Absolute figures (patients per second,
seconds per cell) ride along in ``figures``; no figure is ever compared with a fixed
threshold.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pets.records import ResultStore, write_atomic

__all__ = [
    "BENCH_SCHEMA",
    "BenchLog",
    "BenchSettings",
    "Measurement",
    "Side",
    "Skipped",
    "machine_facts",
    "read_measurements",
    "time_interleaved",
    "time_repeats",
]

#: Version of the measurement lines written to ``bench.jsonl``.
BENCH_SCHEMA = 1


@dataclass(frozen=True)
class Side:
    """One side of a ratio: what was timed and each repeat's seconds.

    Attributes
    ----------
    label : str
        What was timed, in words (``"plaintext cell through the harness"``).
    samples : tuple of float
        Seconds of each repeat.
    """

    label: str
    samples: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError(f"{self.label}: no timing samples")

    @property
    def seconds(self) -> float:
        """The median of :attr:`samples`."""
        return float(statistics.median(self.samples))


@dataclass(frozen=True)
class Measurement:
    """A ratio measured in one run: ``numerator.seconds / denominator.seconds``.

    Attributes
    ----------
    name : str
        ``<measurement>`` or ``<measurement>:<variant>`` (``secure_vs_pandas:paillier``).
    numerator, denominator : Side
        The two timings.
    size : int or None
        Patients (or values) the work was done on.
    figures : Mapping
        Absolute figures measured alongside (rates, start-up seconds, bytes).
    note : str
        What the ratio means, in one line.
    """

    name: str
    numerator: Side
    denominator: Side
    size: int | None = None
    figures: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def ratio(self) -> float:
        """Numerator median over denominator median."""
        return self.numerator.seconds / self.denominator.seconds

    @property
    def repeats(self) -> int:
        """Repeats of the side measured fewer times."""
        return min(len(self.numerator.samples), len(self.denominator.samples))

    def to_dict(self, machine: Mapping[str, Any]) -> dict[str, Any]:
        """One line of ``bench.jsonl``."""
        return {
            "schema_version": BENCH_SCHEMA,
            "name": self.name,
            "numerator": {
                "label": self.numerator.label,
                "seconds": self.numerator.seconds,
                "samples": list(self.numerator.samples),
            },
            "denominator": {
                "label": self.denominator.label,
                "seconds": self.denominator.seconds,
                "samples": list(self.denominator.samples),
            },
            "ratio": self.ratio,
            "repeats": self.repeats,
            "size": self.size,
            "figures": dict(self.figures),
            "note": self.note,
            "machine": dict(machine),
            "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }


@dataclass(frozen=True)
class Skipped:
    """A measurement that could not be taken here, and why (a library not installed,
    a cell that failed)."""

    name: str
    reason: str


def time_repeats(fn: Callable[[], Any], repeats: int, *, warm_up: bool = True) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` (after one untimed call)."""
    if warm_up:
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def time_interleaved(
    numerator: Callable[[], Any],
    denominator: Callable[[], Any],
    repeats: int,
    *,
    warm_up: bool = True,
) -> tuple[list[float], list[float]]:
    """Time two callables alternately, ``repeats`` times each.

    Alternating puts any drift of a shared machine on both sides alike. With
    ``warm_up`` each runs once first, untimed (imports, caches, first allocations).

    Returns
    -------
    (list of float, list of float)
        Seconds of each repeat of ``numerator`` and of ``denominator``.
    """
    if warm_up:
        numerator()
        denominator()
    top, bottom = [], []
    for _ in range(repeats):
        for fn, out in ((numerator, top), (denominator, bottom)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return top, bottom


def machine_facts() -> dict[str, Any]:
    """What each measurement line says about the machine: cores, CPU, Python, platform,
    package versions and the git commit (from :func:`pets.worker.environment`)."""
    from pets.worker import environment

    facts = environment(("tenseal", "phe", "gmpy2", "mpyc", "opendp"))
    facts["cores"] = os.cpu_count()
    try:
        facts["cores_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        facts["cores_usable"] = facts["cores"]
    return facts


class BenchLog:
    """The measurements of one ``pets bench`` run, kept in its run folder.

    ``bench.jsonl`` holds one JSON object per measurement, rewritten atomically after
    each, so an interrupted run keeps every finished one; ``manifest.json`` (written
    through :class:`pets.records.ResultStore`) holds the machine and the command.
    Cells the measurements run through the harness are kept as ordinary run folders
    under ``cells/``.

    Parameters
    ----------
    root : Path
        The run folder (created if missing).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.store = ResultStore(self.root)
        self.machine = machine_facts()
        self._lines: list[str] = []

    @property
    def path(self) -> Path:
        """``bench.jsonl``."""
        return self.root / "bench.jsonl"

    @property
    def cells_root(self) -> Path:
        """``cells/``: run folders of the cells measured through the harness."""
        return self.root / "cells"

    def start(self, options: Mapping[str, Any]) -> None:
        """Write the manifest: when, the options, the machine."""
        self.store.write_manifest(
            {
                "kind": "bench",
                "schema_version": BENCH_SCHEMA,
                "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "options": dict(options),
                "environment": self.machine,
            }
        )

    def add(self, measurement: Measurement) -> None:
        """Keep one measurement (the file is rewritten atomically)."""
        self._lines.append(json.dumps(measurement.to_dict(self.machine), sort_keys=True))
        write_atomic(self.path, ("\n".join(self._lines) + "\n").encode())


def read_measurements(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Return the measurement lines of a ``pets bench`` run folder, in order."""
    path = Path(root) / "bench.jsonl"
    lines: Iterable[str] = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@dataclass(frozen=True)
class BenchSettings:
    """Sizes and repeats of one ``pets bench`` run.

    Attributes
    ----------
    quick : bool
        Small sizes (what the tests use).
    repeats : int
        Timed repeats of each side (the median is kept).
    scenario : str
        The aggregate card the harness measurements run.
    cell_size : int
        Patients of each cell run through the harness.
    cohort_size : int
        Patients generated per repeat for the cohort rate.
    he_values : int
        Values each party encrypts in the packed-versus-naive measurements.
    """

    quick: bool = False
    repeats: int = 5
    scenario: str = "multi_site_prevalence"
    cell_size: int = 20_000
    cohort_size: int = 1_000_000
    he_values: int = 128

    @classmethod
    def for_mode(
        cls, *, quick: bool, repeats: int | None = None, cell_size: int | None = None
    ) -> BenchSettings:
        """The settings of ``--quick`` or of the default run, ``repeats`` and the
        harness cells' ``cell_size`` if given.

        Raises
        ------
        OptionError
            ``cell_size`` is not a whole number of patients of at least the smallest size.
        """
        if cell_size is not None:
            from pets.options import check_size

            cell_size = check_size(cell_size)
        if quick:
            size = 2_000 if cell_size is None else cell_size
            return cls(True, repeats or 2, cell_size=size, cohort_size=100_000, he_values=64)
        return cls(False, repeats or 5, cell_size=20_000 if cell_size is None else cell_size)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready data (kept in the manifest)."""
        return {
            "quick": self.quick,
            "repeats": self.repeats,
            "scenario": self.scenario,
            "cell_size": self.cell_size,
            "cohort_size": self.cohort_size,
            "he_values": self.he_values,
        }
