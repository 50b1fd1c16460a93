"""DP audit: lower bounds on epsilon from runs with canaries (attacker A3).

Planted leaks (tests/dp_leaks.py) run as a supplier's plugin does: by import target,
each party program in its own process.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from pets.leakage import EFFORT, AttackContext, dp_audit, evaluate_leakage
from pets.leakage.dp_audit import (
    audit_scores,
    canary_bound,
    canary_bound_at_most,
    canary_cap,
    epsilon_cap,
    threshold_bound_at_most,
)
from pets.leakage.dp_audit.tables import aggregate_design

import dp_leaks
from conftest import rerun_for, solve_card

pytest.importorskip("opendp")

CARD = "multi_site_prevalence"


def _audit(backend, factory, card, scenario_dir, size, *, seed=0, effort=None, mode="fast"):
    """The DP audit's record on one cell, through ``evaluate_leakage`` as a cell runs it."""
    output, _, _, problem, session = solve_card(backend, card, scenario_dir, size, seed=seed)

    def family(context: AttackContext) -> list:
        if effort is not None:
            context.effort = effort
        return dp_audit.attack(context)

    leakage = evaluate_leakage(
        problem,
        session,
        backend.capabilities,
        output=output,
        rerun=rerun_for(factory),
        families=[("dp_audit", family)],
        mode=mode,
        seed=seed,
    )
    (record,) = leakage["attacks"]
    return record, leakage


def _seeded(cls, **params):
    """A factory of backends whose noise seeds run 1, 2, 3, ... (the same sequence on
    every audit that builds a fresh factory)."""
    counter = iter(range(1, 10**6))
    return lambda: cls(seed=next(counter), **params)


# -- the bounds ----------------------------------------------------------------------------


def test_a_perfect_threshold_test_reaches_the_cap_and_no_further():
    runs = 200
    found = audit_scores(np.ones(runs), np.zeros(runs))
    assert found.held_out == runs // 2
    assert found.epsilon_lower == pytest.approx(found.epsilon_cap)
    tail = (dp_audit.ALPHA / 2) ** (1 / 100)
    assert found.epsilon_cap == pytest.approx(math.log(tail / (1 - tail)), rel=1e-6)
    assert epsilon_cap(1000, 1000) > found.epsilon_cap


