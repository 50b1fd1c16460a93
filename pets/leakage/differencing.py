"""Differencing attacks on aggregates and query answers (attacker model A1).

Two published figures whose populations differ by one patient reveal that patient's
value, however large the figures are. The harness plays a motivated intruder who knows
which cell (or which query population) a target falls in from quasi-identifiers, and
observes two results that differ by the target:

- ``aggregate``: the published table, and the table published again after the target
  left (the rerun oracle runs the same backend on the data without the targets, one
  target per cell, so one rerun serves every target). The attacker reads the target's
  secret (a binary measure such as ``t2_diabetes``) off the difference of the cell's
  sums (``n × mean``).
- ``query``: the researcher asks pairs of counts, ``secret == 1`` among patients of the
  target's age and sex, with and without the target's postcode district, where the
  target is the only such patient. The difference is the target's secret.

Targets are balanced (half with the secret, half without), so guessing scores one half.
The control is the same attack on cells or query pairs that no patient left (a
non-member of the difference, whose secret is a fair coin): it measures what the
attacker's rule gets from noise alone. Withheld cells and refused queries leave the
attacker guessing.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from pets.leakage._base import (
    AttackContext,
    AttackResult,
    not_applicable,
    rate_result,
)
from pets.leakage.rates import balanced_coins, balanced_targets, control_share
from pets.tasks import freeze
from pets.tasks.query import parse_workload

__all__ = [
    "QUERY_QIS",
    "attack",
    "binary_measure",
    "cell_sums",
    "literal",
    "phantom_district",
    "unique_targets",
]

ATTACKER = "A1"


def attack(context: AttackContext) -> list[AttackResult]:
    """Run the differencing attack that fits the task kind."""
    kind = context.problem.task.kind
    if kind not in ("aggregate", "query") or not context.applies(ATTACKER):
        return []
    recipient = context.problem.task.recipient
    if context.rerun is None:
        return [
            not_applicable("differencing", ATTACKER, recipient, "no rerun oracle to publish again")
        ]
    if kind == "aggregate":
        return [_aggregate(context)]
    return [_query(context)]


def binary_measure(task: Any, frames: list[pd.DataFrame]) -> tuple[str, str] | None:
    """Return ``(column, stat)`` of the first measure over a 0/1 column, or None."""
    for measure in task.params["measures"]:
        column = measure["column"]
        values = pd.concat([f[column] for f in frames if column in f], ignore_index=True)
        if len(values) and set(np.unique(values.to_numpy())) <= {0, 1}:
            return column, measure["stat"]
    return None


def cell_sums(table: pd.DataFrame, column: str, stat: str) -> pd.Series:
    """Return the per-cell sum of ``column`` a recipient reads off a published table.

    Withheld cells are NaN.
    """
    if stat == "mean":
        return table["n"] * table[f"{column}_mean"]
    return table[f"{column}_{stat}"]


def _guess(difference: float, rng: np.random.Generator) -> int:
    """The attacker's rule: a difference of at least one half means the secret is 1."""
    if not np.isfinite(difference):
        return int(rng.integers(0, 2))  # withheld or refused: a guess
    return int(difference >= 0.5)


