"""Transcript distinguishing run end to end on a rerun oracle whose views the test
writes: a one-bit property of fresh randomness that happens to line up with the two
inputs in the first runs is not taken for a leak; a leak constant in every run is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pets.leakage import distinguishing
from pets.leakage._base import EFFORT, AttackContext
from pets.leakage.rates import residual_risk
from pets.scenarios import build_problem, load_scenario
from pets.session import Session

from conftest import SCENARIOS

#: What an observer receives in a run: fresh random bytes around a feature.
Feature = Callable[[int, int, np.random.Generator], bytes]


@pytest.fixture(scope="module")
def problem():
    return build_problem(load_scenario("multi_site_prevalence", SCENARIOS), 3000, seed=0)


def _holding(problem) -> bytes:
    """A digest of what the first holder holds (differs between the two inputs)."""
    holder = next(n for n, f in problem.party_data.items() if f is not None and len(f))
    frame = problem.party_data[holder]
    return hashlib.sha256(pd.util.hash_pandas_object(frame).to_numpy().tobytes()).digest()


def _context(
    problem, feature: Feature, seed: int = 0, sides: list[int] | None = None
) -> AttackContext:
    """An attack context whose rerun oracle sends the aggregator, from every holder,
    fresh random bytes around ``feature(run, side, rng)``, where ``side`` is 0 for the
    input of the first rerun and 1 for the other (appended to ``sides``)."""
    rng = np.random.default_rng(7)
    first: list[bytes] = []
    sides = [] if sides is None else sides
    holders = [n for n, f in problem.party_data.items() if f is not None and len(f)]

    def rerun(inputs):
        digest = _holding(inputs)
        if not first:
            first.append(digest)
        side = int(digest != first[0])
        run = len(sides)
        sides.append(side)
        session = Session(inputs.task.parties, inputs.party_data)
        for holder in holders:
            payload = rng.bytes(300) + feature(run, side, rng) + rng.bytes(80)
            session.carry(holder, "aggregator", payload, tag="share")
        return None, session

    return AttackContext(
        problem=problem,
        session=Session(problem.task.parties, problem.party_data),
        output=None,
        claim=SimpleNamespace(declared_leakage=()),
        attackers=("A2",),
        effort=EFFORT["fast"],
        rng=np.random.default_rng(seed),
        rerun=rerun,
        mode="fast",
    )


def _length_bit(bit: int) -> bytes:
    """A pickled big integer's opcode and length byte (16 or 17 bytes: one bit of a
    random share), then the share's random bytes."""
    return b"\x94(\x8a" + bytes([0x10 + bit])


def _at_aggregator(context: AttackContext) -> dict:
    results = {r.observer: r for r in distinguishing.attack(context)}
    return results["aggregator"].to_dict()


def test_a_random_bit_lined_up_with_the_inputs_by_chance_is_not_a_leak(problem):
    # the first eight runs' bit follows the input, as chance makes it 2 times in 256;
    # after them it is a fair coin, as it always was
    def chance(run: int, side: int, rng: np.random.Generator) -> bytes:
        return _length_bit(side if run < 8 else int(rng.integers(2)))

    context = _context(problem, chance)
    found = _at_aggregator(context)
    # on the first eight runs alone this scored 8 of 8, a residual risk of 1.0
    assert context.reruns == 2 * distinguishing.CONFIRM_RUNS
    assert found["runs_per_input"] == distinguishing.CONFIRM_RUNS
    assert found["screen_runs_per_input"] == distinguishing.RUNS["fast"]
    assert found["trials"] == 2 * distinguishing.CONFIRM_RUNS
    assert found["residual_risk"] == 0.0


def test_a_leak_constant_in_every_run_is_confirmed_and_flagged(problem):
    def leak(run: int, side: int, rng: np.random.Generator) -> bytes:
        return _length_bit(side)

    context = _context(problem, leak)
    found = _at_aggregator(context)
    assert context.reruns == 2 * distinguishing.CONFIRM_RUNS
    assert found["success_rate"] == 1.0 and found["residual_risk"] == 1.0
    # the lower end of its interval passes the flag's threshold (one half)
    assert residual_risk(found["ci_low"], found["control_rate"]) > 0.5


def test_views_that_nothing_tells_apart_are_not_run_again(problem):
    def fresh(run: int, side: int, rng: np.random.Generator) -> bytes:
        return rng.bytes(20)

    context = _context(problem, fresh)
    found = _at_aggregator(context)
    assert context.reruns == 2 * distinguishing.RUNS["fast"]
    assert found["runs_per_input"] == distinguishing.RUNS["fast"]
    assert found["success_rate"] == 0.0 and found["residual_risk"] == 0.0


def test_the_runs_of_the_two_inputs_come_in_an_order_drawn_from_the_seed(problem):
    orders = []
    for seed in range(4):
        sides: list[int] = []
        distinguishing.attack(_context(problem, lambda run, side, rng: b"", seed, sides))
        assert sorted(sides) == [0] * 4 + [1] * 4
        orders.append(tuple(sides))
    again: list[int] = []
    distinguishing.attack(_context(problem, lambda run, side, rng: b"", 3, again))
    assert tuple(again) == orders[3]  # the same seed, the same order
    assert len(set(orders)) > 1