def test_threshold_test_on_laplace_samples_stays_below_the_true_epsilon():
    rng = np.random.default_rng(1)
    true_eps, runs = 2.0, 4000
    d0 = rng.laplace(1.0, 1.0 / true_eps, runs)
    d1 = rng.laplace(0.0, 1.0 / true_eps, runs)
    assert 0.5 < audit_scores(d0, d1).epsilon_lower <= true_eps
    assert 0.5 < audit_scores(-d0, -d1).epsilon_lower <= true_eps
    assert audit_scores(d1[: runs // 2], d1[runs // 2 :]).epsilon_lower < 0.3


def test_canary_guessing_is_a_valid_bound_and_reaches_past_ten_with_enough_canaries():
    rng = np.random.default_rng(2)
    count = 20_000
    for true_eps in (0.5, 1.0, 3.0):
        coins = rng.random(count) < 0.5
        scores = coins + rng.laplace(0.0, 1.0 / true_eps, count)
        found = canary_bound(coins, scores)
        assert 0.3 * true_eps < found.epsilon_lower <= true_eps
    # indistinguishable canaries give no evidence
    coins = rng.random(count) < 0.5
    assert canary_bound(coins, rng.normal(size=count)).epsilon_lower < 0.2
    # every canary guessed right: the cap, about ln(canaries / ln(tests / alpha))
    perfect = canary_bound(coins, coins.astype(float))
    assert perfect.epsilon_lower == pytest.approx(perfect.epsilon_cap)
    assert perfect.epsilon_cap == pytest.approx(
        math.log(count / math.log(perfect.tests / dp_audit.ALPHA)), abs=0.05
    )
    # the aggregate audit's canaries at each effort (177 per run on this card at 2,000)
    assert canary_cap(EFFORT["fast"].audit_trials * 177, tests=6) > 7.5
    assert canary_cap(EFFORT["full"].audit_trials * 177, tests=6) > 10.0


# -- inputs and determinism ---------------------------------------------------------------


def test_audit_inputs_are_the_real_cells_rows_and_depend_on_the_cell_seed_alone(scenario_dir):
    from pets.scenarios import build_problem, load_scenario

    problem = build_problem(load_scenario(CARD, scenario_dir), 2000, seed=0)
    design = aggregate_design(problem, single=False)
    real = {n: len(f) for n, f in problem.party_data.items() if f is not None}

    def draws(seed: int) -> list:
        shared = np.random.default_rng([seed, 0xA77AC])
        shared.integers(10, size=int(seed) + 7)  # other attacks used the shared generator
        context = AttackContext(problem, None, None, None, ("A3",), EFFORT["fast"], shared)
        rng = dp_audit.audit_rng(context)
        return [design.draw(rng, i) for i in range(3)]

    first, again, other = draws(0), draws(0), draws(1)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.coins, b.coins)
        for n in real:
            assert a.problem.party_data[n].equals(b.problem.party_data[n])
    assert not all(np.array_equal(a.coins, c.coins) for a, c in zip(first, other, strict=True))
    trial = first[0]
    assert len(trial.coins) > 150  # one canary per populated cell
    left_out = int((~trial.coins).sum())
    assert sum(len(trial.problem.party_data[n]) for n in real) == sum(real.values()) - left_out
    for n in real:  # every audit row is one of the holder's real rows, in its real order
        kept = trial.problem.party_data[n]
        merged = problem.party_data[n].reset_index().merge(kept, how="inner")
        assert len(merged) == len(kept) and merged["index"].is_monotonic_increasing


@pytest.mark.slow  # two full fast audits, about 30 s
def test_the_same_cell_gives_the_same_bound_on_two_runs(scenario_dir):
    """With the backend's noise seeded (here by a counter the test restarts), every input
    and every coin of the audit comes from the cell's seed: the two records agree."""
    backend = dp_leaks.TenthNoise(epsilon=1.0, seed=0)
    first, _ = _audit(backend, _seeded(dp_leaks.TenthNoise), CARD, scenario_dir, 2000, seed=3)
    again, _ = _audit(backend, _seeded(dp_leaks.TenthNoise), CARD, scenario_dir, 2000, seed=3)
    for key in ("epsilon_lower", "epsilon_cap", "correct_guesses", "guesses", "canaries"):
        assert first[key] == again[key]
    assert first["runs"] == EFFORT["fast"].audit_trials


# -- planted leaks -------------------------------------------------------------------------


#: Seed 0 in the default suite; the other four with ``-m slow``.
SEEDS = [0, *(pytest.param(s, marks=pytest.mark.slow) for s in range(1, 5))]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_tenth_of_the_noise_is_caught_in_every_fast_run(scenario_dir, seed):
    backend = dp_leaks.TenthNoise(epsilon=1.0)
    record, leakage = _audit(backend, dp_leaks.TenthNoise, CARD, scenario_dir, 2000, seed=seed)
    assert record["runs"] == EFFORT["fast"].audit_trials
    assert record["claim_contradicted"] is True
    assert record["epsilon_lower"] > 2.0 > record["epsilon_claimed"] == 1.0
    assert record["epsilon_lower"] <= record["epsilon_cap"]
    assert "claim_contradicted" in leakage["flags"]
    assert leakage["headline"]["epsilon_lower_bound"] == record["epsilon_lower"]


def test_honest_noise_on_audit_sized_inputs_only_is_caught(scenario_dir):
    """SizeAware adds the honest noise to inputs under 1,000 rows (what an audit on a
    small neighbouring pair would hand it) and a tenth otherwise: the audit's inputs
    are the real cell's size."""
    backend = dp_leaks.SizeAware(epsilon=1.0)
    record, _ = _audit(backend, dp_leaks.SizeAware, CARD, scenario_dir, 2000)
    assert record["claim_contradicted"] is True and record["epsilon_lower"] > 2.0


def test_honest_central_and_opendp_aggregates_are_not_contradicted(scenario_dir):
    from pets.backends.dp import OpenDP

    honest, _ = _audit(
        dp_leaks.HonestCentral(epsilon=1.0), dp_leaks.HonestCentral, CARD, scenario_dir, 2000
    )
    assert honest["claim_contradicted"] is False
    assert 0.0 <= honest["epsilon_lower"] <= 1.0
    opendp, _ = _audit(OpenDP(epsilon=1.0), lambda: OpenDP(epsilon=1.0), CARD, scenario_dir, 2000)
    assert opendp["claim_contradicted"] is False
    assert opendp["epsilon_lower"] <= 1.0 < opendp["epsilon_cap"]
    assert opendp["method"].startswith("canary guessing")
    assert "residual_risk" not in opendp  # never a rate: _judge reads epsilon_lower only


def test_a_per_query_epsilon_is_audited_as_the_total_the_claim_states(scenario_dir):
    """PerQueryTotal spends its whole claimed epsilon on each of the ten queries; OpenDP
    with ``query_epsilon`` 0.2 spends 2 over the ten, as it claims. The canary falls in
    as many queries as any patient, and the score adds up every answer it moves."""
    from pets.backends.dp import OpenDP

    leak, _ = _audit(
        dp_leaks.PerQueryTotal(epsilon=2.0),
        lambda: dp_leaks.PerQueryTotal(epsilon=2.0),
        "tre_queries",
        scenario_dir,
        1000,
        effort=replace(EFFORT["fast"], audit_trials=400),
    )
    assert leak["workload_queries"] == 10 and leak["queries_moved_by_canary"] >= 5
    assert leak["claim_contradicted"] is True and leak["epsilon_lower"] > 2.0
    honest, _ = _audit(
        OpenDP(epsilon=2.0, query_epsilon=0.2),
        lambda: OpenDP(epsilon=2.0, query_epsilon=0.2),
        "tre_queries",
        scenario_dir,
        1000,
        effort=replace(EFFORT["fast"], audit_trials=100),
    )
    assert honest["claim_contradicted"] is False


def test_training_and_synthesis_without_noise_are_caught(scenario_dir):
    effort = replace(EFFORT["full"], audit_model_trials=40, audit_release_trials=40)
    model, _ = _audit(
        dp_leaks.UnnoisedTraining(epsilon=0.5),
        lambda: dp_leaks.UnnoisedTraining(epsilon=0.5),
        "federated_risk_model",
        scenario_dir,
        1000,
        effort=effort,
    )
    assert model["statistic"] == "canary_log_likelihood"
    assert model["claim_contradicted"] is True
    assert model["epsilon_lower"] == pytest.approx(model["epsilon_cap"])
    release, _ = _audit(
        dp_leaks.CopyingRelease(epsilon=0.5),
        lambda: dp_leaks.CopyingRelease(epsilon=0.5),
        "research_data_release",
        scenario_dir,
        1000,
        effort=effort,
    )
    assert release["canary_in_real_table"] == 0  # a combination no real patient has
    assert release["claim_contradicted"] is True
    assert release["statistic"] in ("exact_copies", "near_copies")


def test_model_audits_make_no_runs_at_fast_effort_and_say_so(scenario_dir):
    from pets.backends.dp.diffprivlib_backend import Diffprivlib

    record, _ = _audit(
        Diffprivlib(epsilon=1.0),
        lambda: Diffprivlib(epsilon=1.0),
        "federated_risk_model",
        scenario_dir,
        1000,
    )
    assert record["skipped"] is True and "no train audit runs" in record["note"]
    assert "epsilon_lower" not in record


def test_honest_dp_training_is_not_contradicted(scenario_dir):
    from pets.backends.dp.diffprivlib_backend import Diffprivlib

    effort = replace(EFFORT["full"], audit_model_trials=40, audit_release_trials=40)
    record, _ = _audit(
        Diffprivlib(epsilon=1.0),
        lambda: Diffprivlib(epsilon=1.0),
        "federated_risk_model",
        scenario_dir,
        1000,
        effort=effort,
    )
    assert record["runs"] == 40 and record["claim_contradicted"] is False


def test_no_claim_or_no_auditor_means_no_audit(scenario_dir):
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
        effort=EFFORT["full"],
        rng=np.random.default_rng(0),
    )
    (result,) = dp_audit.attack(context)
    assert result.extra["skipped"] is True and "no rerun oracle" in result.note
    assert dp_audit.attack(replace(context, claim=Claim())) == []
    assert dp_audit.attack(replace(context, attackers=("A0",))) == []


