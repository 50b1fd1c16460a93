"""The ``pets bench`` measurements under pytest-benchmark: packed against naive (CKKS,
Paillier, MPyC), the cohort generation rate, and a cell's overhead from plan to record.

Run: ``python -m pytest tests/benchmarks/test_bench_suite.py -m slow --benchmark-enable -s -n 0``
(``--benchmark-json FILE`` keeps the figures). Each test times one whole measurement
(both sides, the quick sizes of ``pets bench --quick`` with three repeats), prints one
``RATIO`` line and stores both medians and the ratio in ``extra_info``. Nothing about
speed is asserted; each asserts only that the ratio is the quotient of the medians it
was computed from.
"""

from __future__ import annotations

import pytest

from pets.bench import BenchSettings, Measurement
from pets.bench.cells import HarnessCells, per_cell_overhead
from pets.bench.cohort import cohort_rate
from pets.bench.packing import ckks_packing, mpyc_vectorised, paillier_packing
from pets.registry import Registry

SETTINGS = BenchSettings.for_mode(quick=True, repeats=3)


def _report(benchmark, measurements) -> Measurement:
    (measurement,) = measurements
    assert isinstance(measurement, Measurement), measurement  # not skipped
    assert measurement.ratio == measurement.numerator.seconds / measurement.denominator.seconds
    benchmark.extra_info.update(
        numerator_s=measurement.numerator.seconds,
        denominator_s=measurement.denominator.seconds,
        ratio=measurement.ratio,
        **{k: v for k, v in measurement.figures.items() if isinstance(v, int | float)},
    )
    print(
        f"\nRATIO {measurement.name}: {measurement.numerator.label} "
        f"{measurement.numerator.seconds:.4g} s / {measurement.denominator.label} "
        f"{measurement.denominator.seconds:.4g} s = {measurement.ratio:.3g}x"
    )
    return measurement


@pytest.mark.parametrize(
    "measure", [ckks_packing, paillier_packing, mpyc_vectorised], ids=["ckks", "paillier", "mpyc"]
)
def test_packed_vs_naive(benchmark, measure):
    _report(benchmark, benchmark.pedantic(measure, args=(SETTINGS,), rounds=1, iterations=1))


def test_cohort_generation_rate(benchmark):
    settings = BenchSettings.for_mode(quick=False, repeats=3)  # 1,000,000 patients
    measurement = _report(
        benchmark, benchmark.pedantic(cohort_rate, args=(settings,), rounds=1, iterations=1)
    )
    print(f"patients per second: {measurement.figures['patients_per_s']:,.0f}")


def test_cell_overhead_plan_to_record(benchmark, tmp_path):
    cells = HarnessCells(tmp_path, SETTINGS, Registry.from_entry_points())
    _report(benchmark, benchmark.pedantic(per_cell_overhead, args=(cells,), rounds=1, iterations=1))
