"""The conformance kit: the same checks every built-in backend passes, one test each."""

from __future__ import annotations

from typing import Any

from pets.testing import parametrize_with_checks

from pets_additive_sharing import AdditiveSharing


@parametrize_with_checks([AdditiveSharing(), AdditiveSharing(fraction_bits=16)])
def test_conforms(backend: Any, check: Any) -> None:
    check(backend)
