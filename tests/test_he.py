"""Homomorphic-encryption backends: correctness against plaintext, keys and parameters."""

from __future__ import annotations

import numpy as np
import pytest

import pets
from pets.backends.federated import FedAvg
from pets.backends.he.bfv import TensealBFV
from pets.backends.he.ckks import TensealCKKS
from pets.backends.he.paillier import Paillier
from pets.leakage import evaluate_leakage
from pets.runtime.harness import PartyProgramError
from pets.tasks import design_matrix

from conftest import solve_card

SIZES = {
    "multi_site_prevalence": 20_000,
    "encrypted_supplier_inference": 20_000,
    "federated_risk_model": 30_000,
}


def _run(backend, card_id, scenario_dir, size=None):
    return solve_card(backend, card_id, scenario_dir, size or SIZES[card_id])


@pytest.mark.parametrize(
    "backend",
    [
        TensealCKKS(),
        TensealBFV(),
        Paillier(),
        Paillier(n_length=1024, allow_insecure=True, pack=False),
    ],
    ids=["ckks", "bfv", "paillier", "paillier-unpacked"],
)
def test_secure_aggregate_matches_plaintext(backend, scenario_dir):
    size = 3000 if not backend.pack else None
    out, ref, acc, problem, session = _run(backend, "multi_site_prevalence", scenario_dir, size)
    assert acc.metrics["max_relative_error"] < 1e-6
    np.testing.assert_array_equal(out.table["n"].round(6), ref.table["n"])  # counts exact
    if not isinstance(backend, TensealCKKS):
        assert acc.metrics["max_absolute_error"] < 1e-4  # fixed point is the only error
    meter = session.meter()
    assert meter.rounds == 3  # key out, shares in, sum to the key holder
    assert all(
        meter.bytes_by_party[h]["sent"] > 0 for h in problem.task.parties_with_role("data_holder")
    )
    leakage = evaluate_leakage(problem, session, backend.capabilities)
    assert leakage["headline"]["worst_residual_risk"] < 0.05
    assert leakage["flags"] == []


def test_secret_keys_never_cross_the_channel(scenario_dir):
    import tenseal as ts

    for backend in (TensealCKKS(), TensealBFV()):
        *_, session = _run(backend, "multi_site_prevalence", scenario_dir, 2000)
        keys = [m for m in session.transcript if m.tag == "public-key"]
        assert keys
        assert all(not ts.context_from(m.payload).is_private() for m in keys)


@pytest.mark.slow  # about 20 s; `pets bench --only ckks_packing` compares the same two runs
def test_packing_sends_far_fewer_bytes(scenario_dir):
    *_, packed = _run(TensealCKKS(), "multi_site_prevalence", scenario_dir, 2000)
    *_, naive = _run(TensealCKKS(pack=False), "multi_site_prevalence", scenario_dir, 2000)
    assert naive.meter().bytes_total > 20 * packed.meter().bytes_total


def test_ckks_inference_agrees_on_decisions(scenario_dir):
    _out, _ref, acc, problem, session = _run(
        TensealCKKS(), "encrypted_supplier_inference", scenario_dir
    )
    assert acc.metrics["decision_agreement"] >= 0.99
    assert acc.metrics["max_abs_score_error"] < 0.02
    # The supplier's view holds no patient value beyond chance matches, which the
    # control nets out (4-byte patterns do recur by chance in megabytes of ciphertext).
    leakage = evaluate_leakage(problem, session, TensealCKKS().capabilities)
    supplier = next(a for a in leakage["attacks"] if a["observer"] == "ai_supplier")
    assert supplier["applicable"] and supplier["residual_risk"] < 0.05
    assert supplier["by_column"]["gp_federation.nhs_number"] == 0.0  # 8-byte ids: no chance hits


@pytest.mark.parametrize("backend", [TensealBFV(), Paillier()], ids=["bfv", "paillier"])
def test_linear_scores_within_the_fixed_point_step(backend, scenario_dir):
    out, _ref, acc, problem, _ = _run(backend, "encrypted_supplier_inference", scenario_dir)
    model = problem.party_data["ai_supplier"]
    x = design_matrix(problem.party_data["gp_federation"], model.features)
    logit = np.log(out.scores / (1 - out.scores))
    step = 1e-4 if isinstance(backend, TensealBFV) else 2.0**-16
    bound = step * (np.abs(model.coef).sum() + x.shape[1] + 2)
    np.testing.assert_allclose(logit, model.decision_function(x), atol=bound, rtol=0)
    assert acc.metrics["decision_agreement"] == 1.0


