"""The sharing arithmetic, in this process: shares reconstruct, alone they are noise."""

from __future__ import annotations

import numpy as np
import pytest
from pets import Registry

from pets_additive_sharing import AdditiveSharing
from pets_additive_sharing.backend import decode_fixed, encode_fixed, split_shares


def test_registered_under_its_entry_point() -> None:
    registry = Registry.from_entry_points()
    assert registry.target("additive-sharing") == "pets_additive_sharing.backend:AdditiveSharing"
    assert registry.load("additive-sharing") is AdditiveSharing


def test_constructor_only_stores_parameters() -> None:
    backend = AdditiveSharing(fraction_bits=99)  # checked when a party runs, not here
    assert backend.get_params() == {"fraction_bits": 99}
    with pytest.raises(TypeError):
        AdditiveSharing(16)  # type: ignore[misc]  # keyword-only


def test_shares_reconstruct_exactly_including_negative_values() -> None:
    values = np.array([0.0, 1.0, 3.25, -7.5, 123456.125, 2.0**30])
    secret = encode_fixed(values, 20, holders=4)
    a, b = split_shares(secret, np.random.default_rng(1))
    assert np.array_equal(decode_fixed(a + b, 20), values)


def test_one_share_alone_does_not_depend_on_the_secret() -> None:
    rng = np.random.default_rng(2)
    zeros = encode_fixed(np.zeros(20_000), 24, holders=1)
    large = encode_fixed(np.full(20_000, 1e6), 24, holders=1)
    for secret in (zeros, large):
        for share in split_shares(secret, rng):
            bits = np.unpackbits(share.view(np.uint8))
            assert abs(bits.mean() - 0.5) < 0.01  # uniform bits whatever the secret


def test_too_large_a_sum_for_the_encoding_says_what_to_change() -> None:
    with pytest.raises(ValueError, match="lower fraction_bits"):
        encode_fixed(np.array([2.0**30]), 40, holders=4)