def _aggregate(context: AttackContext) -> AttackResult:
    start = time.perf_counter()
    problem, rng = context.problem, context.rng
    task = problem.task
    holders = [n for n in task.party_names if isinstance(problem.party_data.get(n), pd.DataFrame)]
    frames = [problem.party_data[n] for n in holders]
    found = binary_measure(task, frames)
    if found is None:
        return not_applicable(
            "differencing", ATTACKER, task.recipient, "no measure over a 0/1 column to recover"
        )
    column, stat = found
    group_by = list(task.params["group_by"])
    pooled = pd.concat(
        [
            pd.DataFrame(
                {
                    "party": name,
                    "row": np.arange(len(frame)),
                    "secret": frame[column].to_numpy(),
                    "cell": pd.MultiIndex.from_frame(frame[group_by]).to_flat_index(),
                }
            )
            for name, frame in zip(holders, frames, strict=True)
        ],
        ignore_index=True,
    )
    sizes = pooled["cell"].map(pooled["cell"].value_counts())
    # one target per cell, from cells of at least two patients, balanced by secret
    shuffled = pooled[sizes >= 2].sample(frac=1.0, random_state=rng.integers(2**31))
    one_per_cell = shuffled.groupby("cell", sort=False).head(1).reset_index(drop=True)
    picked = one_per_cell.iloc[
        balanced_targets(one_per_cell["secret"].to_numpy(), context.effort.targets, rng)
    ]
    if len(picked) < 2:
        return not_applicable(
            "differencing", ATTACKER, task.recipient, "too few cells hold two or more patients"
        )
    variant_data = dict(problem.party_data)
    for name, rows in picked.groupby("party")["row"]:
        frame = problem.party_data[name]
        variant_data[name] = frame.drop(index=frame.index[rows.to_numpy()]).reset_index(drop=True)
    second, _ = context.run_again(replace(problem, party_data=variant_data))
    before = cell_sums(context.output.table, column, stat)
    after = cell_sums(second.table, column, stat).reindex(before.index)
    difference = before - after

    hits = 0
    for cell, secret in zip(picked["cell"], picked["secret"], strict=True):
        hits += _guess(float(difference.get(cell, np.nan)), rng) == int(secret)
    untouched = [c for c in difference.index if c not in set(picked["cell"])]
    sizes_by_cell = pooled["cell"].value_counts()
    untouched = [c for c in untouched if sizes_by_cell.get(c, 0) >= 2]
    control_cells = rng.permutation(len(untouched))[: len(picked)]
    coins = balanced_coins(len(control_cells), rng)
    control_hits = sum(
        _guess(float(difference.get(untouched[i], np.nan)), rng) == int(coin)
        for i, coin in zip(control_cells, coins, strict=True)
    )
    withheld = int(np.isnan([difference.get(c, np.nan) for c in picked["cell"]]).sum())
    return rate_result(
        "differencing",
        ATTACKER,
        task.recipient,
        successes=int(hits),
        trials=len(picked),
        baseline=0.5,
        control=control_share(int(control_hits), len(control_cells)),
        cost_s=time.perf_counter() - start,
        secret=column,
        observation="two releases of the table, before and after one patient per cell left",
        control_trials=len(control_cells),
        target_cell_median_n=float(np.median(sizes_by_cell.reindex(picked["cell"]).to_numpy())),
        targets_withheld=withheld,
    )


#: Quasi-identifiers the intruder knows of a target in a query attack.
QUERY_QIS = ("age", "sex", "postcode_district")


def literal(value: Any) -> str:
    """Return ``value`` as a literal of a pandas query filter."""
    if isinstance(value, int | np.integer):
        return repr(int(value))
    return repr(str(value))


def phantom_district(
    age: Any, sex: Any, districts: Any, occupied: set, rng: np.random.Generator
) -> str | None:
    """Return a postcode district where nobody of ``age`` and ``sex`` lives, or None:
    the quasi-identifiers of a patient who is not in the data."""
    empty = [d for d in districts if (str(age), str(sex), d) not in occupied]
    return empty[int(rng.integers(len(empty)))] if empty else None


def unique_targets(
    frame: pd.DataFrame, secret: str, count: int, rng: np.random.Generator
) -> np.ndarray | str:
    """Return balanced target rows unique on :data:`QUERY_QIS`, or why there are none."""
    if secret not in frame or any(q not in frame for q in QUERY_QIS):
        return f"the data lacks the secret {secret!r} or a quasi-identifier of {QUERY_QIS}"
    unique = ~frame[list(QUERY_QIS)].astype(str).duplicated(keep=False).to_numpy()
    targets = balanced_targets(frame[secret].to_numpy(), count, rng, unique)
    if len(targets) < 4:
        return "too few patients are unique on age, sex and postcode district"
    return targets


