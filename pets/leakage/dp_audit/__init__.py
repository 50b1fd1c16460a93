"""Differential-privacy audit: a lower bound on epsilon (attacker model A3).

A worst-case auditor knows every record but the canaries' and checks the backend's
(epsilon, delta) claim by experiment: it runs the backend, through the same runtime as
the cell's own run, on inputs that differ from the real cell's input only in canaries
left out by coins, scores every canary from what the recipient learns, and turns the
scores into a lower bound on epsilon with a stated confidence
(:mod:`~pets.leakage.dp_audit.bounds`). A bound above the claimed epsilon contradicts
the claim (``claim_contradicted``).

The budget is a number of runs per effort (:class:`~pets.leakage.Effort`), never wall
time, and every choice of the audit (canaries, coins, the order that breaks ties) is
drawn from the cell's seed: the same cell makes the same runs on any machine, and the
bound varies between two audits of one cell only through the backend's own noise (none
when that noise is seeded; OpenDP draws from its own secure generator, which cannot be).

Designs per task kind (:mod:`~pets.leakage.dp_audit.tables`,
:mod:`~pets.leakage.dp_audit.models`): aggregates put one canary in every cell of the
grid, so one run gives hundreds of guesses; query workloads and trained models carry
one canary per run; synthetic tables carry a few canaries with rare combinations of
values. Every canary is kept in or left out by a fair coin. Pure claims (delta = 0) are
bounded by canary guessing, the others by the threshold test on the two worlds.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pets.leakage._base import AttackContext, AttackResult
from pets.leakage.dp_audit.bounds import (
    ALPHA,
    DIRECTIONS,
    GUESS_SHARES,
    Audit,
    CanaryAudit,
    audit_scores,
    canary_bound,
    canary_bound_at_most,
    canary_cap,
    epsilon_cap,
    threshold_bound_at_most,
)
from pets.leakage.dp_audit.tables import Design, aggregate_design, query_design

__all__ = [
    "ALPHA",
    "AUDITED_KINDS",
    "DIRECTIONS",
    "MIN_TRIALS",
    "Audit",
    "CanaryAudit",
    "attack",
    "audit_rng",
    "audit_scores",
    "canary_bound",
    "canary_bound_at_most",
    "canary_cap",
    "epsilon_cap",
    "threshold_bound_at_most",
]

ATTACKER = "A3"
ATTACK = "dp_audit"

#: Fewest runs of a threshold test worth an audit (the conformance kit's quick audit).
MIN_TRIALS = 50

#: Task kinds the audit has a design for.
AUDITED_KINDS = ("aggregate", "query", "train", "release")


def audit_rng(context: AttackContext) -> np.random.Generator:
    """The audit's own generator, drawn from the cell's seed alone (not from how much of
    the shared generator other attacks used before it)."""
    seed_seq = getattr(context.rng.bit_generator, "seed_seq", None)
    entropy = getattr(seed_seq, "entropy", None)
    if entropy is None:
        return np.random.default_rng(context.rng.integers(2**63))
    parts = list(entropy) if isinstance(entropy, (list, tuple)) else [int(entropy)]
    return np.random.default_rng([*parts, 0xD1A0D])


def attack(context: AttackContext) -> list[AttackResult]:
    """Audit the backend's epsilon claim on canaries (A3)."""
    claim = context.claim
    if claim.epsilon is None or not context.applies(ATTACKER):
        return []
    task = context.problem.task
    if task.kind not in AUDITED_KINDS:
        return [_skipped(context, f"no audit design for {task.kind} tasks")]
    if context.rerun is None:
        return [_skipped(context, "no rerun oracle: the audit runs the mechanism many times")]
    if claim.neighbouring not in (None, "add-remove"):
        return [
            _skipped(
                context,
                f"the claim is for {claim.neighbouring} neighbours; the audit leaves patients "
                "out (add-remove)",
            )
        ]
    delta = float(claim.delta or 0.0)
    runs = context.effort.audit_trials
    if task.kind == "aggregate":
        design = aggregate_design(context.problem, single=delta > 0)
    elif task.kind == "query":
        design = query_design(context.problem)
    else:
        from pets.leakage.dp_audit.models import release_design, train_design

        effort = context.effort
        runs = effort.audit_model_trials if task.kind == "train" else effort.audit_release_trials
        design = (
            train_design(context.problem, context.output)
            if task.kind == "train"
            else release_design(context.problem)
        )
    if isinstance(design, str):
        return [_skipped(context, design)]
    if runs < 2:
        return [_skipped(context, f"{context.mode} effort makes no {task.kind} audit runs")]
    return [_run_audit(context, design, runs, delta)]


def _skipped(context: AttackContext, note: str, **extra: Any) -> AttackResult:
    return AttackResult(
        attack=ATTACK,
        attacker=ATTACKER,
        observer=context.problem.task.recipient,
        note=note,
        extra={"skipped": True, "epsilon_claimed": float(context.claim.epsilon), **extra},
    )


def _planned_coins(rng: np.random.Generator, design: Design, runs: int) -> np.ndarray:
    """Every coin the audit will draw, in order, read from a copy of its generator
    before any run (each draw's problem is dropped at once)."""
    preview = copy.deepcopy(rng)
    return np.concatenate(
        [np.asarray(design.draw(preview, index).coins, bool) for index in range(runs)]
    )


#: ``limit(coins, scores)``: the most the full audit could still show after the runs
#: made (None while that cannot be said), and the planned audit's cap.
StoppingRule = tuple[Callable[[np.ndarray, np.ndarray], "float | None"], float]


