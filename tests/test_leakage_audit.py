"""DP audit: lower bounds on epsilon from runs on neighbouring inputs (attacker A3)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from pets.leakage import EFFORT, AttackContext, dp_audit, evaluate_leakage
from pets.leakage.dp_audit import audit_scores, epsilon_cap

from conftest import context_for, rerun_for, solve_card
from misbehaving import TooLittleNoise

pytest.importorskip("opendp")


def _context(backend, factory, card, scenario_dir, size, effort):
    output, _, _, problem, session = solve_card(backend, card, scenario_dir, size)
    return context_for(problem, session, output, factory, effort=effort)


def test_a_perfect_test_reaches_the_cap_and_no_further():
    runs = 200
    found = audit_scores(np.ones(runs), np.zeros(runs))
    assert found.held_out == runs // 2
    assert found.epsilon_lower == pytest.approx(found.epsilon_cap)
    # the cap is ln(lower(m/m) / upper(0/m)) at alpha/2 each: (a/2)^(1/m) / (1 - (a/2)^(1/m))
    tail = (dp_audit.ALPHA / 2) ** (1 / 100)
    assert found.epsilon_cap == pytest.approx(math.log(tail / (1 - tail)), rel=1e-6)
    assert epsilon_cap(1000, 1000) > found.epsilon_cap  # more runs, a higher cap


def test_laplace_samples_give_a_bound_between_zero_and_the_true_epsilon():
    rng = np.random.default_rng(1)
    true_eps, runs = 2.0, 4000
    d0 = rng.laplace(1.0, 1.0 / true_eps, runs)
    d1 = rng.laplace(0.0, 1.0 / true_eps, runs)
    found = audit_scores(d0, d1)
    assert 0.5 < found.epsilon_lower <= true_eps
    # the same runs with the worlds' roles swapped are found by the other direction
    swapped = audit_scores(-d0, -d1)
    assert 0.5 < swapped.epsilon_lower <= true_eps
    # indistinguishable worlds give no evidence at all
    assert audit_scores(d1[: runs // 2], d1[runs // 2 :]).epsilon_lower < 0.3


def test_honest_opendp_aggregate_stays_at_or_below_its_claim(scenario_dir):
    from pets.backends.dp import OpenDP

    effort = replace(EFFORT["fast"], audit_trials=40, audit_seconds=math.inf)
    context = _context(
        OpenDP(epsilon=1.0),
        lambda: OpenDP(epsilon=1.0),
        "multi_site_prevalence",
        scenario_dir,
        2000,
        effort,
    )
    (result,) = dp_audit.attack(context)
    record = result.to_dict()
    assert record["trials_per_world"] == context.reruns // 2 == 40
    assert 0.0 <= record["epsilon_lower"] <= record["epsilon_claimed"] == 1.0
    assert record["claim_contradicted"] is False
    assert record["epsilon_cap"] > 0 and record["confidence"] == 0.95
    assert record["statistic"] in ("n", "t2_diabetes_sum", "hba1c_sum", "mean_standardised")
    assert "residual_risk" not in record  # never a rate: _judge reads epsilon_lower only


def test_a_backend_with_too_little_noise_is_flagged(scenario_dir):
    def audit(context: AttackContext) -> list:
        # a fixed number of runs, whatever the machine's speed
        context.effort = replace(context.effort, audit_trials=150, audit_seconds=math.inf)
        return dp_audit.attack(context)

    backend = TooLittleNoise(epsilon=1.0, seed=0)
    output, _, _, problem, session = solve_card(
        backend, "multi_site_prevalence", scenario_dir, 2000
    )
    counter = iter(range(1, 10**6))
    leakage = evaluate_leakage(
        problem,
        session,
        backend.capabilities,
        output=output,
        rerun=rerun_for(lambda: TooLittleNoise(epsilon=1.0, seed=next(counter))),
        families=[("dp_audit", audit)],
    )
    (record,) = leakage["attacks"]
    assert record["claim_contradicted"] is True
    assert record["epsilon_lower"] > 1.5 > record["epsilon_claimed"]
    assert record["epsilon_lower"] <= record["epsilon_cap"]
    assert "claim_contradicted" in leakage["flags"]
    assert leakage["headline"]["epsilon_lower_bound"] == record["epsilon_lower"]
    assert leakage["reruns"] == 2 * record["trials_per_world"] == 300


def test_opendp_query_audit_has_power_at_a_high_epsilon(scenario_dir):
    from pets.backends.dp import OpenDP

    effort = replace(EFFORT["fast"], audit_trials=80, audit_seconds=math.inf)
    context = _context(
        OpenDP(epsilon=10.0),
        lambda: OpenDP(epsilon=10.0),
        "tre_queries",
        scenario_dir,
        1000,
        effort,
    )
    (result,) = dp_audit.attack(context)
    record = result.to_dict()
    assert record["workload_queries"] == 1
    # one count at epsilon 10 (Laplace scale 0.1) is all but separable: near the cap
    assert 1.5 < record["epsilon_lower"] <= min(10.0, record["epsilon_cap"])
    assert record["claim_contradicted"] is False


def test_kinds_without_a_statistic_are_skipped_and_no_claim_means_no_audit(scenario_dir):
    from pets.api import Claim
    from pets.scenarios import build_problem, load_scenario
    from pets.session import Session

    problem = build_problem(load_scenario("federated_risk_model", scenario_dir), 500, seed=0)
    context = AttackContext(
        problem=problem,
        session=Session(problem.task.parties, problem.party_data),
        output=None,
        claim=Claim(epsilon=1.0, delta=1e-5),
        attackers=("A3",),
        effort=EFFORT["fast"],
        rng=np.random.default_rng(0),
    )
    (result,) = dp_audit.attack(context)
    assert result.extra["skipped"] is True and "not built for train" in result.note
    assert "epsilon_lower" not in result.to_dict()
    assert dp_audit.attack(replace(context, claim=Claim())) == []
    assert dp_audit.attack(replace(context, attackers=("A0",))) == []
