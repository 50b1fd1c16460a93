"""Record reconstruction from a trust's model update (attacker model A2: the aggregator).

In federated averaging of logistic regression, the aggregator sends a trust the global
weights ``g`` and receives the trust's update. A trust that holds one patient steps
from ``g`` along that patient's gradient ``(p - y) [x, 1]`` (plus a small L2 pull), so
``delta = w_trust - g`` is ``[x, 1]`` times a scalar: ``x = delta[:-1] / delta[-1]``, exact
because the intercept's feature is 1. Over rounds the attacker regresses the feature part
of the deltas on their intercept part (through the origin): rounds with large steps weigh
most, which keeps the estimate exact to the L2 pull for a plain update and averages noise
over rounds for a noisy one.

The game, through the rerun oracle: the harness builds a variant of the cell's problem
in which every data holder holds a single patient of its own (patients drawn from its
rows, labels alternating so both classes occur), runs the same backend on it, and
reads what the aggregator received, generically:

- every message from a trust that :func:`pets.wire.unpack` decodes;
- a float vector of length ``d + 1`` is taken as the trust's weights, of length
  ``d + 2`` as ``(n * weights, n)``; it is paired with the last global vector of length
  ``d + 1`` the aggregator sent that trust before it (zeros if none);
- a table with the task's columns, or a one-row float matrix, gives the patient's
  features directly (a backend that ships rows);
- anything else (ciphertexts, secret shares, raw socket bytes) is unreadable.

One rerun gives one target per data holder; the attack reruns until it has
``effort.targets`` targets or spends ``effort.probe_seconds`` (at least one rerun).
Keeping every trust at one patient is a way to play several independent games in one
run: each trust's update depends on its own patient and the global weights only, and
the aggregator knows the global weights.

Success: the share of target features recovered within :data:`TOLERANCE` (in the design
matrix's units: features are scaled to [0, 1] by their public ranges, so 1% of the
range; binary features must match exactly). The attacker clips its estimate to the
population's range and rounds binary features. When it reads nothing for a target it
guesses, feature by feature, the value that the most population patients (the held-out
rows) lie within the tolerance of; the same guess for every target is the control.

The attack applies when, in the cell's own run, the aggregator sent global weights to
the trusts or received rows from them; otherwise (one trust trains alone and sends a
finished model, DP models fitted at a curator) there is no per-round update to invert,
and the model the aggregator gets is attacked as an output by membership inference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from pets.leakage._base import AttackContext, AttackResult, not_applicable, rate_result
from pets.session import Session
from pets.tasks import DERIVED_FEATURES, design_matrix, labels, public_ranges
from pets.wire import try_unpack

__all__ = ["TOLERANCE", "attack", "read_updates"]

ATTACK = "update_reconstruction"

#: Largest error of a recovered feature, in design-matrix units.
TOLERANCE = 0.01


def attack(context: AttackContext) -> list[AttackResult]:
    """Reconstruct single patients from what the aggregator receives.

    Parameters
    ----------
    context : AttackContext
        The cell; only ``train`` tasks are attacked, by attacker model A2.

    Returns
    -------
    list of AttackResult
        One result, or a not-applicable one with the reason.
    """
    problem = context.problem
    task = problem.task
    if task.kind != "train" or not context.applies("A2"):
        return []
    aggregators = task.parties_with_role("aggregator")
    observer = aggregators[0] if aggregators else task.recipient
    holders = [
        h
        for h in task.parties_with_role("data_holder")
        if isinstance(problem.party_data.get(h), pd.DataFrame) and len(problem.party_data[h])
    ]
    features = list(task.params["features"])
    if not holders or observer in holders:
        return [not_applicable(ATTACK, "A2", observer, "no aggregator apart from the data holders")]
    shape = _protocol(context.session, observer, holders, len(features))
    if shape is None:
        return [
            not_applicable(
                ATTACK,
                "A2",
                observer,
                "the aggregator sends the trusts no global weights and receives no rows: "
                "there is no per-round update to invert (the model it receives is attacked "
                "by membership inference)",
            )
        ]
    if context.rerun is None:
        return [
            not_applicable(
                ATTACK, "A2", observer, "no rerun oracle: the single-patient game needs reruns"
            )
        ]
    population = np.asarray(problem.evaluation.get("x_test"), dtype=np.float64)
    if population.ndim != 2 or population.shape[1] != len(features):
        pooled = pd.concat([problem.party_data[h] for h in holders], ignore_index=True)
        population = design_matrix(pooled, features)
    prior = _Prior(population, features)

    start = time.perf_counter()
    rng = context.rng
    wanted = max(1, math.ceil(context.effort.targets / len(holders)))
    budget = context.effort.probe_seconds
    successes = control_hits = trials = whole = read = reruns = 0
    errors: list[float] = []
    failures: list[str] = []
    while reruns < wanted and (reruns == 0 or time.perf_counter() - start < budget):
        picks = _pick(problem.party_data, holders, task, rng)
        variant = replace(
            problem,
            party_data={
                **problem.party_data,
                **{h: problem.party_data[h].iloc[[i]].reset_index(drop=True) for h, i in picks},
            },
        )
        reruns += 1
        try:
            with np.errstate(all="ignore"):  # one patient's noisy update may overflow
                _, session = context.run_again(variant)
        except Exception as exc:  # a backend that cannot run with one patient per trust
            failures.append(type(exc).__name__)  # its message may repeat patient values
            break
        estimates = read_updates(session, observer, [h for h, _ in picks], features)
        for h, _ in picks:
            truth = design_matrix(variant.party_data[h], features)[0]
            estimate = estimates.get(h)
            read += estimate is not None
            guess = prior.guess if estimate is None else prior.tidy(estimate)
            hit = prior.hits(guess, truth)
            successes += int(hit.sum())
            control_hits += int(prior.hits(prior.guess, truth).sum())
            trials += len(features)
            whole += bool(hit.all())
            errors.append(float(np.max(np.abs(guess - truth))))
    cost = time.perf_counter() - start
    if trials == 0:
        return [
            not_applicable(
                ATTACK,
                "A2",
                observer,
                "the backend could not run with one patient per trust: " + "; ".join(failures),
            )
        ]
    targets = trials // len(features)
    control = control_hits / trials
    note = ""
    if read == 0:
        note = "the aggregator could read no trust's update (ciphertexts or shares only)"
    if reruns < wanted and not failures:
        note = (note + "; " if note else "") + f"stopped after {reruns} reruns (time budget)"
    return [
        rate_result(
            ATTACK,
            "A2",
            observer,
            successes=successes,
            trials=trials,
            baseline=control,
            control=control,
            cost_s=cost,
            note=note,
            targets=targets,
            targets_fully_recovered=whole / targets,
            updates_read=read / targets,
            median_max_feature_error=float(np.median(errors)),
            tolerance=TOLERANCE,
            reruns=reruns,
            protocol=shape,
        )
    ]


def _protocol(session: Session, observer: str, holders: Sequence[str], d: int) -> str | None:
    """How the aggregator meets the trusts in the cell's own run: ``"updates"`` (it sends
    them global weights), ``"rows"`` (it receives their rows), or None."""
    for message in session.transcript:
        if message.sender == observer and message.receiver in holders:
            value = try_unpack(message.payload)
            if isinstance(value, np.ndarray) and value.ndim == 1 and value.size == d + 1:
                return "updates"
        if message.receiver == observer and message.sender in holders:
            if isinstance(try_unpack(message.payload), pd.DataFrame):
                return "rows"
    return None


def read_updates(
    session: Session, observer: str, holders: Sequence[str], features: Sequence[str]
) -> dict[str, np.ndarray]:
    """Return, for each trust whose messages the observer could read, its patient's
    estimated features (design-matrix units), assuming the trust held one patient.

    Parameters
    ----------
    session : Session
        The rerun's session.
    observer : str
        The aggregator.
    holders : sequence of str
        The trusts, each holding one patient.
    features : sequence of str
        The task's features.
    """
    d = len(features)
    out: dict[str, np.ndarray] = {}
    for holder in holders:
        last_global = np.zeros(d + 1)
        deltas = []
        for message in session.transcript:
            if message.sender == observer and message.receiver == holder:
                value = try_unpack(message.payload)
                if _is_vector(value, d + 1):
                    last_global = np.asarray(value, dtype=np.float64)
                continue
            if message.sender != holder or message.receiver != observer:
                continue
            value = try_unpack(message.payload)
            if isinstance(value, pd.DataFrame) and all(
                (DERIVED_FEATURES[f][0] if f in DERIVED_FEATURES else f) in value.columns
                for f in features
            ):
                if len(value) == 1:
                    out[holder] = design_matrix(value, features)[0]
                    break
            elif isinstance(value, np.ndarray) and value.ndim == 2 and value.shape[0] == 1:
                if value.shape[1] in (d, d + 1) and np.issubdtype(value.dtype, np.floating):
                    out[holder] = np.asarray(value[0, :d], dtype=np.float64)
                    break
            elif _is_vector(value, d + 2) and value[-1] > 0:
                deltas.append(value[:-1] / value[-1] - last_global)
            elif _is_vector(value, d + 1):
                deltas.append(value - last_global)
        if holder not in out and deltas:
            # Each delta is about a_r [x, 1]: regress its feature part on its intercept
            # part through the origin, so rounds with a large step (the first ones, before
            # the L2 pull and noise matter) weigh most.
            stacked = np.array(deltas)
            scale = stacked[:, -1]
            if np.sum(scale**2) > 0:
                out[holder] = scale @ stacked[:, :-1] / np.sum(scale**2)
    return out


def _is_vector(value: Any, size: int) -> bool:
    return (
        isinstance(value, np.ndarray)
        and value.ndim == 1
        and value.size == size
        and np.issubdtype(value.dtype, np.floating)
        and bool(np.all(np.isfinite(value)))
    )


def _pick(
    party_data: dict[str, Any], holders: Sequence[str], task: Any, rng: np.random.Generator
) -> list[tuple[str, int]]:
    """One patient per trust, labels alternating so both classes occur."""
    picks = []
    for k, holder in enumerate(holders):
        y = labels(party_data[holder], task)
        want = np.flatnonzero(y == (k % 2 == 0))
        pool = want if want.size else np.arange(len(y))
        picks.append((holder, int(rng.choice(pool))))
    return picks


class _Prior:
    """The attacker's population knowledge: each feature's range, whether it is binary,
    and the best constant guess within the tolerance."""

    def __init__(self, population: np.ndarray, features: Sequence[str]) -> None:
        ranges = public_ranges()
        self.low = population.min(axis=0)
        self.high = population.max(axis=0)
        self.binary = np.all((population == 0) | (population == 1), axis=0)
        scaled = np.array([f in ranges or f in DERIVED_FEATURES for f in features])
        width = np.where(scaled, 1.0, np.maximum(self.high - self.low, 1e-12))
        self.tolerance = TOLERANCE * width
        self.guess = np.array(
            [_densest(population[:, j], self.tolerance[j]) for j in range(len(features))]
        )

    def tidy(self, estimate: np.ndarray) -> np.ndarray:
        """Clip to the population's range; round binary features."""
        out = np.clip(np.nan_to_num(estimate, nan=0.0), self.low, self.high)
        return np.where(self.binary, np.round(out), out)

    def hits(self, guess: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """Which features of ``guess`` are within the tolerance of ``truth``."""
        return np.where(
            self.binary, guess == truth, np.abs(guess - truth) <= self.tolerance + 1e-12
        )


def _densest(values: np.ndarray, tolerance: float) -> float:
    """The value with the most ``values`` within ``tolerance`` of it."""
    ordered = np.sort(values)
    candidates = np.unique(ordered)
    counts = np.searchsorted(ordered, candidates + tolerance, side="right") - np.searchsorted(
        ordered, candidates - tolerance, side="left"
    )
    return float(candidates[int(np.argmax(counts))])
