"""Synthetic-data generation at 10,000 and 100,000 patients: time and peak memory.

Run: ``python -m pytest tests/benchmarks/test_synth_bench.py -m slow --benchmark-enable -s -n 0``.
Each synthesis runs in a fresh process (so its peak resident memory is its own); each
test prints one ``RATIO`` line (100,000 against 10,000 patients, measured in the same
run) and stores the figures in pytest-benchmark's ``extra_info``. Nothing is asserted
about speed.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

pytestmark = pytest.mark.slow

COLUMNS = [
    "age", "sex", "ethnicity", "deprivation_decile", "bmi", "hba1c", "systolic_bp", "smoker",
    "t2_diabetes", "copd", "chd", "hypertension", "admissions_prior_year", "readmitted_30d",
]  # fmt: skip


def _synthesise(backend: str, n: int) -> dict[str, float]:
    """In a fresh process: generate ``n`` patients, synthesise a release of the same
    size, and return seconds and memory (MiB) before and at the peak."""
    from pets.backends.synth.copula import SynthCopula
    from pets.backends.synth.mst import SynthDP
    from pets.data import generate_cohort

    frame = generate_cohort(n, seed=1)
    synthesiser = {"synth-copula": SynthCopula(seed=1), "synth-dp": SynthDP(epsilon=1.0, seed=1)}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    table = synthesiser[backend].publish(frame, COLUMNS, task=None)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mib": peak, "before_mib": before, "rows": len(table)}


def _in_fresh_process(backend: str, n: int) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_synthesise, backend, n).result()


@pytest.mark.parametrize("backend", ["synth-copula", "synth-dp"])
def test_generation_at_10k_and_100k(benchmark, backend):
    small = _in_fresh_process(backend, 10_000)
    large = benchmark.pedantic(_in_fresh_process, args=(backend, 100_000), rounds=1, iterations=1)
    assert abs(large["rows"] - 100_000) < 1_000 and abs(small["rows"] - 10_000) < 1_000
    figures = {
        "seconds_10k": small["seconds"],
        "seconds_100k": large["seconds"],
        "time_ratio_100k_to_10k": large["seconds"] / small["seconds"],
        "peak_mib_10k": small["peak_mib"],
        "peak_mib_100k": large["peak_mib"],
        "growth_mib_10k": small["peak_mib"] - small["before_mib"],
        "growth_mib_100k": large["peak_mib"] - large["before_mib"],
    }
    benchmark.extra_info.update(figures)
    shown = ", ".join(f"{k}={v:.4g}" for k, v in figures.items())
    print(f"\nRATIO {backend} 100k vs 10k: {shown}")