def _stopping_rule(
    rng: np.random.Generator, design: Design, runs: int, delta: float
) -> StoppingRule | None:
    """The audit's rule for stopping once decided; None when it cannot stop early
    (canary guessing with a midpoint taken from all runs' scores)."""
    if delta > 0 and design.canaries_per_run == 1:
        planned = _planned_coins(rng, design, runs)
        worlds = int(planned.sum()), int((~planned).sum())

        def threshold_limit(coin: np.ndarray, score: np.ndarray) -> float | None:
            if min(int(coin.sum()), int((~coin).sum())) < 4:  # the test needs four
                return None
            return threshold_bound_at_most(score[coin], score[~coin], *worlds, delta=delta)

        return threshold_limit, epsilon_cap(worlds[0] // 2, worlds[1] // 2, delta)
    if delta == 0 and design.midpoint is not None:
        canaries = len(_planned_coins(rng, design, runs))
        midpoint = float(design.midpoint)
        shares = sum(int(canaries * share) >= 1 for share in GUESS_SHARES)

        def guessing_limit(coin: np.ndarray, score: np.ndarray) -> float | None:
            guessed = score[:, : design.guess_statistics]
            return canary_bound_at_most(coin, guessed, canaries, midpoint=midpoint)

        return guessing_limit, canary_cap(canaries, design.guess_statistics * shares)
    return None


def _run_audit(context: AttackContext, design: Design, runs: int, delta: float) -> AttackResult:
    start = time.perf_counter()
    rng = audit_rng(context)
    claimed = float(context.claim.epsilon)
    # the audit stops once no outcome of the runs still to come could contradict the
    # claim: the decision all runs would give (see the stopping rule)
    rule = _stopping_rule(rng, design, runs, delta)
    coins: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    at_most = None
    for index in range(runs):
        trial = design.draw(rng, index)
        output, _ = context.run_again(trial.problem)
        coins.append(np.asarray(trial.coins, bool))
        scores.append(np.asarray(trial.score(output), np.float64))
        if rule is not None and index + 1 < runs:
            at_most = rule[0](np.concatenate(coins), np.concatenate(scores))
            if at_most is not None and at_most <= claimed:
                break
            at_most = None
    made = len(coins)
    elapsed = time.perf_counter() - start
    coin = np.concatenate(coins)
    score = np.concatenate(scores)
    common = {
        "epsilon_claimed": claimed,
        "delta_claimed": delta,
        "confidence": 1.0 - ALPHA,
        "runs": made,
        "runs_planned": runs,
        "canaries": len(coin),
        "canaries_in": int(coin.sum()),
        "seconds_per_run": round(elapsed / made, 4),
        "observation": "the recipient's output of runs on the cell's input with canaries "
        "left out by coins",
        **design.extra,
    }
    if delta == 0:
        order = rng.permutation(len(coin))  # tie-breaks fixed before reading the scores
        guessed = score[:, : design.guess_statistics]
        if design.midpoint is None:  # halfway between the quartiles of all runs' scores
            finite = np.where(np.isfinite(guessed), guessed, np.nan)
            with np.errstate(all="ignore"):
                midpoint = np.nanmean(np.nanpercentile(finite, [25, 75], axis=0), axis=0)
        else:
            midpoint = np.full(guessed.shape[1], design.midpoint)
        found = canary_bound(coin, guessed, midpoint=midpoint, order=order)
        eps, cap = found.epsilon_lower, found.epsilon_cap
        specific = {
            "method": "canary guessing (Steinke, Nasr and Jagielski 2023, theorem 3.1)",
            "statistic": design.statistics[found.statistic],
            "statistics_tried": design.statistics[: design.guess_statistics],
            "guesses": found.guesses,
            "correct_guesses": found.correct,
            "tests": found.tests,
        }
    elif min(int(coin.sum()), int((~coin).sum())) < 4:
        return _skipped(
            context,
            f"the coins kept {int(coin.sum())} of {made} runs in: too "
            "few runs in one world for a threshold test",
            **common,
        )
    else:
        found = audit_scores(score[coin], score[~coin], delta=delta)
        eps, cap = found.epsilon_lower, found.epsilon_cap
        specific = {
            "method": "threshold test on the two worlds, chosen on even runs, bounded on odd",
            "statistic": design.statistics[found.statistic],
            "statistics_tried": design.statistics,
            "direction": found.direction,
            "tpr_low": found.tpr_low,
            "fpr_high": found.fpr_high,
            "held_out_per_world": found.held_out,
        }
    note = ""
    if at_most is not None and rule is not None:
        cap = rule[1]  # the planned audit's
        common["stopped_early"] = True
        common["epsilon_lower_at_most"] = at_most
        note = (
            f"stopped after {made} of {runs} runs: whatever the other {runs - made} gave, "
            f"the bound could not exceed epsilon {at_most:.2f}, so the full audit could "
            "not contradict the claim either (epsilon_lower is the bound of the runs made)"
        )
    elif cap <= claimed:
        note = (
            f"with {len(coin)} canaries no test can show more than epsilon {cap:.2f}: this "
            "audit cannot contradict the claim, only show leakage up to that level"
        )
    return AttackResult(
        attack=ATTACK,
        attacker=ATTACKER,
        observer=context.problem.task.recipient,
        trials=made,
        cost_s=elapsed,
        note=note,
        extra={
            "epsilon_lower": eps,
            "epsilon_cap": cap if math.isfinite(cap) else None,
            "claim_contradicted": bool(eps > claimed),
            **common,
            **specific,
        },
    )
