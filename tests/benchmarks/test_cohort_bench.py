"""Benchmarks of cohort generation (run with ``pytest tests/benchmarks --benchmark-enable -n 0``).

No timing is asserted; pytest-benchmark reports the figures, and the ratio of the
1,000,000-patient run to the 100,000-patient run shows how generation scales.
"""

from __future__ import annotations

import pytest

from pets.data import generate_cohort


@pytest.mark.parametrize("n", [100_000, 1_000_000])
def test_generate_cohort(benchmark, n):
    frame = benchmark.pedantic(
        generate_cohort, args=(n,), kwargs={"seed": 1}, rounds=3, iterations=1
    )
    assert len(frame) == n
