"""Releases: raw, de-identified, Gaussian-copula and DP (MST) synthetic data, their
utility as the harness measures it, and releases answering a query workload."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

import pets
from pets.api import UnsupportedTask
from pets.backends.dp.opendp_ops import zcdp_budget, zcdp_epsilon
from pets.backends.release import Deidentified, Raw
from pets.backends.sdc import SdcKanon
from pets.backends.synth.coding import public_codings
from pets.backends.synth.copula import SynthCopula
from pets.backends.synth.mst import SynthDP, mst_synthesise
from pets.data import generate_cohort
from pets.scenarios import load_scenario
from pets.tasks import CardError

from conftest import solve_card

RELEASE_SIZE = 5_000
COLUMNS = ["age", "sex", "ethnicity", "deprivation_decile", "bmi", "t2_diabetes", "smoker"]


def test_codings_come_from_public_facts_not_values():
    a = generate_cohort(2_000, seed=1)
    b = generate_cohort(300, seed=9)
    b["bmi"] = np.float32(40.0)  # values changed: the coding must not move
    assert public_codings(a, COLUMNS) == public_codings(b, COLUMNS)
    kinds = {c.name: (c.kind, c.size) for c in public_codings(a, COLUMNS, bins=16)}
    assert kinds["deprivation_decile"] == ("integer", 10)
    assert kinds["bmi"] == ("binned", 16)
    assert kinds["ethnicity"] == ("category", 5)
    frame = a.assign(note="free text")
    with pytest.raises(UnsupportedTask, match="'note' has no public domain"):
        public_codings(frame, ["age", "note"])


def test_codes_decode_to_the_values_they_encode():
    frame = generate_cohort(3_000, seed=2)
    rng = np.random.default_rng(0)
    for coding in public_codings(frame, [*COLUMNS, "admissions_prior_year"]):
        codes = coding.encode(frame[coding.name])
        back = coding.decode(codes, rng)
        if coding.kind == "binned":  # a value decodes somewhere inside its own bin
            np.testing.assert_array_equal(coding.encode(back), codes)
        else:
            assert back.astype(str).tolist() == frame[coding.name].astype(str).tolist()


def test_deidentified_drops_identifiers_and_coarsens_dates(scenario_dir):
    out, _, acc, problem, _ = solve_card(
        Deidentified(), "research_data_release", scenario_dir, RELEASE_SIZE
    )
    (real,) = problem.party_data.values()
    table = out.table
    assert {"nhs_number", "date_of_birth", "gp_practice"}.isdisjoint(table.columns)
    assert (table["year_of_birth"] == real["date_of_birth"].dt.year).all()
    assert (table["postcode_district"].astype(str) == real["postcode_district"].astype(str)).all()
    # the rows are the real rows: utility is perfect, which is the point of the baseline
    assert acc.metrics["tvd_2way_mean"] == 0 and acc.metrics["workload_median_relative_error"] == 0


def test_raw_hands_over_identifiers_and_its_claim_says_so(scenario_dir):
    out, _, acc, problem, _ = solve_card(Raw(), "research_data_release", scenario_dir, 2_000)
    (real,) = problem.party_data.values()
    assert "identifiers" in Raw().capabilities.claim.declared_leakage
    assert out.table["nhs_number"].tolist() == real["nhs_number"].tolist()
    assert acc.metrics["tvd_1way_max"] == 0


@pytest.mark.parametrize(
    "backend",
    [Deidentified(), SdcKanon(), SynthCopula(seed=1), SynthDP(epsilon=2.0, iters=200, seed=1)],
    ids=["deidentified", "sdc-kanon", "synth-copula", "synth-dp"],
)
def test_a_release_never_holds_nhs_numbers_or_dates_of_birth(backend, scenario_dir):
    out, _, _, problem, session = solve_card(
        backend, "research_data_release", scenario_dir, RELEASE_SIZE
    )
    (real,) = problem.party_data.values()
    nhs = set(real["nhs_number"].tolist())
    dobs = set(real["date_of_birth"].astype(str))
    assert "identifiers" not in backend.capabilities.claim.declared_leakage
    for column in out.table.columns:
        values = out.table[column]
        assert not pd.api.types.is_datetime64_any_dtype(values), column
        if pd.api.types.is_integer_dtype(values):
            assert nhs.isdisjoint(values.tolist()), column
        assert dobs.isdisjoint(values.astype(str)), column
    # nor do the bytes the researcher received carry one
    received = b"".join(session.received_bytes("researcher"))
    sample = real["nhs_number"].to_numpy()[:200]
    assert not any(int(v).to_bytes(8, "little") in received for v in sample)
    assert not any(str(int(v)).encode() in received for v in sample)


def test_synth_dp_accounts_its_budget_with_opendp():
    frame = generate_cohort(3_000, seed=3)
    codings = public_codings(frame, COLUMNS)
    rho = zcdp_budget(1.0, 1e-6)
    table, facts = mst_synthesise(frame, codings, rho=rho, iters=100, rng=np.random.default_rng(0))
    assert facts["rho"] == pytest.approx(rho, rel=1e-9)  # OpenDP's compositor, all planned
    assert zcdp_epsilon(facts["rho"], 1e-6) <= 1.0 + 1e-9
    assert len(facts["pairs"]) == len(COLUMNS) - 1  # a spanning tree
    assert list(table.columns) == COLUMNS
    assert abs(len(table) - len(frame)) < 200  # the total is itself a noisy estimate
    claim = SynthDP(epsilon=1.0).capabilities.claim
    assert (claim.epsilon, claim.delta, claim.formal) == (1.0, 1e-6, True)
    assert claim.neighbouring == "add-remove" and "zCDP" in claim.accountant


@pytest.mark.slow  # synth-dp at several budgets, about 20 s
def test_synth_dp_utility_improves_with_epsilon(scenario_dir):
    metrics = {
        epsilon: solve_card(
            SynthDP(epsilon=epsilon, iters=300, seed=1),
            "research_data_release",
            scenario_dir,
            RELEASE_SIZE,
        )[2].metrics
        for epsilon in (0.2, 20.0)
    }
    assert metrics[20.0]["tvd_2way_mean"] < 0.6 * metrics[0.2]["tvd_2way_mean"]
    assert metrics[20.0]["tvd_1way_mean"] < metrics[0.2]["tvd_1way_mean"]


def test_copula_keeps_marginals_and_continuous_correlations():
    frame = generate_cohort(8_000, seed=4)
    columns = ["age", "sex", "bmi", "systolic_bp", "hba1c", "t2_diabetes", "smoker"]
    synthetic = SynthCopula(seed=3).publish(frame, columns, task=None)
    assert len(synthetic) == len(frame) and list(synthetic.columns) == columns
    for column in ("sex", "smoker", "t2_diabetes"):
        real_share = frame[column].astype(str).value_counts(normalize=True)
        synth_share = synthetic[column].astype(str).value_counts(normalize=True)
        assert real_share.sub(synth_share, fill_value=0).abs().max() < 0.02, column
    real_corr = frame[["age", "systolic_bp", "hba1c"]].corr().to_numpy()
    synth_corr = synthetic[["age", "systolic_bp", "hba1c"]].corr().to_numpy()
    assert np.abs(real_corr - synth_corr).max() < 0.1
    assert (synthetic["bmi"].between(12, 70)).all()  # public bounds hold
    with pytest.raises(ValueError, match="allowed: beta"):
        SynthCopula(distribution="normal").capabilities  # noqa: B018


def test_a_release_answers_the_query_workload_at_the_researcher(scenario_dir):
    exact, *_ = solve_card(Deidentified(), "tre_queries", scenario_dir, 5_000)
    _, ref, acc, _, session = solve_card(SynthCopula(seed=2), "tre_queries", scenario_dir, 5_000)
    assert acc.metrics["fraction_answered"] == 1.0
    assert 0 < acc.metrics["median_relative_error"] < 0.5
    for got, truth in zip(exact.answers, ref.answers, strict=True):
        np.testing.assert_allclose(got, truth)
    # the custodian never hears the workload: one message, custodian to researcher
    assert [(m.sender, m.receiver) for m in session.transcript] == [("custodian", "researcher")]


def test_release_card_names_its_workload(tmp_path, scenario_dir):
    card = load_scenario("research_data_release", scenario_dir)
    workload = load_scenario("tre_queries", scenario_dir).task_params["queries"]
    assert card.task_params["queries"] == workload
    for name in ("research_data_release.toml", "tre_queries.toml"):
        shutil.copy(scenario_dir / name, tmp_path / name)
    text = (tmp_path / "research_data_release.toml").read_text()
    (tmp_path / "research_data_release.toml").write_text(
        text.replace('workload = "tre_queries"', 'workload = "tre_querys"')
    )
    with pytest.raises(CardError, match=r"'task.workload'.*allowed: research_data_release"):
        load_scenario(tmp_path / "research_data_release.toml")
    (tmp_path / "research_data_release.toml").write_text(
        text.replace('"age", "sex", "ethnicity",', '"sex", "ethnicity",', 1)
    )
    with pytest.raises(CardError, match=r"reads \['age'\].*add them to task.columns"):
        load_scenario(tmp_path / "research_data_release.toml")


def test_one_cell_gives_one_copula_release_and_another_seed_another(scenario_dir):
    def table(seed):
        out = solve_card(SynthCopula(), "research_data_release", scenario_dir, 2_000, seed)[0]
        return out.table

    first = table(0)
    pd.testing.assert_frame_equal(first, table(0))
    assert not first.equals(table(1))


def test_noise_no_seed_fixes_is_named_in_the_capabilities_and_the_record(
    tmp_path, registry, scenario_dir
):
    from pets.api import Capabilities
    from pets.backends.dp.opendp_backend import OpenDP
    from pets.backends.randomness import OPENDP_NOISE

    caps = SynthDP(epsilon=1.0).capabilities
    assert not caps.deterministic
    assert caps.unseeded_randomness == (OPENDP_NOISE,)
    assert OPENDP_NOISE in OpenDP(epsilon=1.0).capabilities.unseeded_randomness
    assert Capabilities.from_dict(caps.to_dict()) == caps
    assert SynthCopula().capabilities.deterministic
    assert SynthCopula().capabilities.unseeded_randomness == ()
    frame = pets.run(
        ["multi_site_prevalence"],
        ["opendp"],
        quick=True,
        leakage="off",
        out=tmp_path / "run",
        registry=registry,
        scenario_dir=scenario_dir,
        progress=False,
    )
    assert (frame["status"] == "ok").all()
    for _, row in frame.iterrows():
        assert json.loads(row["unseeded_randomness"]) == [OPENDP_NOISE]
        assert not row["deterministic"]
