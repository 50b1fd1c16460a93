"""Statistical disclosure control baselines: what they withhold, round and generalise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pets.backends.sdc import SdcKanon, SdcRound, SdcSuppress, suppress_cells
from pets.data.cohort import IDENTIFIERS

from conftest import solve_card


def _run(backend, card_id, scenario_dir, size):
    return solve_card(backend, card_id, scenario_dir, size)[:4]


def test_secondary_suppression_protects_margins():
    index = pd.MultiIndex.from_product([["a", "b"], [1, 2, 3]], names=["band", "decile"])
    counts = pd.Series([4, 20, 30, 50, 60, 70], index=index)
    primary = suppress_cells(counts, ["band", "decile"], 10, secondary=False)
    assert primary.tolist() == [True, False, False, False, False, False]
    both = suppress_cells(counts, ["band", "decile"], 10, secondary=True)
    # the lone withheld cell of band a takes its smallest neighbour with it
    assert both.tolist() == [True, True, False, False, False, False]


def test_small_cells_are_withheld_and_no_margin_gives_one_back(scenario_dir):
    out, ref, acc, problem = _run(SdcSuppress(), "multi_site_prevalence", scenario_dir, 20_000)
    table, truth = out.table, ref.table
    withheld = table["n"].isna()
    assert withheld.any()
    assert (truth.loc[~withheld.to_numpy(), "n"] >= 10).all()  # nothing small published
    group_by = list(problem.task.params["group_by"])
    per_group = withheld.groupby(level=group_by[:-1], observed=True).sum()
    assert not (per_group == 1).any()
    assert 0 < acc.metrics["fraction_released"] < 1
    # what is published is exact
    published = ~withheld.to_numpy()
    np.testing.assert_allclose(table.loc[published, "n"], truth.loc[published, "n"])


def test_small_query_answers_are_refused(scenario_dir):
    out, ref, _, problem = _run(SdcSuppress(threshold=10), "tre_queries", scenario_dir, 10_000)
    queries = problem.task.params["queries"]
    for query, answer, truth in zip(queries, out.answers, ref.answers, strict=True):
        if query["kind"] == "count":
            assert (answer is None) == (truth < 10)
        if query["kind"] == "histogram":
            small = np.asarray(truth) < 10
            assert np.isnan(answer[small]).all() and not np.isnan(answer[~small]).any()


def test_counts_are_rounded_to_the_base(scenario_dir):
    out, ref, _, _ = _run(SdcRound(base=5), "multi_site_prevalence", scenario_dir, 20_000)
    counts = out.table["n"].to_numpy()
    assert (counts % 5 == 0).all()
    assert np.abs(counts - ref.table["n"].to_numpy()).max() <= 2.5


def test_k_anonymous_release_has_no_identifiers_and_no_small_class(scenario_dir):
    k = 5
    out, _, acc, problem = _run(SdcKanon(k=k), "research_data_release", scenario_dir, 5000)
    table = out.table
    assert not set(IDENTIFIERS) & set(table.columns)
    quasi = ["age", "sex", "ethnicity", "deprivation_decile"]
    sizes = table.groupby(quasi, observed=True, dropna=False).size()
    assert sizes.min() >= k
    (custodian,) = problem.party_data
    assert len(table) >= 0.95 * len(problem.party_data[custodian]) - 20
    assert np.isfinite(acc.metrics["tvd_2way_mean"])


@pytest.mark.parametrize("backend", [SdcSuppress(), SdcRound(), SdcKanon()])
def test_sdc_claims_are_heuristic(backend):
    claim = backend.capabilities.claim
    assert not claim.formal
    assert claim.epsilon is None
    assert "no formal guarantee" in claim.notes


def test_bad_sdc_parameters_are_named():
    with pytest.raises(ValueError, match="threshold must be a whole number"):
        SdcSuppress(threshold=0).capabilities  # noqa: B018
    with pytest.raises(ValueError, match="base must be a whole number"):
        SdcRound(base=1).capabilities  # noqa: B018
    with pytest.raises(ValueError, match="k must be a whole number"):
        SdcKanon(k=1).capabilities  # noqa: B018
