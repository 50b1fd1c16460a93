"""Splitting the cohort among parties."""

from __future__ import annotations

import numpy as np
import pytest

from pets.data import (
    generate_cohort,
    split_by_column,
    split_catchment,
    split_holdout,
    split_overlap,
)


@pytest.fixture(scope="module")
def cohort():
    return generate_cohort(60_000, seed=2)


def test_by_column_is_disjoint_and_covers(cohort):
    parts = split_by_column(
        cohort, "nation", {"gb": ["England", "Scotland", "Wales"], "ni": ["Northern Ireland"]}
    )
    assert len(parts["gb"]) + len(parts["ni"]) == len(cohort)
    assert set(parts["ni"]["nation"]) == {"Northern Ireland"}
    with pytest.raises(ValueError, match="given to both"):
        split_by_column(cohort, "nation", {"a": ["Wales"], "b": ["Wales"]})
    with pytest.raises(ValueError, match="column 'natoin'"):
        split_by_column(cohort, "natoin", {"a": ["Wales"]})


def test_catchment_sizes_follow_shares_and_case_mix_differs(cohort):
    shares = [0.4, 0.3, 0.2, 0.1]
    parts = split_catchment(cohort, ["a", "b", "c", "d"], shares, np.random.default_rng(0))
    sizes = np.array([len(p) for p in parts.values()])
    assert sizes.sum() == len(cohort)
    np.testing.assert_allclose(sizes / sizes.sum(), shares, atol=0.06)
    practices = [set(p["gp_practice"]) for p in parts.values()]
    assert all(not (practices[i] & practices[j]) for i in range(4) for j in range(i + 1, 4))
    deciles = [p["deprivation_decile"].mean() for p in parts.values()]
    assert max(deciles) - min(deciles) > 1.0  # non-IID
    again = split_catchment(cohort, ["a", "b", "c", "d"], shares, np.random.default_rng(0))
    assert all(parts[k].equals(again[k]) for k in parts)
    with pytest.raises(ValueError, match="shares must be positive"):
        split_catchment(cohort, ["a", "b"], [1, 0], np.random.default_rng(0))


def test_overlap_is_partial(cohort):
    spec = {
        "registry": {"query": "cancer == 1", "extra_fraction": 0.1},
        "gp": {"practice_fraction": 0.5},
    }
    parts = split_overlap(cohort, spec, np.random.default_rng(1))
    a, b = set(parts["registry"]["nhs_number"]), set(parts["gp"]["nhs_number"])
    assert 0 < len(a & b) < min(len(a), len(b))
    assert (parts["registry"]["cancer"] == 1).all()
    assert 0.4 < len(b) / len(cohort) < 0.6
    with pytest.raises(ValueError, match="practice_fraction"):
        split_overlap(cohort, {"x": {"practice_fraction": 0}}, np.random.default_rng(1))


def test_holdout(cohort):
    rest, held = split_holdout(cohort, 0.2, np.random.default_rng(3))
    assert len(rest) + len(held) == len(cohort)
    assert 0.18 < len(held) / len(cohort) < 0.22
    assert not set(rest["nhs_number"]) & set(held["nhs_number"])
    with pytest.raises(ValueError, match="fraction"):
        split_holdout(cohort, 1.5, np.random.default_rng(3))
