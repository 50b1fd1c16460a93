"""Differential privacy: utility falls with noise, budgets are enforced, bounds are
public, and the federated variants hold their targets."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace

import numpy as np
import pytest

import pets
from pets.api import UnsupportedTask
from pets.backends.dp import OpenDP
from pets.backends.dp.composed import MpycOpenDP
from pets.backends.dp.diffprivlib_backend import Diffprivlib
from pets.backends.dp.federated import FedAvgDP
from pets.backends.dp.opendp_ops import zcdp_budget, zcdp_epsilon
from pets.backends.federated import FedAvg, FedAvgSecAgg
from pets.backends.plaintext import LocalOnly
from pets.report import utility_curves
from pets.runtime.harness import PartyProgramError
from pets.scenarios import build_problem, load_scenario
from pets.tasks import TASK_KINDS

from conftest import solve_problem


def _problem(card_id, scenario_dir, size):
    card = load_scenario(card_id, scenario_dir)
    return build_problem(card, size, seed=0)


def _score(backend, problem):
    output, session = solve_problem(backend, problem)
    kind = TASK_KINDS[problem.task.kind]
    return output, kind.score(output, kind.reference(problem), problem), session


def test_epsilon_sweep_error_falls_tenfold(tmp_path, registry, scenario_dir):
    frame = pets.run(
        ["multi_site_prevalence"],
        ["opendp"],
        size=20_000,
        repeats=3,
        jobs=2,
        out=tmp_path,
        registry=registry,
        scenario_dir=scenario_dir,
        progress=False,
        leakage="off",
    )
    assert (frame["status"] == "ok").all()
    curves = utility_curves(frame).set_index("epsilon")
    # the card's sweep: one run draws the whole curve
    assert list(curves.index) == [0.1, 0.5, 1.0, 2.0, 5.0, 10.0]
    assert (curves["runs"] == 3).all()
    means = curves["mean"]
    assert means.is_monotonic_decreasing
    assert means[10.0] * 10 <= means[0.1]
    # intervals come from the repeats and bracket their mean
    assert (curves["ci_low"] <= curves["mean"]).all()
    assert (curves["mean"] <= curves["ci_high"]).all()


def test_workload_over_budget_is_refused_not_answered(scenario_dir):
    problem = _problem("tre_queries", scenario_dir, 10_000)
    out, acc, session = _score(OpenDP(epsilon=1.0, query_epsilon=0.25), problem)
    answered = [a is not None for a in out.answers]
    assert answered == [True] * 4 + [False] * 6  # the compositor allows four of 0.25
    assert acc.metrics["fraction_answered"] == 0.4
    queries = problem.task.params["queries"]
    for query, given in zip(queries, answered, strict=True):
        if not given:
            assert acc.metrics[f"relative_error.{query['id']}"] == 1.0
    # what the researcher received holds no answer for a refused query
    (payload,) = session.received_bytes("researcher")
    assert json.loads(payload[1:])[4:] == [None] * 6


def test_budget_shared_evenly_answers_everything(scenario_dir):
    problem = _problem("tre_queries", scenario_dir, 10_000)
    out, acc, _ = _score(OpenDP(epsilon=1.0), problem)
    assert all(a is not None for a in out.answers)
    assert acc.metrics["median_relative_error"] < 0.5


def test_opendp_claim_names_unit_relation_and_accountant():
    claim = OpenDP(epsilon=2.0).capabilities.claim
    assert (claim.epsilon, claim.delta) == (2.0, 0.0)
    assert claim.privacy_unit == "patient"
    assert claim.neighbouring == "add-remove"
    assert "composition" in claim.accountant
    assert claim.formal


def test_a_column_without_public_bounds_is_refused():
    from pets.backends.dp.opendp_backend import query_measurement

    with pytest.raises(UnsupportedTask, match="needs public bounds for column 'nhs_number'"):
        query_measurement({"kind": "sum", "column": "nhs_number", "filter": ""}, 1.0)


def test_zcdp_conversion_round_trips():
    rho = zcdp_budget(1.0, 1e-5)
    assert zcdp_epsilon(rho, 1e-5) == pytest.approx(1.0, abs=1e-6)
    assert zcdp_epsilon(rho * 1.01, 1e-5) > 1.0


def test_distributed_noise_hides_the_exact_total(scenario_dir):
    problem = _problem("multi_site_prevalence", scenario_dir, 5000)
    kind = TASK_KINDS["aggregate"]
    reference = kind.reference(problem)
    errors = {}
    for epsilon in (0.1, 10.0):
        out, acc, session = _score(MpycOpenDP(epsilon=epsilon), problem)
        errors[epsilon] = acc.metrics["median_relative_error"]
        assert not np.allclose(out.table["n"], reference.table["n"])
        # every party, the compute server included, put noise into the sum
        for name in session.party_names:
            assert session.meter().bytes_by_party[name]["sent"] > 0
    assert errors[10.0] < errors[0.1]
    claim = MpycOpenDP(epsilon=1.0).capabilities.claim
    assert claim.epsilon == 1.0 and claim.collusion_threshold == 1 and claim.delta > 0


def test_federated_targets(scenario_dir):
    problem = _problem("federated_risk_model", scenario_dir, 50_000)
    _, fedavg, _ = _score(FedAvg(), problem)
    _, alone, _ = _score(LocalOnly(), problem)  # the smallest trust
    assert fedavg.metrics["auc_shortfall"] <= 0.02
    assert alone.metrics["auc"] < fedavg.metrics["auc"]
    secure, secagg, _ = _score(FedAvgSecAgg(via="paillier"), problem)
    assert secagg.metrics["auc"] == pytest.approx(fedavg.metrics["auc"], abs=1e-6)
    del secure


def test_dp_federated_averaging_spends_its_budget(scenario_dir):
    problem = _problem("federated_risk_model", scenario_dir, 30_000)
    strict, loose = FedAvgDP(epsilon=0.5), FedAvgDP(epsilon=10.0)
    assert strict.noise_multiplier() > loose.noise_multiplier()
    aucs = {}
    for backend in (strict, loose):
        runs = [_score(backend, problem)[1].metrics["auc"] for _ in range(2)]
        aucs[backend.epsilon] = float(np.mean(runs))
    assert aucs[10.0] > aucs[0.5]
    assert aucs[10.0] > 0.7


@pytest.mark.parametrize(
    ("card_id", "size", "mode"),
    [
        ("federated_risk_model", 20_000, "central"),
        ("federated_risk_model", 20_000, "per-trust"),
        ("breast_cancer_model", 569, "central"),
    ],
)
def test_diffprivlib_never_infers_bounds_from_data(card_id, size, mode, scenario_dir):
    # the parties raise diffprivlib's PrivacyLeakWarning as an error (next test), so a
    # run that finishes inferred no bound from the data
    problem = _problem(card_id, scenario_dir, size)
    model, acc, _ = _score(Diffprivlib(epsilon=5.0, mode=mode), problem)
    # it came from public bounds alone, and it is noisy: not the model fitted in the clear
    assert np.isfinite(model.coef).all()
    clear = TASK_KINDS["train"].reference(problem)
    assert not np.allclose(model.coef, clear.coef, atol=1e-3)
    del acc


def test_diffprivlib_raises_a_privacy_leak_warning(scenario_dir, monkeypatch):
    from diffprivlib.utils import PrivacyLeakWarning

    from pets.backends.dp import diffprivlib_backend
    from pets.tasks import design_matrix, labels

    problem = _problem("breast_cancer_model", scenario_dir, 569)
    (holder,) = problem.task.parties_with_role("data_holder")
    rows = problem.party_data[holder]
    x, y = design_matrix(rows, problem.task.params["features"]), labels(rows, problem.task)
    # without data_norm diffprivlib would read the bound off the data, and warn
    monkeypatch.setattr(diffprivlib_backend, "_data_norm", lambda features: None)
    with warnings.catch_warnings(), pytest.raises(PrivacyLeakWarning):
        warnings.simplefilter("ignore")
        Diffprivlib()._fit(x, y, problem.task, 1.0)


def test_diffprivlib_refuses_a_feature_without_public_bounds(scenario_dir):
    problem = _problem("breast_cancer_model", scenario_dir, 569)
    params = dict(problem.task.params)
    params["features"] = [*params["features"], "mean_symmetry"]
    task = type(problem.task)(
        kind="train",
        scenario=problem.task.scenario,
        parties=problem.task.parties,
        recipient=problem.task.recipient,
        params=params,
    )
    with pytest.raises(PartyProgramError, match="'mean_symmetry' has none") as raised:
        solve_problem(Diffprivlib(), replace(problem, task=task))
    assert raised.value.status == "unsupported"
