"""Differencing and reconstruction attacks on published tables and query answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pets.backends.dp import OpenDP
from pets.backends.he.ckks import TensealCKKS
from pets.backends.plaintext import Plaintext
from pets.backends.sdc import SdcSuppress
from pets.leakage import (
    differencing,
    evaluate_leakage,
    reconstruction,
)
from pets.leakage.reconstruction import reconstruct

from conftest import attack_context

ALL = ("A0", "A1", "A2", "A3")


def _context(backend_cls, card, scenario_dir, size, attackers=ALL, **params):
    return attack_context(backend_cls, card, scenario_dir, size, attackers=attackers, **params)


def _one(results):
    (result,) = results
    return result


def test_reconstruct_recovers_secrets_from_exact_and_slightly_noisy_counts():
    rng = np.random.default_rng(3)
    secrets = rng.integers(0, 2, size=60)
    queries = rng.integers(0, 2, size=(120, 60)).astype(float)
    exact = reconstruct(queries, queries @ secrets)
    assert ((exact >= 0.5) == secrets).all()
    noisy = reconstruct(queries, queries @ secrets + rng.normal(0, 0.5, size=120))
    assert ((noisy >= 0.5) == secrets).mean() >= 0.9
    # pure noise answers recover nothing beyond chance
    blind = reconstruct(queries, rng.normal(15, 5, size=120))
    assert ((blind >= 0.5) == secrets).mean() < 0.75


def test_differencing_reads_a_patient_off_two_exact_tables(scenario_dir):
    result = _one(
        differencing.attack(_context(Plaintext, "multi_site_prevalence", scenario_dir, 20_000))
    )
    assert result.success_rate == 1.0
    assert result.control_rate == pytest.approx(0.5)  # balanced coins against a zero difference
    assert result.residual_risk == 1.0
    assert result.ci_low < 1.0 and result.trials >= 30


def test_exact_secure_aggregate_leaks_as_much_as_plaintext_once_published(scenario_dir):
    result = _one(
        differencing.attack(_context(TensealCKKS, "multi_site_prevalence", scenario_dir, 20_000))
    )
    assert result.residual_risk > 0.9


def test_small_cell_suppression_does_not_stop_differencing(scenario_dir):
    result = _one(
        differencing.attack(_context(SdcSuppress, "multi_site_prevalence", scenario_dir, 20_000))
    )
    assert result.residual_risk > 0.7


def test_dp_at_small_epsilon_stops_differencing(scenario_dir):
    result = _one(
        differencing.attack(
            _context(OpenDP, "multi_site_prevalence", scenario_dir, 20_000, epsilon=0.1)
        )
    )
    # a fair coin gets 0.5; 0.75 of 30+ balanced targets would be 3 standard deviations off
    assert result.success_rate < 0.75


def test_query_differencing_and_reconstruction_against_output_checking(scenario_dir):
    context = _context(SdcSuppress, "tre_queries", scenario_dir, 10_000)
    diff = _one(differencing.attack(context))
    rebuilt = _one(reconstruction.attack(context))
    # small counts are refused, yet pairs of large counts differ by one patient
    assert diff.extra["pairs_refused"] > 0
    assert diff.residual_risk > 0.3
    # and random subset counts that pass the threshold rebuild every target's secret
    assert rebuilt.extra["queries_answered"] < rebuilt.extra["queries_asked"]
    assert rebuilt.success_rate > 0.9
    assert rebuilt.control_rate == pytest.approx(0.5, abs=0.2)


def test_a_privacy_budget_stops_reconstruction(scenario_dir):
    exact = _one(reconstruction.attack(_context(Plaintext, "tre_queries", scenario_dir, 10_000)))
    noisy = _one(
        reconstruction.attack(_context(OpenDP, "tre_queries", scenario_dir, 10_000, epsilon=1.0))
    )
    assert exact.residual_risk == 1.0
    assert noisy.success_rate < 0.8
    assert noisy.residual_risk < exact.residual_risk


def test_attacks_need_their_attacker_model_and_an_oracle(scenario_dir):
    context = _context(Plaintext, "tre_queries", scenario_dir, 4_000, attackers=("A0",))
    assert differencing.attack(context) == []
    context.attackers = ALL
    context.rerun = None
    result = _one(reconstruction.attack(context))
    assert result.applicable is False and "oracle" in result.note
    assert "success_rate" not in result.to_dict()


def test_evaluate_leakage_flags_and_headlines_the_worst_attack(scenario_dir):
    context = _context(Plaintext, "multi_site_prevalence", scenario_dir, 20_000)
    found = evaluate_leakage(
        context.problem,
        context.session,
        Plaintext().capabilities,
        output=context.output,
        rerun=context.rerun,
        families=[("differencing", differencing.attack)],
    )
    assert "reveals_individuals" in found["flags"]
    assert found["headline"]["worst_attack"] == "differencing@analyst"
    assert found["headline"]["worst_residual_risk"] == 1.0
    assert found["reruns"] == 1
    text = json.dumps(found)
    assert "nhs_number" not in text
    off = evaluate_leakage(context.problem, context.session, Plaintext().capabilities, mode="off")
    assert off["attacks"] == [] and off["headline"]["attacks_run"] == 0


def test_a_broken_attack_is_recorded_not_raised(scenario_dir):
    context = _context(Plaintext, "tre_queries", scenario_dir, 4_000)

    def broken(_context):
        raise ZeroDivisionError("boom")

    found = evaluate_leakage(
        context.problem,
        context.session,
        Plaintext().capabilities,
        output=context.output,
        families=[("broken", broken)],
    )
    (result,) = found["attacks"]
    assert result["failed"] is True and "ZeroDivisionError" in result["note"]
    assert "attack_failed" in found["flags"]
