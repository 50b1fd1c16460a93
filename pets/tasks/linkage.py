"""``linkage``: records two parties hold in common, and statistics over them.

Ideal functionality: each party applies the public eligibility criteria to its own rows;
the recipient learns the identifiers in both eligible sets (or, in cardinality mode,
only how many there are) and the requested statistics over the matched patients;
nothing about anyone else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pets.expressions import select_rows
from pets.tasks._base import (
    Accuracy,
    CardError,
    CardTable,
    PartyRole,
    Problem,
    ScenarioData,
    Task,
    TaskKind,
    freeze,
)

__all__ = [
    "LINKAGE",
    "REVEAL_MODES",
    "LinkageOutput",
    "candidate_identifiers",
    "eligible",
    "link_statistics",
]

REVEAL_MODES = ("intersection", "cardinality")


@dataclass(frozen=True)
class LinkageOutput:
    """What the recipient learns from a linkage.

    Parameters
    ----------
    matches : frozenset of int or None
        Identifiers of the matched eligible patients; None in cardinality mode.
    cardinality : int
        Number of matched eligible patients.
    statistics : Mapping of str to float
        Requested statistics over the matched patients (``hba1c_mean``).
    """

    matches: frozenset[int] | None
    cardinality: int
    statistics: Mapping[str, float] = field(default_factory=dict)


def eligible(frame: pd.DataFrame, task: Task, party: str) -> pd.DataFrame:
    """Return the rows of ``party`` that meet its public eligibility criteria."""
    return select_rows(frame, task.params["criteria"].get(party, ""))


def link_statistics(
    frames: Mapping[str, pd.DataFrame],
    matches: np.ndarray,
    task: Task,
    *,
    party: str | None = None,
) -> dict[str, float]:
    """Compute the requested statistics over the matched identifiers.

    Parameters
    ----------
    frames : Mapping
        Party name to the rows it holds (only parties named by a statistic are read).
    matches : numpy.ndarray
        Matched identifiers.
    task : Task
        The linkage task.
    party : str, optional
        Compute only the statistics over this party's columns.
    """
    id_column = task.params["id_column"]
    out: dict[str, float] = {}
    for stat in task.params["statistics"]:
        if party is not None and stat["party"] != party:
            continue
        frame = frames[stat["party"]]
        values = frame.loc[frame[id_column].isin(matches), stat["column"]].to_numpy(float)
        name = f"{stat['column']}_{stat['stat']}"
        if stat["stat"] == "mean":
            out[name] = float(values.mean()) if values.size else float("nan")
        else:
            out[name] = float(values.sum())
    return out


def candidate_identifiers(
    held: Sequence[np.ndarray], rng: np.random.Generator, *, decoys: int | None = None
) -> np.ndarray:
    """Return a region's list of valid NHS numbers: every number held, plus decoys.

    This is the dictionary an attacker who holds a region's registrations would try
    against pseudonymised identifiers. The decoys are fresh valid NHS numbers (mod-11
    check digit, same range as the cohort's) that nobody holds: people of the region on
    neither list, and the control of a dictionary attack.

    Parameters
    ----------
    held : sequence of numpy.ndarray
        The identifiers each party holds.
    rng : numpy.random.Generator
        Source of the decoys.
    decoys : int, optional
        How many decoys to add; as many as the distinct numbers held by default.

    Returns
    -------
    numpy.ndarray
        Sorted distinct int64 numbers (harness-only: never written out).
    """
    from pets.data import nhs_check_digit

    known = np.unique(np.concatenate([np.asarray(h, dtype=np.int64) for h in held]))
    want = known.size if decoys is None else int(decoys)
    fresh = np.zeros(0, dtype=np.int64)
    while fresh.size < want:
        first = rng.integers(400_000_000, 500_000_000, size=2 * (want - fresh.size) + 64)
        check = nhs_check_digit(first)
        numbers = (first * 10 + check)[check != 10]
        numbers = numbers[~np.isin(numbers, known)]
        fresh = np.unique(np.concatenate([fresh, numbers]))
    fresh = rng.choice(fresh, size=want, replace=False)
    return np.sort(np.concatenate([known, fresh]))


def _parse(
    raw: Mapping[str, Any], source: str, parties: Sequence[PartyRole], columns: Sequence[str]
) -> dict[str, Any]:
    table = CardTable(raw, source, "task")
    names = [p.name for p in parties]
    if len(names) != 2:
        raise CardError(source, "parties", "a linkage card needs exactly two parties")
    recipient = table.get("recipient", str, allowed=names)
    id_column = table.get("id_column", str, "nhs_number", allowed=columns)
    reveal = table.get("reveal", str, "intersection", allowed=REVEAL_MODES)
    criteria_table = table.table("criteria", {})
    criteria = {}
    for party in criteria_table.raw:
        if party not in names:
            raise criteria_table.error(party, f"is not a party; parties: {', '.join(names)}")
        criteria[party] = criteria_table.get_filter(party, columns)
    statistics = []
    for i, s in enumerate(table.get("statistics", list, [])):
        sub = CardTable(s, source, f"task.statistics[{i}]")
        statistics.append(
            {
                "party": sub.get("party", str, allowed=names),
                "column": sub.get("column", str, allowed=columns),
                "stat": sub.get("stat", str, allowed=("mean", "sum")),
            }
        )
        sub.check_unknown()
    table.check_unknown()
    return {
        "recipient": recipient,
        "id_column": id_column,
        "reveal": reveal,
        "criteria": criteria,
        "statistics": statistics,
    }


def _build(params: Mapping[str, Any], parties: Sequence[PartyRole], data: ScenarioData) -> Problem:
    task = Task(
        kind="linkage",
        scenario="",
        parties=tuple(parties),
        recipient=params["recipient"],
        params=freeze(params),
    )
    id_column = params["id_column"]
    party_data = {p.name: data.partitions[p.name].reset_index(drop=True) for p in parties}
    sensitive = {}
    names = [p.name for p in parties]
    for name in names:
        other = next(n for n in names if n != name)
        ids = party_data[name][id_column].to_numpy()
        private = ids[~np.isin(ids, party_data[other][id_column].to_numpy())]
        take = data.rng.choice(private.size, size=min(64, private.size), replace=False)
        sensitive[name] = {id_column: private[take]}
    evaluation = {}
    if id_column == "nhs_number":
        evaluation["dictionary"] = candidate_identifiers(
            [frame[id_column].to_numpy() for frame in party_data.values()], data.rng
        )
    return Problem(task=task, party_data=party_data, evaluation=evaluation, sensitive=sensitive)


def _reference(problem: Problem) -> LinkageOutput:
    task = problem.task
    id_column = task.params["id_column"]
    sets = [
        eligible(frame, task, name)[id_column].to_numpy()
        for name, frame in problem.party_data.items()
    ]
    matches = np.intersect1d(sets[0], sets[1])
    stats = link_statistics(problem.party_data, matches, task)
    ids = frozenset(int(x) for x in matches) if task.params["reveal"] == "intersection" else None
    return LinkageOutput(matches=ids, cardinality=int(matches.size), statistics=stats)


def _score(output: LinkageOutput, reference: LinkageOutput, problem: Problem) -> Accuracy:
    metrics: dict[str, float] = {
        "cardinality_error": float(abs(output.cardinality - reference.cardinality)),
        "true_cardinality": float(reference.cardinality),
    }
    truth = set() if reference.matches is None else set(reference.matches)
    if output.matches is not None and reference.matches is not None:
        found = set(output.matches)
        hits = len(found & truth)
        precision = hits / len(found) if found else float(not truth)
        recall = hits / len(truth) if truth else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        metrics.update(precision=precision, recall=recall, f1=f1)
    for name, true_value in reference.statistics.items():
        got = output.statistics.get(name, float("nan"))
        metrics[f"relative_error.{name}"] = abs(got - true_value) / max(abs(true_value), 1e-12)
    primary = "f1" if "f1" in metrics else "cardinality_error"
    return Accuracy(metrics=metrics, primary=primary, higher_is_better=primary == "f1")


LINKAGE = TaskKind(
    name="linkage",
    output_type=LinkageOutput,
    parse_params=_parse,
    build=_build,
    reference=_reference,
    score=_score,
    description="patients two parties hold in common that meet public criteria",
)
