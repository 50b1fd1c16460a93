"""Differential-privacy audit: a lower bound on epsilon (attacker model A3).

A worst-case auditor knows every record but the target's and checks the backend's
(epsilon, delta) claim by experiment. It runs the mechanism many times on two
neighbouring inputs, D0 and D1 = D0 without the target (add-remove), reads a scalar
statistic of each output, and thresholds it. Every threshold test bounds the claim:
``TPR <= e^eps * FPR + delta``, so

    eps_lower = ln((TPR_low - delta) / FPR_high)

with ``TPR_low`` and ``FPR_high`` one-sided Clopper-Pearson bounds at ``alpha / 2`` each
(confidence ``1 - alpha`` for the pair), and the same with the two worlds' roles
swapped. The search over statistics, thresholds and directions is paid for by a split
(as in jax_privacy's ``Split`` strategy): the test is chosen on half of the runs of each
world and bounded on the other half, so the bound is valid whatever the search tried.
With ``m`` held-out runs per world, even a perfect test bounds epsilon by
``epsilon_cap = ln(lower(m/m) / upper(0/m))`` (about 3.7 for m = 150): a claim above
the cap cannot be contradicted with this many runs.

To keep runs cheap the audit works on a small sub-problem: a target patient, every row
of the target's cell (aggregate) and a few other rows per data holder; DP holds for
every input, so a small one is a valid audit input. The statistic is read off what the
recipient learns:

- ``aggregate``: the target's cell. The target moves the count ``n`` by one and each
  clamped sum (``n × mean``) by its own value. Each such coordinate, standardised so
  that D1's true value maps to 0 and D0's to 1, is a candidate statistic, and so is
  their average (it pools the independent noise of the coordinates).
- ``query``: a one-query workload: a count the target falls in (the card's first count
  query whose filter the target satisfies, else a count of every row). A backend that
  shares its budget across the workload (``opendp`` without ``query_epsilon``) spends
  all of it on that query; the claim is for the whole run whatever the workload, so the
  audited claim is unchanged.

Train and release tasks (a model, a synthetic table) need a different statistic (a
membership score of the target); the audit says it was not run there. A backend whose
reruns are too slow for the mode's budget (MPC parties are real processes, seconds per
run) is measured on one pair of runs and then skipped with a note.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from pets.leakage._base import AttackContext, AttackResult
from pets.leakage.rates import clopper_pearson
from pets.tasks import answer_query, freeze, local_aggregate, public_ranges, select_rows

__all__ = ["ALPHA", "DIRECTIONS", "Audit", "attack", "audit_scores", "epsilon_cap"]

ATTACKER = "A3"
ATTACK = "dp_audit"

#: One minus the confidence of the bound (each one-sided Clopper-Pearson end holds alpha/2).
ALPHA = 0.05

#: Fewest runs per world worth an audit: 25 held out bound epsilon by at most 1.8.
MIN_TRIALS = 50

#: Rows kept per data holder besides the target's cell (aggregate) or in all (query).
ROWS_PER_HOLDER = 100
QUERY_ROWS = 200

#: The four threshold tests: (side of the threshold, world it says); the last three
#: are the first with the worlds' roles or the side swapped.
DIRECTIONS = ("above says D0", "below says D1", "above says D1", "below says D0")

#: Task kinds the audit has a statistic for.
AUDITED_KINDS = ("aggregate", "query")


@dataclass(frozen=True)
class Audit:
    """The bound one audit found.

    Attributes
    ----------
    epsilon_lower : float
        Lower bound on epsilon at confidence ``1 - alpha`` (0 when no evidence).
    epsilon_cap : float
        The bound a perfect test would give with the held-out runs.
    statistic : int
        Column of the chosen candidate statistic.
    threshold : float
        Threshold of the chosen test (on the standardised scale).
    direction : str
        The chosen test, one of :data:`DIRECTIONS`: which side of the threshold is
        taken as evidence of which world (``"above says D0"``: a score at or above the
        threshold says D0, so its rate on D0 runs is the TPR and on D1 runs the FPR).
    tpr_low, fpr_high : float
        Clopper-Pearson bounds of the chosen test on the held-out runs.
    held_out : int
        Held-out runs per world.
    """

    epsilon_lower: float
    epsilon_cap: float
    statistic: int
    threshold: float
    direction: str
    tpr_low: float
    fpr_high: float
    held_out: int


def epsilon_cap(positives: int, negatives: int, delta: float = 0.0, alpha: float = ALPHA) -> float:
    """Return the largest epsilon bound a perfect test could show: every positive run
    detected, no negative run mistaken, bounded as in :func:`audit_scores`."""
    tpr_low = clopper_pearson(positives, positives, alpha)[0]
    fpr_high = clopper_pearson(0, negatives, alpha)[1]
    return _log_ratio(tpr_low, fpr_high, delta)


def audit_scores(
    scores_d0: np.ndarray, scores_d1: np.ndarray, *, delta: float = 0.0, alpha: float = ALPHA
) -> Audit:
    """Lower-bound epsilon from statistics of runs on D0 and on D1.

    Parameters
    ----------
    scores_d0, scores_d1 : ndarray
        ``(runs, statistics)`` (or ``(runs,)``) candidate statistics of each run in
        each world, in either orientation (every test is tried both ways). NaN (a
        withheld cell, a refused query) counts as lowest.
    delta : float
        The claim's delta.
    alpha : float
        One minus the confidence.

    Returns
    -------
    Audit
        Runs of even position choose the statistic, threshold and direction; runs of
        odd position bound the chosen test.
    """
    a = _as_matrix(scores_d0)
    b = _as_matrix(scores_d1)
    if a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError("need two or more runs per world and the same statistics in both")
    choose_a, held_a = a[0::2], a[1::2]
    choose_b, held_b = b[0::2], b[1::2]
    best = (-math.inf, 0, math.inf, DIRECTIONS[0])
    for column in range(a.shape[1]):
        for direction in DIRECTIONS:
            eps, threshold = _best_threshold(
                choose_a[:, column], choose_b[:, column], direction, delta, alpha
            )
            if eps > best[0]:
                best = (eps, column, threshold, direction)
    _, column, threshold, direction = best
    side, world = direction.split(" says ")
    hit_a, hit_b = held_a[:, column] >= threshold, held_b[:, column] >= threshold
    if side == "below":
        hit_a, hit_b = ~hit_a, ~hit_b
    positives, negatives = (hit_a, hit_b) if world == "D0" else (hit_b, hit_a)
    tpr_low = clopper_pearson(int(positives.sum()), len(positives), alpha)[0]
    fpr_high = clopper_pearson(int(negatives.sum()), len(negatives), alpha)[1]
    held = min(len(held_a), len(held_b))
    return Audit(
        epsilon_lower=max(0.0, _log_ratio(tpr_low, fpr_high, delta)),
        epsilon_cap=max(0.0, epsilon_cap(len(positives), len(negatives), delta, alpha)),
        statistic=column,
        threshold=float(threshold),
        direction=direction,
        tpr_low=tpr_low,
        fpr_high=fpr_high,
        held_out=held,
    )


def _as_matrix(scores: np.ndarray) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    x = x.reshape(len(x), -1)
    return np.where(np.isnan(x), -np.inf, x)


def _log_ratio(tpr_low: float, fpr_high: float, delta: float) -> float:
    if tpr_low <= delta or fpr_high <= 0:
        return -math.inf
    return math.log((tpr_low - delta) / fpr_high)


def _best_threshold(
    a: np.ndarray, b: np.ndarray, direction: str, delta: float, alpha: float
) -> tuple[float, float]:
    """The threshold whose Clopper-Pearson bound on these runs is largest."""
    from scipy.stats import beta

    pooled = np.unique(np.concatenate([a, b]))
    thresholds = pooled[np.isfinite(pooled)]
    if not len(thresholds):
        return -math.inf, math.inf
    a_sorted, b_sorted = np.sort(a), np.sort(b)
    # runs at or above each threshold
    above_a = len(a) - np.searchsorted(a_sorted, thresholds, side="left")
    above_b = len(b) - np.searchsorted(b_sorted, thresholds, side="left")
    side, world = direction.split(" says ")
    if side == "below":
        above_a, above_b = len(a) - above_a, len(b) - above_b
    if world == "D0":
        hits, n_pos, false, n_neg = above_a, len(a), above_b, len(b)
    else:
        hits, n_pos, false, n_neg = above_b, len(b), above_a, len(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(hits > 0, beta.ppf(alpha / 2, hits, n_pos - hits + 1), 0.0)
        high = np.where(false < n_neg, beta.ppf(1 - alpha / 2, false + 1, n_neg - false), 1.0)
        eps = np.where(low > delta, np.log(np.maximum(low - delta, 1e-300) / high), -np.inf)
    i = int(np.argmax(eps))
    return float(eps[i]), float(thresholds[i])


# -- the attack ---------------------------------------------------------------------------


def attack(context: AttackContext) -> list[AttackResult]:
    """Audit the backend's epsilon claim on neighbouring inputs (A3)."""
    claim = context.claim
    if claim.epsilon is None or not context.applies(ATTACKER):
        return []
    task = context.problem.task
    if task.kind not in AUDITED_KINDS:
        return [
            _skipped(
                context,
                f"audit not built for {task.kind} tasks yet: auditing a model or a synthetic "
                "table needs a statistic of the target's influence on it (a membership "
                "score), not a threshold on a published figure",
            )
        ]
    if context.rerun is None:
        return [_skipped(context, "no rerun oracle: the audit runs the mechanism many times")]
    if claim.neighbouring not in (None, "add-remove"):
        return [
            _skipped(
                context,
                f"the claim is for {claim.neighbouring} neighbours; the audit removes one "
                "patient (add-remove)",
            )
        ]
    if task.kind == "aggregate":
        setup = _aggregate_setup(context)
    else:
        setup = _query_setup(context)
    if isinstance(setup, str):
        return [_skipped(context, setup)]
    return [_run_audit(context, setup)]


