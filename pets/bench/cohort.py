"""Cohort generation rate: patients generated per second, against copying the same rows.

The denominator is a deep copy of the generated frame with pandas (every column's
values copied once): the cheapest way to produce those rows at all, so the ratio says
how many copies of the cohort the generator's time would buy. The absolute rate rides
along in ``figures``.
"""

from __future__ import annotations

from typing import Any

from pets.bench.measures import BenchSettings, Measurement, Side, time_interleaved

__all__ = ["cohort_rate"]


def cohort_rate(settings: BenchSettings) -> list[Measurement]:
    """Generating ``cohort_size`` patients / deep-copying the same frame."""
    from pets.data import generate_cohort

    n = settings.cohort_size
    frame: dict[str, Any] = {}

    def generate() -> None:
        frame["rows"] = generate_cohort(n, seed=1)

    generate()
    if len(frame["rows"]) != n:
        raise AssertionError(f"cohort_rate: asked for {n} patients, got {len(frame['rows'])}")
    generated, copied = time_interleaved(
        generate, lambda: frame["rows"].copy(deep=True), settings.repeats, warm_up=False
    )
    generating = Side(f"generate {n:,} patients", tuple(generated))
    copying = Side("deep copy of the same frame", tuple(copied))
    return [
        Measurement(
            "cohort_rate",
            generating,
            copying,
            size=n,
            figures={
                "patients_per_s": n / generating.seconds,
                "copied_rows_per_s": n / copying.seconds,
                "columns": len(frame["rows"].columns),
            },
            note="cohort generation / a pandas deep copy of its rows; patients_per_s is "
            "the absolute generation rate",
        )
    ]
