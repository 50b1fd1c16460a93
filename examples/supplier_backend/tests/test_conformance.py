"""The conformance kit: the same checks every built-in backend passes, one test each."""

from __future__ import annotations

from typing import Any

from pets.testing import check_backend, parametrize_with_checks

from pets_additive_sharing import AdditiveSharing

from leaky import LeakySharing


@parametrize_with_checks([AdditiveSharing(), AdditiveSharing(fraction_bits=16)])
def test_conforms(backend: Any, check: Any) -> None:
    check(backend)


def test_the_kit_fails_the_leaky_variant_and_says_what_to_fix() -> None:
    results = {r.check: r for r in check_backend(LeakySharing())}
    failed = [name for name, r in results.items() if r.status == "failed"]
    assert failed == ["check_transcript_consistent_with_claim"]
    message = results["check_transcript_consistent_with_claim"].message
    assert "share_aggregator" in message and "declare" in message