@dataclass
class _Setup:
    """Neighbouring problems and how to read the statistics off an output."""

    d0: Any
    d1: Any
    read: Any  # output -> ndarray of standardised coordinates
    names: list[str]
    extra: dict[str, Any]


def _skipped(context: AttackContext, note: str, cost_s: float = 0.0, **extra: Any) -> AttackResult:
    return AttackResult(
        attack=ATTACK,
        attacker=ATTACKER,
        observer=context.problem.task.recipient,
        cost_s=cost_s,
        note=note,
        extra={"skipped": True, "epsilon_claimed": float(context.claim.epsilon), **extra},
    )


def _candidates(coordinates: np.ndarray) -> np.ndarray:
    """Each standardised coordinate, plus their average when there are several."""
    if len(coordinates) < 2:
        return coordinates
    return np.append(coordinates, coordinates.mean())


def _run_audit(context: AttackContext, setup: _Setup) -> AttackResult:
    start = time.perf_counter()
    effort, budget = context.effort, context.effort.audit_seconds
    wanted = max(2, effort.audit_trials)
    runs: dict[str, list[np.ndarray]] = {"d0": [], "d1": []}
    per_run = math.inf
    stopped_early = False
    while len(runs["d1"]) < wanted:
        for world in ("d0", "d1"):
            run_start = time.perf_counter()
            output, _ = context.run_again(getattr(setup, world))
            runs[world].append(_candidates(setup.read(output)))
            per_run = min(per_run, time.perf_counter() - run_start)
        done = len(runs["d1"])
        affordable = wanted if per_run <= 0 or math.isinf(budget) else int(budget // (2 * per_run))
        if done == 1 and affordable < min(MIN_TRIALS, wanted):
            return _skipped(
                context,
                f"one rerun takes {per_run:.2f} s: the audit needs at least {MIN_TRIALS} runs "
                f"on each of two inputs, more than the {context.mode} budget of {budget:.0f} s "
                "allows (run with leakage=full for a bounded audit)",
                seconds_per_run=round(per_run, 3),
                cost_s=time.perf_counter() - start,
            )
        if time.perf_counter() - start + 2 * per_run > budget and done < wanted:
            stopped_early = True
            break
    trials = len(runs["d1"])
    delta = float(context.claim.delta or 0.0)
    found = audit_scores(np.array(runs["d0"]), np.array(runs["d1"]), delta=delta)
    names = setup.names + (["mean_standardised"] if len(setup.names) > 1 else [])
    claimed = float(context.claim.epsilon)
    notes = []
    if stopped_early:
        notes.append(f"stopped at {trials} of {wanted} runs per world (budget {budget:.0f} s)")
    if found.epsilon_cap <= claimed:
        notes.append(
            f"with {found.held_out} held-out runs per world no test can show more than "
            f"epsilon {found.epsilon_cap:.2f}: this audit cannot contradict the claim, only "
            "show leakage up to that level"
        )
    return AttackResult(
        attack=ATTACK,
        attacker=ATTACKER,
        observer=context.problem.task.recipient,
        trials=trials,
        cost_s=time.perf_counter() - start,
        note="; ".join(notes),
        extra={
            "epsilon_lower": found.epsilon_lower,
            "epsilon_claimed": claimed,
            "delta_claimed": delta,
            "claim_contradicted": bool(found.epsilon_lower > claimed),
            "epsilon_cap": found.epsilon_cap,
            "confidence": 1.0 - ALPHA,
            "trials_per_world": trials,
            "held_out_per_world": found.held_out,
            "threshold_search": "split: chosen on even runs, bounded on odd runs",
            "statistic": names[found.statistic],
            "statistics_tried": names,
            "direction": found.direction,
            "tpr_low": found.tpr_low,
            "fpr_high": found.fpr_high,
            "stopped_early": stopped_early,
            "seconds_per_run": round(per_run, 4),
            "observation": "the recipient's output of many runs on D0 and on D0 without the target",
            **setup.extra,
        },
    )


# -- aggregate ------------------------------------------------------------------------------


def _clamp(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    ranges = public_ranges()
    return frame.assign(
        **{
            c: frame[c].astype(np.float64).clip(*ranges[c])
            if c in ranges
            else frame[c].astype(np.float64)
            for c in columns
        }
    )


def _aggregate_setup(context: AttackContext) -> _Setup | str:
    problem, rng = context.problem, context.rng
    task = problem.task
    holders = [
        n
        for n in task.parties_with_role("data_holder")
        if isinstance(problem.party_data.get(n), pd.DataFrame) and len(problem.party_data[n])
    ]
    if not holders:
        return "no data holder holds rows"
    group_by = list(task.params["group_by"])
    columns = sorted({m["column"] for m in task.params["measures"]})
    ranges = public_ranges()
    # the target: the largest share of each measured column's public bound (what the
    # target moves, relative to what the noise must cover), in a populous cell (whose
    # noisy figures are least distorted by clipping at zero and at the bounds)
    pooled = pd.concat(
        [
            _clamp(problem.party_data[n], columns)[[*group_by, *columns]].assign(
                _party=n, _row=np.arange(len(problem.party_data[n]))
            )
            for n in holders
        ],
        ignore_index=True,
    )
    share = np.zeros(len(pooled))
    for c in columns:
        bound = max(abs(v) for v in ranges[c]) if c in ranges else 1.0
        share += np.abs(pooled[c].to_numpy()) / (bound or 1.0)
    sizes = pooled.groupby(group_by, observed=True)[group_by[0]].transform("size").to_numpy()
    eligible = np.flatnonzero(sizes >= sizes.max() / 2)
    best = share[eligible].max()
    pick = int(rng.choice(eligible[share[eligible] == best]))
    party, row = str(pooled["_party"].iat[pick]), int(pooled["_row"].iat[pick])
    cell = tuple(pooled[group_by].iloc[pick])
    if len(group_by) == 1:
        cell = cell[0]  # a one-column index holds scalars, not 1-tuples

    def rows_in_cell(frame: pd.DataFrame) -> np.ndarray:
        mask = np.ones(len(frame), bool)
        for column, value in zip(group_by, cell, strict=True):
            mask &= (frame[column] == value).to_numpy()
        return np.flatnonzero(mask)

    in_cell = {n: rows_in_cell(problem.party_data[n]) for n in holders}
    d0_data = dict(problem.party_data)
    for n in holders:
        frame = problem.party_data[n]
        others = np.setdiff1d(np.arange(len(frame)), in_cell[n])
        extra = rng.choice(others, min(ROWS_PER_HOLDER, len(others)), replace=False)
        keep = np.sort(np.concatenate([in_cell[n], extra]))
        if n == party:
            keep = np.concatenate([[row], keep[keep != row]])  # the target first
        d0_data[n] = frame.iloc[keep].reset_index(drop=True)
    d1_data = dict(d0_data)
    d1_data[party] = d0_data[party].iloc[1:].reset_index(drop=True)

    def truth(data: dict[str, Any]) -> pd.Series:
        total = sum(local_aggregate(_clamp(data[n], columns), task) for n in holders)
        return total.loc[cell]

    t0, t1 = truth(d0_data), truth(d1_data)
    coords = [c for c in t0.index if abs(t0[c] - t1[c]) > 1e-12]
    if not coords:
        return "the target moves no published figure"
    v1 = t1[coords].to_numpy()
    shift = t0[coords].to_numpy() - v1
    stats = {m["column"]: m["stat"] for m in task.params["measures"]}

    def read(output: Any) -> np.ndarray:
        table = getattr(output, "table", None)
        if table is None or cell not in table.index:
            return np.full(len(coords), np.nan)
        row_out = table.loc[cell]
        values = []
        for name in coords:
            if name == "n":
                values.append(row_out["n"])
                continue
            column = name.removesuffix("_sum")
            stat = stats.get(column, "sum")
            if stat == "mean":
                values.append(row_out["n"] * row_out[f"{column}_mean"])
            else:
                values.append(row_out[f"{column}_{stat}"])
        return (np.asarray(values, dtype=np.float64) - v1) / shift

    return _Setup(
        d0=replace(problem, party_data=d0_data),
        d1=replace(problem, party_data=d1_data),
        read=read,
        names=list(coords),
        extra={"rows_d0": int(sum(len(d0_data[n]) for n in holders))},
    )


# -- query ----------------------------------------------------------------------------------


def _query_setup(context: AttackContext) -> _Setup | str:
    problem, rng = context.problem, context.rng
    task = problem.task
    frames = [(n, f) for n, f in problem.party_data.items() if isinstance(f, pd.DataFrame)]
    if len(frames) != 1 or not len(frames[0][1]):
        return "the query audit needs one custodian holding rows"
    custodian, frame = frames[0]
    query: dict[str, Any] = {"id": "audit_count", "kind": "count", "filter": ""}
    members = np.arange(len(frame))
    for q in task.params["queries"]:
        if q["kind"] == "count" and q.get("filter"):
            kept = select_rows(frame.reset_index(drop=True), q["filter"])
            hit = kept.index.to_numpy()
            if len(hit):
                query = {"id": "audit_count", "kind": "count", "filter": q["filter"]}
                members = hit
                break
    target = int(rng.choice(members))
    others = np.setdiff1d(np.arange(len(frame)), [target])
    keep = rng.choice(others, min(QUERY_ROWS - 1, len(others)), replace=False)
    d0_frame = frame.iloc[np.concatenate([[target], np.sort(keep)])].reset_index(drop=True)
    d1_frame = d0_frame.iloc[1:].reset_index(drop=True)
    v0 = float(answer_query(d0_frame, query))
    v1 = float(answer_query(d1_frame, query))
    variant = replace(task, params=freeze({**task.params, "queries": [query]}))

    def read(output: Any) -> np.ndarray:
        answers = getattr(output, "answers", ())
        value = answers[0] if answers else None
        if value is None or np.ndim(value) != 0:
            return np.array([np.nan])
        return np.array([(float(value) - v1) / (v0 - v1)])

    return _Setup(
        d0=replace(problem, task=variant, party_data={**problem.party_data, custodian: d0_frame}),
        d1=replace(problem, task=variant, party_data={**problem.party_data, custodian: d1_frame}),
        read=read,
        names=["count"],
        extra={
            "rows_d0": len(d0_frame),
            "workload_queries": 1,
            "query_filtered": bool(query["filter"]),
        },
    )