# -- stopping once decided -----------------------------------------------------------------


def test_the_threshold_bound_at_most_is_never_below_the_full_audits():
    # the early stop is honest only if no completion of the runs can beat this limit
    rng = np.random.default_rng(7)
    checks = 0
    for _ in range(400):
        total = int(rng.integers(8, 61))
        coins = rng.random(total) < 0.5
        if min(coins.sum(), (~coins).sum()) < 2:
            continue
        columns = int(rng.integers(1, 4))
        scores = (
            rng.normal(size=(total, columns)) + np.where(coins, rng.choice([0, 1, 4]), 0)[:, None]
        )
        if rng.random() < 0.3:  # ties and withheld values
            scores = np.round(scores)
            scores[rng.random(scores.shape) < 0.05] = np.nan
        delta = float(rng.choice([0.0, 1e-5, 0.05]))
        final = audit_scores(scores[coins], scores[~coins], delta=delta).epsilon_lower
        for made in range(0, total + 1, 3):
            c = coins[:made]
            at_most = threshold_bound_at_most(
                scores[:made][c],
                scores[:made][~c],
                int(coins.sum()),
                int((~coins).sum()),
                delta=delta,
            )
            assert final <= at_most + 1e-9, (total, made, final, at_most)
            checks += 1
    assert checks > 2000


