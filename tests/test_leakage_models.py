"""Attacks on models: membership inference, model extraction from scores, and
reconstruction of a patient from a trust's federated update."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pets.backends.dp.federated import FedAvgDP
from pets.backends.federated import FedAvg, FedAvgSecAgg
from pets.backends.plaintext import LocalOnly, Plaintext
from pets.leakage import (
    EFFORT,
    AttackContext,
    Effort,
    extraction,
    federated,
    membership,
)
from pets.session import Session
from pets.tasks import TRAIN, PartyRole, ScenarioData

from conftest import attack_context, solve_problem

ALL = ("A0", "A1", "A2", "A3")
#: One rerun of the single-patient game (five trusts: five targets).
ONE_RERUN = Effort(
    targets=5,
    attacks=500,
    shadows=8,
    audit_trials=10,
    audit_model_trials=0,
    audit_release_trials=0,
    probe_seconds=5,
)


def _context(backend_cls, card, scenario_dir, size, attackers=ALL, effort=None, **params):
    return attack_context(
        backend_cls, card, scenario_dir, size, attackers=attackers, effort=effort, **params
    )


def _by_method(results):
    return {r.extra["method"]: r for r in results}


def _one(results):
    (result,) = results
    return result


# -- membership inference ---------------------------------------------------------------


def _overfitted_context(seed=0):
    """A logistic model with 40 features fitted on 100 patients: it memorises them."""
    rng = np.random.default_rng(seed)
    d, n_train, n_out = 40, 100, 400
    x = rng.normal(size=(n_train + n_out, d))
    w = rng.normal(size=d) / np.sqrt(d)
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-x @ w))).astype(int)
    columns = [f"f{j}" for j in range(d)]
    frame = pd.DataFrame(x, columns=columns).assign(outcome=y)
    parties = (PartyRole("hospital", "data_holder"), PartyRole("researcher", "analyst"))
    params = {
        "recipient": "researcher",
        "model": "logistic",
        "target": "outcome",
        "features": columns,
        "C": 1.0,
        "max_iter": 1000,
    }
    problem = TRAIN.build(
        params,
        parties,
        ScenarioData({"hospital": frame.iloc[:n_train]}, frame.iloc[n_train:], rng),
    )
    output, session = solve_problem(Plaintext(), problem)
    return AttackContext(
        problem=problem,
        session=session,
        output=output,
        claim=Plaintext().capabilities.claim,
        attackers=("A0",),
        effort=EFFORT["fast"],
        rng=np.random.default_rng(seed),
    )


def test_membership_attacks_catch_an_overfitted_model():
    found = _by_method(membership.attack(_overfitted_context()))
    assert set(found) == {"loss", "lira"}
    for result in found.values():
        assert result.attack == "membership_inference"
        assert result.attacker == "A0" and result.observer == "researcher"
        # as many members as non-members (same label mix), at most every training row
        members = result.extra["members"]
        assert 90 <= members == result.extra["non_members"] <= 100
        assert result.trials == 2 * members
        assert result.extra["min_resolvable_fpr"] == pytest.approx(1 / members)
        assert result.extra["auc"] > 0.58
        assert result.extra["advantage"] > 0.15
        # a threshold chosen on the other half of the targets still beats guessing
        assert result.ci_low > 0.55
        assert result.residual_risk == pytest.approx(2 * result.success_rate - 1)
    lira = found["lira"]
    assert lira.extra["shadows"] == 8 and lira.extra["shadow_train_rows"] == 100
    # per-example calibration ranks members better than the raw loss
    assert lira.extra["auc"] > found["loss"].extra["auc"] + 0.05


def test_membership_of_the_pooled_cohort_model_is_near_chance(scenario_dir):
    context = _context(Plaintext, "federated_risk_model", scenario_dir, 50_000)
    found = _by_method(membership.attack(context))
    for result in found.values():
        assert result.observer == "aggregator"
        assert abs(result.extra["auc"] - 0.5) < 0.07
        assert result.residual_risk < 0.15
        assert result.ci_low < 0.5 < result.ci_high
        assert result.extra["members"] == 250
        assert result.extra["min_resolvable_fpr"] == pytest.approx(1 / 250)
        assert 0 <= result.extra["tpr_at_fpr_1e-3"] <= result.extra["tpr_at_fpr_1e-2"] <= 1
        assert result.to_dict()["method"] == result.extra["method"]


def test_membership_only_attacks_models_for_a0(scenario_dir):
    context = _context(Plaintext, "federated_risk_model", scenario_dir, 20_000, attackers=("A2",))
    assert membership.attack(context) == []
    context.attackers = ALL
    context.output = None
    context.session = Session(context.problem.task.parties, context.problem.party_data)
    (result,) = membership.attack(context)
    assert not result.applicable and result.success_rate is None


# -- model extraction -------------------------------------------------------------------


def test_extraction_recovers_plaintext_weights_from_d_plus_one_scores(scenario_dir):
    context = _context(Plaintext, "encrypted_supplier_inference", scenario_dir, 20_000)
    found = _by_method(extraction.attack(context))
    exact = found["exact"]
    weights = len(context.problem.task.params["features"]) + 1
    assert exact.attack == "model_extraction" and exact.observer == "gp_federation"
    assert exact.extra["rows_used"] == weights == exact.trials
    assert exact.extra["max_abs_coef_error"] < 1e-6
    assert exact.success_rate == 1.0 and exact.residual_risk == 1.0
    # the provider's own model, fitted without the scores, is the control
    assert exact.control_rate < 0.5
    assert exact.extra["decision_agreement"] == 1.0
    assert exact.extra["control_decision_agreement"] < 1.0
    assert found["least_squares"].extra["link"] == "sigmoid"
    assert found["least_squares"].extra["max_abs_coef_error"] < 1e-6
    assert extraction.attack(_context(Plaintext, "federated_risk_model", scenario_dir, 5_000)) == []


def test_extraction_survives_the_ckks_polynomial_sigmoid(scenario_dir):
    pytest.importorskip("tenseal")
    from pets.backends.he.ckks import TensealCKKS

    context = _context(
        TensealCKKS,
        "encrypted_supplier_inference",
        scenario_dir,
        20_000,
        sigmoid_degree=7,
        sigmoid_range=6.0,
    )
    found = _by_method(extraction.attack(context))
    # approximate scores break the exact solve on logit(score) ...
    assert found["exact"].success_rate < 0.5
    # ... but not a fit under the published polynomial link
    fitted = found["least_squares"]
    assert fitted.extra["link"] == "polynomial sigmoid, degree 7 on [-6, 6]"
    assert fitted.success_rate == 1.0
    assert fitted.extra["max_abs_coef_error"] < 1e-3


def test_extraction_tolerance_and_rank():
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.random(30), np.zeros(30), rng.integers(0, 2, 30)])
    theta = np.array([1.5, -0.7, 0.4, -1.0])
    scores = 1 / (1 + np.exp(-(x @ theta[:-1] + theta[-1])))
    used, estimate = extraction.extract_exact(x, scores, rng.permutation(30))
    # a feature that never varies among the provider's rows cannot be identified
    assert len(used) == 3
    assert np.allclose(estimate[[0, 2, 3]], theta[[0, 2, 3]])
    assert extraction.RTOL == extraction.ATOL == 0.01


# -- reconstruction from federated updates ---------------------------------------------


def test_plain_fedavg_update_reveals_a_single_patient(scenario_dir):
    # the fast effort's 40 targets, with a time budget no busy machine reaches
    effort = replace(EFFORT["fast"], probe_seconds=600)
    context = _context(FedAvg, "federated_risk_model", scenario_dir, 50_000, effort=effort)
    result = _one(federated.attack(context))
    assert result.attack == "update_reconstruction"
    assert result.attacker == "A2" and result.observer == "aggregator"
    assert result.extra["targets"] == 40 and result.trials == 40 * 13
    assert result.extra["updates_read"] == 1.0
    assert result.success_rate > 0.95
    assert result.extra["targets_fully_recovered"] > 0.7
    assert result.control_rate < 0.6
    assert result.residual_risk > 0.9
    assert context.reruns == 8


def test_a_spent_time_budget_stops_after_one_rerun_and_says_so(scenario_dir):
    effort = replace(EFFORT["fast"], probe_seconds=0)
    context = _context(FedAvg, "federated_risk_model", scenario_dir, 20_000, effort=effort)
    result = _one(federated.attack(context))
    assert context.reruns == 1 and result.extra["reruns"] == 1
    assert result.extra["targets"] == 5 and result.trials == 5 * 13  # one patient per trust
    assert "stopped after 1 reruns (time budget)" in result.note
    assert result.success_rate > 0.9  # fewer trials, the same finding


def test_secure_aggregation_hides_the_single_patient_update(scenario_dir):
    pytest.importorskip("mpyc")
    context = _context(FedAvgSecAgg, "federated_risk_model", scenario_dir, 20_000, effort=ONE_RERUN)
    result = _one(federated.attack(context))
    assert result.applicable and result.extra["reruns"] == 1
    assert result.extra["updates_read"] == 0.0
    # the attacker falls back on the population guess: exactly the control
    assert result.success_rate == result.control_rate
    assert result.residual_risk == 0.0
    assert result.extra["targets_fully_recovered"] == 0.0


def test_dp_noise_defeats_update_reconstruction(scenario_dir):
    pytest.importorskip("opendp")
    context = _context(FedAvgDP, "federated_risk_model", scenario_dir, 20_000, effort=ONE_RERUN)
    result = _one(federated.attack(context))
    assert result.extra["updates_read"] == 1.0  # it reads the noisy updates ...
    assert result.residual_risk < 0.2  # ... which reveal next to nothing
    assert result.extra["targets_fully_recovered"] == 0.0


def test_update_reconstruction_applicability(scenario_dir):
    # plaintext ships rows: the aggregator reads the patient directly
    rows = _one(federated.attack(_context(Plaintext, "federated_risk_model", scenario_dir, 20_000)))
    assert rows.extra["protocol"] == "rows" and rows.success_rate == 1.0
    # one trust trains alone: there is no per-round update to invert
    alone = _context(LocalOnly, "federated_risk_model", scenario_dir, 20_000)
    (result,) = federated.attack(alone)
    assert not result.applicable and "no per-round update" in result.note
    assert alone.reruns == 0
    # no rerun oracle: say so instead of failing
    plain = _context(FedAvg, "federated_risk_model", scenario_dir, 20_000)
    plain.rerun = None
    (result,) = federated.attack(plain)
    assert not result.applicable and "rerun" in result.note
    # the breast-cancer card lists no A2
    assert (
        federated.attack(_context(FedAvg, "breast_cancer_model", scenario_dir, 569, ("A0",))) == []
    )


def test_read_updates_inverts_one_gradient_step():
    from pets.backends.federated import local_update
    from pets.wire import pack

    parties = (PartyRole("trust", "data_holder"), PartyRole("hub", "aggregator"))
    x = np.array([[0.3, 1.0, 0.72]])
    start = np.array([0.5, -0.2, 0.1, -1.0])
    update = local_update(x, np.array([1.0]), start, steps=3, learning_rate=2.0, l2=0.0)
    session = Session(parties, {"trust": None})
    with session.as_party("hub") as hub:
        hub.send("trust", pack(start), tag="global")
    with session.as_party("trust") as trust:
        trust.send("hub", pack(np.append(update, 1.0)), tag="update")
    found = federated.read_updates(session, "hub", ["trust"], ["a", "b", "c"])
    assert np.allclose(found["trust"], x[0])
