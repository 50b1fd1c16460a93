"""Audit designs for trained models and synthetic tables: one canary per run.

One canary serves the whole audit (drawn once from the audit's generator), so a
deterministic mechanism that memorises is separated perfectly.

- ``train`` (``fedavg-dp``, ``diffprivlib``): the canary is a real patient of a data
  holder with the label flipped, chosen among those the cell's own released model is
  surest about (a mislabelled record pulls a model hardest: the canary audit of DP
  training, Jagielski et al. 2020). Each run flips a coin: the holder's real rows with the
  patient replaced by the canary, and the real rows without the patient. The score is
  the released model's log-likelihood of the canary's flipped label.
- ``release`` (``synth-dp``): the canary is a real patient whose released columns are
  set to a combination absent from the real table (each column's rarest category).
  The score is the number of released rows equal to the canary on every discretised
  column, and on all but one (near-copies).

Each run is a whole training or synthesis, so these audits make few runs and their
bound is capped low (:func:`~pets.leakage.dp_audit.bounds.epsilon_cap`): they catch a
mechanism that memorises, not a small miscalibration.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from pets.leakage.dp_audit.tables import Design, Trial, custodian_rows
from pets.tasks import design_matrix, labels
from pets.tasks.release import discretise

__all__ = ["CONFIDENT", "release_design", "train_design"]

#: The canary is drawn among this many of the patients the released model is surest of.
CONFIDENT = 50


def train_design(problem: Any, model: Any = None) -> Design | str:
    """Flipped-label canaries in the largest data holder's rows."""
    task = problem.task
    holders = [
        n
        for n in task.parties_with_role("data_holder")
        if isinstance(problem.party_data.get(n), pd.DataFrame)
    ]
    if not holders:
        return "no data holder holds rows"
    holder = max(holders, key=lambda n: len(problem.party_data[n]))
    frame = problem.party_data[holder].reset_index(drop=True)
    features = list(task.params["features"])
    target = task.params["target"]
    x = design_matrix(frame, features)
    y = labels(frame, task)
    if model is not None and hasattr(model, "predict_proba"):
        sure = np.abs(np.asarray(model.predict_proba(x), float) - 0.5)
    else:
        sure = np.zeros(len(frame))
    candidates = np.argsort(-sure, kind="stable")[: min(CONFIDENT, len(frame))]
    chosen: list[int] = []

    def draw(rng: np.random.Generator, index: int) -> Trial:
        if not chosen:  # one canary for the whole audit, drawn from the audit's generator
            chosen.append(int(rng.choice(candidates)))
        row = chosen[0]
        coin = bool(rng.random() < 0.5)
        flipped = 1.0 - y[row]
        data = frame.copy()
        if coin:
            data.loc[row, target] = np.asarray(flipped).astype(frame[target].dtype).item()
        else:
            data = data.drop(index=row).reset_index(drop=True)
        x_canary = x[[row]]

        def score(output: Any) -> np.ndarray:
            if not hasattr(output, "predict_proba"):
                return np.array([[np.nan]])
            p = float(np.clip(np.asarray(output.predict_proba(x_canary), float)[0], 1e-12, 1))
            p = p if flipped == 1.0 else 1.0 - p
            return np.array([[np.log(max(p, 1e-300))]])

        return Trial(
            replace(problem, party_data={**problem.party_data, holder: data}),
            np.array([coin]),
            score,
        )

    return Design(
        draw=draw,
        statistics=["canary_log_likelihood"],
        canaries_per_run=1,
        midpoint=None,
        extra={"canary_choice": "a real patient with the label flipped, kept in by a coin"},
    )


def release_design(problem: Any) -> Design | str:
    """A canary with every released column at its rarest category."""
    task = problem.task
    held = custodian_rows(problem, "release")
    if isinstance(held, str):
        return held
    custodian, frame = held
    columns = list(task.params["columns"])
    bins = int(task.params["bins"])
    coded = pd.DataFrame({c: discretise(frame[c], c, bins) for c in columns})
    rarest = {}
    for c in columns:
        counts = coded[c].value_counts()
        value = counts.index[-1]
        rarest[c] = frame[c][coded[c] == value].iloc[0]  # a real value in that category
    canary_code = np.array(
        [str(discretise(pd.Series([rarest[c]]), c, bins).iat[0]) for c in columns]
    )

    chosen: list[int] = []

    def draw(rng: np.random.Generator, index: int) -> Trial:
        if not chosen:  # one canary for the whole audit, drawn from the audit's generator
            chosen.append(int(rng.integers(len(frame))))
        row = chosen[0]
        coin = bool(rng.random() < 0.5)
        data = frame.copy()
        if coin:
            for c in columns:
                data.at[row, c] = rarest[c]
        else:
            data = data.drop(index=row).reset_index(drop=True)

        def score(output: Any) -> np.ndarray:
            table = getattr(output, "table", None)
            if table is None or not len(table) or any(c not in table.columns for c in columns):
                return np.array([[np.nan, np.nan]])
            released = np.column_stack(
                [discretise(table[c], c, bins).astype(str).to_numpy() for c in columns]
            )
            same = (released == canary_code).sum(axis=1)
            return np.array(
                [[float((same == len(columns)).sum()), float((same >= len(columns) - 1).sum())]]
            )

        return Trial(
            replace(problem, party_data={**problem.party_data, custodian: data}),
            np.array([coin]),
            score,
        )

    return Design(
        draw=draw,
        statistics=["exact_copies", "near_copies"],
        canaries_per_run=1,
        midpoint=0.5,
        extra={
            "canary_choice": "a real patient with every released column at its rarest "
            "category, kept in by a coin",
            "canary_in_real_table": int(
                (np.column_stack([coded[c].astype(str) for c in columns]) == canary_code)
                .all(axis=1)
                .sum()
            ),
        },
    )