def _query(context: AttackContext) -> AttackResult:
    start = time.perf_counter()
    problem, rng = context.problem, context.rng
    task = problem.task
    ((_, frame),) = problem.party_data.items()
    secret = "t2_diabetes"
    targets = unique_targets(frame, secret, context.effort.targets, rng)
    if isinstance(targets, str):
        return not_applicable("differencing", ATTACKER, task.recipient, targets)
    qis = frame[list(QUERY_QIS)].astype(str)
    occupied = set(map(tuple, qis.to_numpy()))
    districts = frame["postcode_district"].astype(str).unique()
    raw, pairs = [], []
    for i, row in enumerate(targets):
        age, sex, district = frame.iloc[row][list(QUERY_QIS)]
        population = f"{secret} == 1 and age == {literal(age)} and sex == {literal(sex)}"
        raw.append({"id": f"t{i}_all", "kind": "count", "filter": population})
        raw.append(
            {
                "id": f"t{i}_but",
                "kind": "count",
                "filter": f"{population} and postcode_district != {literal(district)}",
            }
        )
        pairs.append(("target", int(frame[secret].iat[row])))
    # control pairs: a district where nobody of that age and sex lives (a non-member)
    for i, row in enumerate(targets):
        age, sex = frame.iloc[row][["age", "sex"]]
        district = phantom_district(age, sex, districts, occupied, rng)
        if district is None:
            continue
        population = f"{secret} == 1 and age == {literal(age)} and sex == {literal(sex)}"
        raw.append({"id": f"c{i}_all", "kind": "count", "filter": population})
        raw.append(
            {
                "id": f"c{i}_but",
                "kind": "count",
                "filter": f"{population} and postcode_district != {literal(district)}",
            }
        )
        pairs.append(("control", -1))
    # non-members' secrets: balanced coins, so the control of an exact backend is one half
    coins = iter(balanced_coins(sum(role == "control" for role, _ in pairs), rng))
    pairs = [(role, next(coins) if role == "control" else truth) for role, truth in pairs]
    # interleave targets and controls so that a budget cut hits both alike
    order = _interleave(pairs)
    raw = [q for k in order for q in raw[2 * k : 2 * k + 2]]
    pairs = [pairs[k] for k in order]
    workload = parse_workload(raw, "attack workload", "differencing", list(frame.columns))
    variant = replace(task, params=freeze({**task.params, "queries": workload}))
    answers, _ = context.run_again(replace(problem, task=variant))
    hits = {"target": 0, "control": 0}
    trials = {"target": 0, "control": 0}
    refused = 0
    for k, (role, truth) in enumerate(pairs):
        first, second = answers.answers[2 * k], answers.answers[2 * k + 1]
        if first is None or second is None:
            refused += 1
            difference = float("nan")
        else:
            difference = float(first) - float(second)
        hits[role] += _guess(difference, rng) == truth
        trials[role] += 1
    return rate_result(
        "differencing",
        ATTACKER,
        task.recipient,
        successes=hits["target"],
        trials=trials["target"],
        baseline=0.5,
        control=control_share(hits["control"], trials["control"]),
        cost_s=time.perf_counter() - start,
        secret=secret,
        observation="pairs of counts whose populations differ by the target",
        control_trials=trials["control"],
        queries_asked=len(workload),
        pairs_refused=refused,
    )


def _interleave(pairs: list[tuple[str, int]]) -> list[int]:
    targets = [k for k, (role, _) in enumerate(pairs) if role == "target"]
    controls = [k for k, (role, _) in enumerate(pairs) if role == "control"]
    order: list[int] = []
    for i in range(max(len(targets), len(controls))):
        order += targets[i : i + 1] + controls[i : i + 1]
    return order