def test_the_canary_bound_at_most_is_never_below_the_full_audits():
    rng = np.random.default_rng(11)
    checks = 0
    for _ in range(500):
        total, columns = int(rng.integers(2, 200)), int(rng.integers(1, 4))
        coins = rng.random(total) < 0.5
        shift = rng.choice([0.0, 0.15, 0.5, 2.5])
        scores = 0.5 + rng.normal(scale=0.5, size=(total, columns))
        scores += np.where(coins, shift, -shift)[:, None]
        if rng.random() < 0.4:  # ties at the boundary and withheld values
            scores = np.round(scores * 2) / 2
            scores[rng.random(scores.shape) < 0.1] = np.nan
        midpoint = float(rng.choice([0.5, 0.0, 1.0]))
        order = rng.permutation(total)
        final = canary_bound(coins, scores, midpoint=midpoint, order=order).epsilon_lower
        for made in range(0, total + 1, max(1, total // 9)):
            at_most = canary_bound_at_most(coins[:made], scores[:made], total, midpoint=midpoint)
            assert final <= at_most + 1e-9, (total, made, final, at_most)
            checks += 1
    assert checks > 4000


def test_an_honest_delta_claim_stops_early_and_a_leaky_one_runs_every_run(scenario_dir):
    honest, _ = _audit(
        dp_leaks.HonestCentral(epsilon=1.0, delta=1e-6),
        lambda: dp_leaks.HonestCentral(epsilon=1.0, delta=1e-6),
        CARD,
        scenario_dir,
        2000,
    )
    planned = EFFORT["fast"].audit_trials
    assert honest["stopped_early"] is True and honest["claim_contradicted"] is False
    assert 8 <= honest["runs"] < planned == honest["runs_planned"]
    assert honest["epsilon_lower"] <= honest["epsilon_lower_at_most"] <= 1.0
    assert "could not contradict" in honest["note"]
    # with one canary per run, 60 runs can show epsilon up to about 1.35: an exact
    # table is caught, and its audit never stops early
    leaky, _ = _audit(
        dp_leaks.NoNoise(epsilon=1.0, delta=1e-6),
        lambda: dp_leaks.NoNoise(epsilon=1.0, delta=1e-6),
        CARD,
        scenario_dir,
        2000,
    )
    assert leaky["runs"] == planned and "stopped_early" not in leaky
    assert leaky["claim_contradicted"] is True
