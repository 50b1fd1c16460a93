"""Task kinds: the reference scores exact against itself, and damage shows in the metrics."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pets.scenarios import build_problem, load_scenario
from pets.tasks import TASK_KINDS, design_matrix
from pets.tasks.aggregate import AggregateOutput
from pets.tasks.inference import InferenceOutput
from pets.tasks.linkage import LinkageOutput
from pets.tasks.query import QueryOutput
from pets.tasks.release import ReleaseOutput


def _problem(scenario_dir, card_id, size=3000, seed=0):
    card = load_scenario(card_id, scenario_dir)
    problem = build_problem(card, size, seed)
    kind = TASK_KINDS[card.kind]
    return problem, kind, kind.reference(problem)


def test_aggregate_exact_then_noisy_then_suppressed(scenario_dir):
    problem, kind, ref = _problem(scenario_dir, "multi_site_prevalence")
    assert kind.score(ref, ref, problem).primary_value == 0.0
    table = ref.table
    assert len(table) == 9 * 2 * 10
    assert table["n"].sum() == sum(len(f) for f in problem.party_data.values())
    noisy = table + np.random.default_rng(0).normal(0, 1, table.shape)
    acc = kind.score(AggregateOutput(noisy), ref, problem)
    assert acc.metrics["median_relative_error"] > 0.01
    suppressed = table.where(table["n"] >= 10)
    acc = kind.score(AggregateOutput(suppressed), ref, problem)
    assert 0 < acc.metrics["fraction_released"] < 1
    assert acc.metrics["max_absolute_error"] == 0.0  # what is released is exact
    assert acc.metrics["max_relative_error"] == 1.0  # a withheld cell counts as full error


def test_aggregate_means_are_pooled_means(scenario_dir):
    problem, _, ref = _problem(scenario_dir, "multi_site_prevalence")
    import pandas as pd

    pooled = pd.concat(problem.party_data.values())
    cell = pooled[
        (pooled.age_band == "55-64") & (pooled.sex == "F") & (pooled.deprivation_decile == 3)
    ]
    assert ref.table.loc[("55-64", "F", 3), "hba1c_mean"] == pytest.approx(cell.hba1c.mean())
    assert ref.table.loc[("55-64", "F", 3), "n"] == len(cell)


def test_linkage_precision_recall_cardinality(scenario_dir):
    problem, kind, ref = _problem(scenario_dir, "trial_recruitment_linkage", size=20000)
    assert 0 < ref.cardinality
    exact = kind.score(ref, ref, problem)
    assert exact.primary == "f1" and exact.primary_value == 1.0
    missing = set(ref.matches)
    missing.pop()
    extra = {*ref.matches, 1}
    acc_missing = kind.score(
        replace(ref, matches=frozenset(missing), cardinality=len(missing)), ref, problem
    )
    acc_extra = kind.score(replace(ref, matches=frozenset(extra)), ref, problem)
    assert acc_missing.metrics["recall"] < 1 and acc_missing.metrics["precision"] == 1
    assert acc_missing.metrics["cardinality_error"] == 1
    assert acc_extra.metrics["precision"] < 1 and acc_extra.metrics["recall"] == 1
    only_count = kind.score(LinkageOutput(None, ref.cardinality, ref.statistics), ref, problem)
    assert only_count.primary == "cardinality_error" and only_count.primary_value == 0


def test_train_scores_against_pooled_on_heldout(scenario_dir):
    problem, kind, ref = _problem(scenario_dir, "federated_risk_model", size=20000)
    exact = kind.score(ref, ref, problem)
    assert exact.primary_value == 0.0
    assert 0.6 < exact.metrics["auc"] < 0.95
    worse = replace(ref, coef=ref.coef * 0 + 0.01)
    assert kind.score(worse, ref, problem).metrics["auc_shortfall"] > 0.05


def test_inference_agreement(scenario_dir):
    problem, kind, ref = _problem(scenario_dir, "encrypted_supplier_inference")
    assert kind.score(ref, ref, problem).primary_value == 1.0
    shifted = InferenceOutput(ref.scores + 0.05)
    acc = kind.score(shifted, ref, problem)
    assert acc.metrics["max_abs_score_error"] == pytest.approx(0.05)
    assert acc.metrics["decision_agreement"] < 1.0
    model = problem.party_data["ai_supplier"]
    patients = problem.party_data["gp_federation"]
    np.testing.assert_allclose(
        ref.scores, model.predict_proba(design_matrix(patients, model.features))
    )


def test_release_utility_falls_when_columns_are_shuffled(scenario_dir):
    problem, kind, ref = _problem(scenario_dir, "research_data_release", size=5000)
    exact = kind.score(ref, ref, problem)
    assert exact.metrics["tvd_2way_mean"] == 0.0 and exact.metrics["auc_shortfall"] == 0.0
    rng = np.random.default_rng(1)
    shuffled = ref.table.copy()
    for column in shuffled.columns:
        shuffled[column] = rng.permutation(shuffled[column].to_numpy())
    acc = kind.score(ReleaseOutput(shuffled), ref, problem)
    assert acc.metrics["tvd_1way_mean"] == pytest.approx(0.0, abs=1e-12)  # marginals kept
    assert acc.metrics["tvd_2way_mean"] > 0.005  # joint structure lost
    assert acc.metrics["tstr_auc"] < acc.metrics["trtr_auc"] - 0.05
    with pytest.raises(ValueError, match="lacks analysis columns"):
        kind.score(ReleaseOutput(shuffled.drop(columns=["hba1c"])), ref, problem)


def test_query_refusal_counts_as_full_error(scenario_dir):
    problem, kind, ref = _problem(scenario_dir, "tre_queries")
    assert kind.score(ref, ref, problem).primary_value == 0.0
    answers = list(ref.answers)
    answers[0] = None
    answers[1] = answers[1] + 10
    acc = kind.score(QueryOutput(tuple(answers), {0: "budget spent"}), ref, problem)
    assert acc.metrics["fraction_answered"] == pytest.approx(0.9)
    assert acc.metrics["relative_error.diabetes_count"] == 1.0
    assert acc.metrics["relative_error.diabetes_count_under_85"] == pytest.approx(
        10 / ref.answers[1]
    )
    histogram = ref.answers[6]
    assert histogram.sum() == problem.party_data["custodian"].query("age >= 18").shape[0]
