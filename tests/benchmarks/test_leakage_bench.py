"""Transcript exposure on a large transcript: the vectorised scan against a search of
each value's byte patterns one by one, measured in the same run.

Run: ``python -m pytest tests/benchmarks/test_leakage_bench.py -m slow --benchmark-enable -s -n 0``.
It prints one ``RATIO`` line and stores the figures in pytest-benchmark's
``extra_info``; it asserts only that both searches find the same values.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from pets.leakage.transcript import encodings, transcript_exposure

pytestmark = pytest.mark.slow


def _transcript(rng: np.random.Generator, megabytes: int) -> tuple[bytes, dict]:
    """Random bytes (as ciphertext looks) with half of a sample of values embedded."""
    ids = rng.integers(4_000_000_000, 4_999_999_999, size=64)
    hba1c = rng.uniform(30, 90, size=64)
    noise = bytearray(rng.bytes(megabytes * 2**20))
    embedded = [v.tobytes() for v in ids[:32].astype("<i8")] + [
        v.tobytes() for v in hba1c[:32].astype("<f8")
    ]
    for i, pattern in enumerate(embedded):
        at = (i + 1) * (len(noise) // 70)
        noise[at : at + 8] = pattern
    sensitive = {"hospital": {"nhs_number": ids, "hba1c": hba1c}}
    return bytes(noise), sensitive


def _one_by_one(haystack: bytes, sensitive: dict) -> int:
    values = [v for columns in sensitive.values() for vs in columns.values() for v in vs]
    return sum(any(p in haystack for p in encodings(v)) for v in values)


def test_vectorised_transcript_exposure_against_pattern_search(benchmark):
    haystack, sensitive = _transcript(np.random.default_rng(0), 16)
    start = time.perf_counter()
    reference = _one_by_one(haystack, sensitive)
    naive_s = time.perf_counter() - start
    result = benchmark.pedantic(
        transcript_exposure, args=({"analyst": [haystack]}, sensitive), rounds=3, iterations=1
    )
    (found,) = result
    assert round(found["success_rate"] * found["trials"]) == reference == 64
    vectorised_s = benchmark.stats.stats.median
    benchmark.extra_info.update(
        megabytes=16, one_by_one_s=naive_s, vectorised_s=vectorised_s,
        ratio=naive_s / vectorised_s,
    )  # fmt: skip
    print(
        f"\nRATIO transcript exposure, 16 MiB, 128 values: one by one {naive_s:.2f} s, "
        f"vectorised {vectorised_s:.3f} s, {naive_s / vectorised_s:.0f}x"
    )