@pytest.mark.parametrize(
    "backend", [TensealCKKS(rounds=5), Paillier(rounds=5)], ids=["ckks", "paillier"]
)
def test_secure_aggregation_trains_the_same_model_as_fedavg(backend, scenario_dir):
    plain, *_ = _run(FedAvg(rounds=5), "federated_risk_model", scenario_dir)
    secure, _, _acc, problem, session = _run(backend, "federated_risk_model", scenario_dir)
    np.testing.assert_allclose(secure.coef, plain.coef, atol=1e-6)
    assert secure.intercept == pytest.approx(plain.intercept, abs=1e-6)
    trusts = problem.task.parties_with_role("data_holder")
    # The aggregator receives only sums: every trust's share goes to it encrypted.
    shares = [m for m in session.transcript if m.tag == "share"]
    assert {m.sender for m in shares} == set(trusts)
    assert all(m.receiver == "aggregator" for m in shares)


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        (TensealCKKS(poly_modulus_degree=3000), "must be a power of two"),
        (
            TensealCKKS(poly_modulus_degree=8192, coeff_mod_bit_sizes=[60, 40, 40, 40, 60]),
            "use poly_modulus_degree=16384",
        ),
        (Paillier(n_length=1024), "below 2048 bits"),
        (TensealBFV(poly_modulus_degree=4096), None),
    ],
)
def test_wrong_parameters_give_one_clear_message(backend, message):
    if message is None:
        assert backend.capabilities.claim.security_bits == 128  # 4096 is fine for sums ...
        with pytest.raises(ValueError, match="noise budget"):
            backend.scheme("inference")  # ... but not for multiplications
        return
    with pytest.raises(ValueError, match=message):
        _ = backend.capabilities


def test_short_chain_is_refused_before_running(scenario_dir):
    backend = TensealCKKS(poly_modulus_degree=16384, coeff_mod_bit_sizes=[60, 40, 40, 60])
    assert backend.capabilities.claim.security_bits == 256  # 200 bits at 16384: fine for sums
    # Each party process refuses it before making a key; the harness reports that error.
    with pytest.raises(PartyProgramError, match=r"ValueError: .*needs depth 4") as caught:
        _run(backend, "encrypted_supplier_inference", scenario_dir, 2000)
    assert caught.value.status == "failed"


def test_claims_state_the_security_level():
    assert TensealCKKS().capabilities.claim.security_bits == 128
    assert Paillier().capabilities.claim.security_bits == 112
    assert Paillier(n_length=3072).capabilities.claim.security_bits == 128
    claim = TensealBFV().capabilities.claim
    assert claim.security_model.value == "semi-honest" and "output" in claim.declared_leakage


def test_bad_parameter_becomes_a_failed_record(tmp_path, registry, scenario_dir):
    frame = pets.run(
        ["multi_site_prevalence"],
        ["paillier"],
        size=500,
        out=tmp_path,
        params={"n_length": 1024},
        registry=registry,
        scenario_dir=scenario_dir,
        progress=False,
    )
    assert frame.loc[0, "status"] == "failed"
    assert "below 2048 bits" in frame.loc[0, "error"]


def test_encrypted_training_equals_the_same_steps_in_the_clear(scenario_dir):
    import pandas as pd

    from pets.backends.he.ckks import sigmoid_polynomial
    from pets.tasks import labels

    backend = TensealCKKS(training="encrypted", encrypted_patients=100, epochs=2)
    model, _, _, problem, session = _run(backend, "federated_risk_model", scenario_dir, 10_000)
    holders = problem.task.parties_with_role("data_holder")
    rows = pd.concat([problem.party_data[h].iloc[:20] for h in holders])
    x = np.hstack([design_matrix(rows, model.features), np.ones((len(rows), 1))])
    y = labels(rows, problem.task)
    w = np.zeros(x.shape[1])
    for _ in range(2):
        p = np.polynomial.polynomial.polyval(x @ w, sigmoid_polynomial(3, 6.0))
        grad = x.T @ (p - y) / len(y)
        grad[:-1] += backend.l2 * w[:-1]
        w = w - backend.encrypted_learning_rate * grad
    np.testing.assert_allclose(np.append(model.coef, model.intercept), w, atol=1e-4)
    # Rows reach the aggregator only encrypted, and trusts get no rotation keys.
    rows_sent = [m for m in session.transcript if m.tag == "encrypted-rows"]
    assert {m.sender for m in rows_sent} == set(holders)
    keys = {m.receiver: len(m.payload) for m in session.transcript if m.tag == "public-key"}
    assert all(keys[h] < keys["aggregator"] / 5 for h in holders[1:])


def test_unknown_training_mode_is_named():
    with pytest.raises(ValueError, match="allowed: secure_aggregation, encrypted"):
        _ = TensealCKKS(training="homomorphic").capabilities
