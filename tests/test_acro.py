"""The ``acro`` backend: outputs produced and checked by ACRO, released only if it passes."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pets.backends.acro_backend import Acro
from pets.backends.sdc import SdcSuppress
from pets.leakage import EFFORT, differencing, reconstruction
from pets.scenarios import build_problem, load_scenario

from conftest import SCENARIOS, context_for, solve_card


@pytest.fixture(scope="module")
def acro_answers() -> tuple:
    """acro on tre_queries at its quick size: (output, reference, accuracy, problem,
    session)."""
    return solve_card(Acro(), "tre_queries", SCENARIOS, 10_000)


@pytest.fixture(scope="module")
def acro_table() -> tuple:
    """acro on multi_site_prevalence at its quick size."""
    return solve_card(Acro(), "multi_site_prevalence", SCENARIOS, 20_000)


def test_query_answers_are_exact_where_acro_passes_and_refused_with_its_reason(acro_answers):
    out, ref, acc, problem, _ = acro_answers
    queries = problem.task.params["queries"]
    refused = dict(out.refused)
    assert refused, "the card's small cell (COPD, 85+, decile 1) must be withheld"
    for i, (query, answer, truth) in enumerate(zip(queries, out.answers, ref.answers, strict=True)):
        if query["kind"] == "histogram":
            released = ~np.isnan(answer)
            np.testing.assert_array_equal(answer[released], np.asarray(truth)[released])
            assert (np.asarray(truth)[~released] < 10).all()  # only small or empty bins go
            assert (i in refused) == (not released.all())
        elif answer is None:
            assert refused[i].startswith("ACRO withheld it: ")
        else:
            assert i not in refused
            assert answer == pytest.approx(float(truth), rel=1e-6)
    (copd,) = [i for i, q in enumerate(queries) if q["id"] == "copd_count_85_plus_decile_1"]
    assert ref.answers[copd] < 10 and out.answers[copd] is None
    assert "MinimumThresholdCheck" in refused[copd]
    # the harness scores a refusal as a full error and counts what was answered
    assert acc.metrics[f"relative_error.{queries[copd]['id']}"] == 1.0
    assert acc.metrics["fraction_answered"] == pytest.approx(
        sum(a is not None for a in out.answers) / len(queries)
    )


def test_released_table_equals_pandas_on_the_cells_acro_passes(acro_table):
    out, ref, acc, problem, session = acro_table
    table, truth = out.table, ref.table.reindex(out.table.index)
    pooled = pd.concat(list(problem.party_data.values()), ignore_index=True)
    group_by = list(problem.task.params["group_by"])
    by_pandas = pooled.groupby(group_by, observed=False).agg(
        n=("hba1c", "size"), t2_diabetes_mean=("t2_diabetes", "mean"), hba1c_mean=("hba1c", "mean")
    )
    by_pandas.index = pd.MultiIndex.from_tuples(
        [tuple(str(v) for v in k) for k in by_pandas.index], names=group_by
    )
    as_text = [tuple(str(v) for v in k) for k in table.index]
    for column in ("n", "t2_diabetes_mean", "hba1c_mean"):
        released = table[column].notna().to_numpy()
        assert 0 < released.sum() < len(table)
        expected = by_pandas[column].reindex(as_text).to_numpy()
        np.testing.assert_allclose(
            table[column].to_numpy()[released], expected[released], rtol=1e-5
        )
    # nothing under the threshold is published
    assert (truth.loc[table["n"].notna().to_numpy(), "n"] >= 10).all()
    # a prevalence carried by two diabetics or fewer is withheld (ACRO's dominance rules on
    # a 0/1 value), though its cell is well above the threshold
    diabetics = (truth["n"] * truth["t2_diabetes_mean"]).round()
    few = (diabetics <= 2) & (truth["n"] >= 10)
    assert few.any()
    assert table.loc[few.to_numpy(), "t2_diabetes_mean"].isna().all()
    assert table.loc[few.to_numpy(), "n"].notna().all()
    assert 0 < acc.metrics["fraction_released"] < 1
    (summary,) = [v for party, label, v in session.reveals if label == "acro-summary"]
    assert summary["t2_diabetes_mean"]["cells_withheld"] == int(
        table["t2_diabetes_mean"].isna().sum()
    )
    assert any("PPercentCheck" in line for line in summary["t2_diabetes_mean"]["failing_checks"])


def test_without_suppression_a_failing_output_is_withheld_whole(scenario_dir, acro_answers):
    out, _, _, problem, _ = solve_card(Acro(suppress=False), "tre_queries", scenario_dir, 10_000)
    suppressed = acro_answers[0]
    queries = problem.task.params["queries"]
    histograms = [i for i, q in enumerate(queries) if q["kind"] == "histogram"]
    partly = [i for i in histograms if i in suppressed.refused]
    assert partly, "a histogram with a small bin is needed"
    for i in partly:
        assert not np.isnan(suppressed.answers[i]).all()  # suppression keeps the safe bins
        assert np.isnan(out.answers[i]).all()  # a rejected output keeps none
        assert "rejected with the output" in out.refused[i]
    assert set(out.refused) == set(suppressed.refused)


def _dominated_population(frame: pd.DataFrame) -> str:
    """A filter on the cohort whose population is above the threshold while one patient
    holds every admission of it."""
    admitted = frame["admissions_prior_year"] > 0
    groups = frame.groupby(["postcode_district", "sex"], observed=True)
    for (district, sex), rows in groups:
        if 12 <= len(rows) <= 60 and admitted.loc[rows.index].sum() == 1:
            return f"postcode_district == {district!r} and sex == {sex!r}"
    raise AssertionError("no dominated population in this cohort")


def test_acro_withholds_a_dominated_sum_that_the_threshold_releases(scenario_dir, tmp_path):
    """A variant of tre_queries asks the admissions of a group of a dozen or more
    patients, one of whom holds them all: sdc-suppress sees enough patients and releases
    that patient's admissions; ACRO's nk and p-ratio rules withhold the sum."""
    card = load_scenario("tre_queries", scenario_dir)
    (frame,) = build_problem(card, 10_000, seed=0).party_data.values()
    population = _dominated_population(frame)
    text = (scenario_dir / "tre_queries.toml").read_text()
    workload = text.index("[[task.queries]]")
    variant = text[:workload] + (
        '[[task.queries]]\nid = "admissions_of_a_small_area"\nkind = "sum"\n'
        f'column = "admissions_prior_year"\nfilter = "{population}"\n\n'
        '[[task.queries]]\nid = "patients_of_a_small_area"\nkind = "count"\n'
        f'filter = "{population}"\n'
    )
    (tmp_path / "tre_dominance.toml").write_text(
        variant.replace('id = "tre_queries"', 'id = "tre_dominance"')
    )
    acro_out, ref, _, _, _ = solve_card(Acro(), "tre_dominance", tmp_path, 10_000)
    sdc_out, _, _, _, _ = solve_card(SdcSuppress(), "tre_dominance", tmp_path, 10_000)
    total, patients = ref.answers
    assert patients >= 10 and total > 0
    assert sdc_out.answers[0] == total  # the threshold releases one patient's admissions
    assert acro_out.answers[0] is None
    assert "NKCheck" in acro_out.refused[0] and "PPercentCheck" in acro_out.refused[0]
    assert acro_out.answers[1] == patients  # the count itself is safe and released


def _query_attacks(cls, scenario_dir, effort, families, solved=None):
    out, _, _, problem, session = solved or solve_card(cls(), "tre_queries", scenario_dir, 10_000)
    context = context_for(problem, session, out, cls, effort=effort)
    return [family.attack(context)[0] for family in families]


def test_query_differencing_runs_on_acro_and_meets_the_same_refusals(scenario_dir, acro_answers):
    """The harness's differencing attack runs on acro: ACRO refuses exactly the pairs of
    small counts the threshold refuses (its differencing check is advice for a manual
    review, not a refusal)."""
    few = replace(EFFORT["fast"], targets=6)
    (acro_diff,) = _query_attacks(Acro, scenario_dir, few, [differencing], acro_answers)
    (sdc_diff,) = _query_attacks(SdcSuppress, scenario_dir, few, [differencing])
    assert acro_diff.applicable and acro_diff.trials >= 4
    assert 0 <= acro_diff.residual_risk <= 1
    assert acro_diff.extra["queries_asked"] == sdc_diff.extra["queries_asked"]
    assert acro_diff.extra["pairs_refused"] == sdc_diff.extra["pairs_refused"] > 0


@pytest.mark.slow
def test_reconstruction_rebuilds_the_targets_through_acro_as_through_the_threshold(scenario_dir):
    """Random-subset counts of 40 targets pass ACRO's checks as they pass the threshold:
    every target's secret is rebuilt through either."""
    fast = EFFORT["fast"]
    acro_diff, acro_rebuilt = _query_attacks(
        Acro, scenario_dir, fast, [differencing, reconstruction]
    )
    sdc_diff, sdc_rebuilt = _query_attacks(
        SdcSuppress, scenario_dir, fast, [differencing, reconstruction]
    )
    assert acro_diff.extra["pairs_refused"] == sdc_diff.extra["pairs_refused"]
    assert acro_rebuilt.extra["queries_answered"] == sdc_rebuilt.extra["queries_answered"] > 0
    assert acro_rebuilt.success_rate == sdc_rebuilt.success_rate > 0.9


