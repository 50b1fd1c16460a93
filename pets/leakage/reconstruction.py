"""Reconstruction from query answers, Dinur-Nissim style (attacker model A1).

The researcher knows the quasi-identifiers (age, sex, postcode district) of ``n``
target patients, each the only patient with that combination, and asks ``m = 2n``
counts of ``secret == 1`` over random halves of the targets (a filter that is the
disjunction of the chosen targets' quasi-identifiers). The answers are ``a ≈ Q b`` with
``Q`` the 0/1 subset matrix and ``b`` the targets' secrets. The harness solves the
linear program

    minimise Σ_j e_j  subject to  |Q b − a| ≤ e,  0 ≤ b ≤ 1

with SciPy's HiGHS and rounds ``b``. Exact answers recover every secret; noise well
below √n still recovers most; a refused query drops its row of ``Q``.

Targets are balanced, so guessing scores one half (the baseline). The control is a set
of phantom targets (quasi-identifier combinations no patient has) asked about in the
same queries, whose secrets are balanced coins: what the program "recovers" for
patients who are not there.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from pets.leakage._base import (
    AttackContext,
    AttackResult,
    not_applicable,
    rate_result,
)
from pets.leakage.differencing import QUERY_QIS, literal, phantom_district, unique_targets
from pets.leakage.rates import balanced_coins, control_share
from pets.tasks import freeze
from pets.tasks.query import parse_workload

__all__ = ["attack", "reconstruct"]

ATTACKER = "A1"
SECRET = "t2_diabetes"
QIS = QUERY_QIS


def reconstruct(queries: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """Solve the least-absolute-error program for secrets in [0, 1].

    Parameters
    ----------
    queries : numpy.ndarray
        ``(m, n)`` 0/1 matrix, one row per answered query.
    answers : numpy.ndarray
        ``(m,)`` answers.

    Returns
    -------
    numpy.ndarray
        The fractional solution ``b`` (round at one half for a guess).
    """
    from scipy.optimize import linprog

    m, n = queries.shape
    if m == 0:
        return np.full(n, 0.5)
    # variables: b (n), e (m); minimise sum(e)
    cost = np.concatenate([np.zeros(n), np.ones(m)])
    identity = np.eye(m)
    upper = np.block([[queries, -identity], [-queries, -identity]])
    bound = np.concatenate([answers, -answers])
    bounds = [(0.0, 1.0)] * n + [(0.0, None)] * m
    solved = linprog(cost, A_ub=upper, b_ub=bound, bounds=bounds, method="highs")
    if not solved.success:  # pragma: no cover - the program is always feasible
        raise RuntimeError(f"reconstruction program failed: {solved.message}")
    return solved.x[:n]


def attack(context: AttackContext) -> list[AttackResult]:
    """Run the reconstruction attack on a query backend."""
    task = context.problem.task
    if task.kind != "query" or not context.applies(ATTACKER):
        return []
    if context.rerun is None:
        return [
            not_applicable("reconstruction", ATTACKER, task.recipient, "no rerun oracle to ask")
        ]
    return [_query(context)]


def _predicate(age: object, sex: object, district: object) -> str:
    return (
        f"(age == {literal(int(age))} and sex == {literal(sex)} "
        f"and postcode_district == {literal(district)})"
    )


def _query(context: AttackContext) -> AttackResult:
    start = time.perf_counter()
    problem, rng = context.problem, context.rng
    task = problem.task
    ((_, frame),) = problem.party_data.items()
    rows = unique_targets(frame, SECRET, context.effort.targets, rng)
    if isinstance(rows, str):
        return not_applicable("reconstruction", ATTACKER, task.recipient, rows)
    qis = frame[list(QIS)].astype(str)
    secrets = frame[SECRET].to_numpy()[rows].astype(int)
    people = [tuple(frame.iloc[r][list(QIS)]) for r in rows]
    occupied = set(map(tuple, qis.to_numpy()))
    districts = frame["postcode_district"].astype(str).unique()
    phantoms = []
    for age, sex, _ in people[: len(people) // 2]:
        district = phantom_district(age, sex, districts, occupied, rng)
        if district is not None:
            phantoms.append((age, sex, district))
    coins = balanced_coins(len(phantoms), rng)
    everyone = people + phantoms
    n, m = len(everyone), 2 * len(everyone)
    subsets = rng.integers(0, 2, size=(m, n))
    raw = []
    for j in range(m):
        chosen = [_predicate(*everyone[i]) for i in np.flatnonzero(subsets[j])]
        condition = " or ".join(chosen) if chosen else "age < 0"
        raw.append({"id": f"r{j}", "kind": "count", "filter": f"{SECRET} == 1 and ({condition})"})
    workload = parse_workload(raw, "attack workload", "reconstruction", list(frame.columns))
    variant = replace(task, params=freeze({**task.params, "queries": workload}))
    answered, _ = context.run_again(replace(problem, task=variant))
    kept = [j for j, a in enumerate(answered.answers) if a is not None]
    answers = np.array([float(answered.answers[j]) for j in kept])
    truth = subsets[:, : len(people)] @ secrets
    solution = reconstruct(subsets[kept].astype(float), answers)
    guesses = (solution >= 0.5).astype(int)
    hits = int((guesses[: len(people)] == secrets).sum())
    control_hits = int((guesses[len(people) :] == coins).sum())
    exact = np.abs(answers - truth[kept]) if kept else np.array([np.nan])
    return rate_result(
        "reconstruction",
        ATTACKER,
        task.recipient,
        successes=hits,
        trials=len(people),
        baseline=0.5,
        control=control_share(control_hits, len(phantoms)),
        cost_s=time.perf_counter() - start,
        secret=SECRET,
        observation="random subset counts over targets named by quasi-identifiers",
        control_trials=len(phantoms),
        queries_asked=m,
        queries_answered=len(kept),
        answer_error_median=float(np.median(exact)) if len(kept) else None,
    )