def test_differencing_of_the_table_meets_acros_dominance_rules(scenario_dir, acro_table):
    """On the published prevalence table the one-patient difference needs the cell's
    prevalence both times; ACRO withholds the cells carried by two diabetics or fewer,
    so more targets are left to a guess than under sdc-suppress."""
    one_rerun = replace(EFFORT["fast"], targets=40)
    withheld = {}
    for cls, solved in ((Acro, acro_table), (SdcSuppress, None)):
        out, _, _, problem, session = solved or solve_card(
            cls(), "multi_site_prevalence", scenario_dir, 20_000
        )
        context = context_for(problem, session, out, cls, effort=one_rerun)
        (result,) = differencing.attack(context)
        assert result.applicable and 0 <= result.residual_risk <= 1
        withheld[cls] = result.extra["targets_withheld"]
    assert withheld[Acro] > withheld[SdcSuppress]


def test_acro_writes_only_inside_the_scratch_folder(scenario_dir, tmp_path, monkeypatch):
    card = load_scenario("tre_queries", scenario_dir)
    problem = build_problem(card, 4_000, seed=0)
    (frame,) = problem.party_data.values()
    scratch, elsewhere = tmp_path / "scratch", tmp_path / "cwd"
    scratch.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    answers, _ = Acro().answer_workload(frame, problem.task.params["queries"], scratch)
    assert len(answers) == len(problem.task.params["queries"])
    assert Path(os.getcwd()) == elsewhere and not any(elsewhere.iterdir())
    bundle = scratch / "acro-outputs"
    assert (bundle / "results.json").is_file() and (bundle / "config.json").is_file()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"threshold": 0}, "threshold must be"),
        ({"nk_n": 0}, "nk_n must be"),
        ({"nk_k": 1.5}, "nk_k must be"),
        ({"p_ratio": 1.0}, "p_ratio must be"),
    ],
)
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        Acro(**params).capabilities  # noqa: B018


def test_claim_is_heuristic_and_declares_the_pooled_rows():
    claim = Acro().capabilities.claim
    assert not claim.formal and claim.epsilon is None
    assert "inputs" in claim.declared_leakage and "output" in claim.declared_leakage
    assert "manual review" in claim.notes
