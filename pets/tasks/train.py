"""``train``: a model fitted across parties.

Ideal functionality: the recipient learns the logistic-regression model that would be
fitted on all data holders' rows pooled; nothing else. The harness scores the output
on a held-out test set no party holds, against that pooled model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pets.tasks._base import (
    Accuracy,
    CardTable,
    PartyRole,
    Problem,
    ScenarioData,
    Task,
    TaskKind,
    freeze,
)
from pets.tasks._columns import DERIVED_FEATURES, design_matrix, distinctive_values

__all__ = ["TRAIN", "LogisticModel", "fit_logistic", "labels", "model_params"]


@dataclass(frozen=True)
class LogisticModel:
    """A logistic-regression model over publicly encoded features.

    Parameters
    ----------
    coef : numpy.ndarray
        One weight per feature, in the order of ``features``.
    intercept : float
        The bias term.
    features : tuple of str
        Feature names, encoded by :func:`pets.tasks.design_matrix`.
    """

    coef: np.ndarray
    intercept: float
    features: tuple[str, ...]

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Return the linear score ``x @ coef + intercept``."""
        return np.asarray(x, dtype=np.float64) @ np.asarray(self.coef, float) + self.intercept

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Return the probability of the positive class for each row of ``x``."""
        return 1.0 / (1.0 + np.exp(-self.decision_function(x)))


def labels(frame: pd.DataFrame, task: Task) -> np.ndarray:
    """Return the 0/1 target of ``frame`` as float64."""
    return frame[task.params["target"]].to_numpy(dtype=np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, task: Task) -> LogisticModel:
    """Fit the task's logistic regression (L2, strength ``C``) on ``x``, ``y``.

    Every backend that trains in the clear uses this, so pooled plaintext training is
    the same computation as the reference.
    """
    from sklearn.linear_model import LogisticRegression  # scoring and training only

    model = LogisticRegression(C=task.params["C"], max_iter=task.params["max_iter"], tol=1e-8)
    model.fit(x, y)
    return LogisticModel(
        coef=model.coef_[0].astype(np.float64),
        intercept=float(model.intercept_[0]),
        features=tuple(task.params["features"]),
    )


def model_params(table: CardTable, columns: Sequence[str]) -> dict[str, Any]:
    """Read the logistic-model fields a card's ``[task]`` shares across kinds:
    ``target``, ``features``, ``C`` (L2 strength) and ``max_iter``."""
    params = {
        "target": table.get("target", str, allowed=columns),
        "features": table.get("features", list, allowed=list(columns) + list(DERIVED_FEATURES)),
        "C": table.get("C", float, 1.0),
        "max_iter": table.get("max_iter", int, 1000),
    }
    if not params["features"]:
        raise table.error("features", "needs at least one feature")
    if params["C"] <= 0:
        raise table.error("C", f"must be > 0, got {params['C']}")
    return params


def _parse(
    raw: Mapping[str, Any], source: str, parties: Sequence[PartyRole], columns: Sequence[str]
) -> dict[str, Any]:
    table = CardTable(raw, source, "task")
    params = {
        "recipient": table.get("recipient", str, allowed=[p.name for p in parties]),
        "model": table.get("model", str, "logistic", allowed=("logistic",)),
        **model_params(table, columns),
    }
    table.check_unknown()
    return params


def _build(params: Mapping[str, Any], parties: Sequence[PartyRole], data: ScenarioData) -> Problem:
    if data.holdout is None or len(data.holdout) == 0:
        raise ValueError("a train task needs held-out test rows: set data.holdout > 0")
    task = Task(
        kind="train",
        scenario="",
        parties=tuple(parties),
        recipient=params["recipient"],
        params=freeze(params),
        public=freeze({"features": list(params["features"])}),
    )
    needed = _needed_columns(params)
    party_data = {
        name: frame[needed].reset_index(drop=True) for name, frame in data.partitions.items()
    }
    sensitive = {
        name: distinctive_values(frame, needed, data.rng) for name, frame in party_data.items()
    }
    test = data.holdout
    return Problem(
        task=task,
        party_data=party_data,
        evaluation={
            "x_test": design_matrix(test, params["features"]),
            "y_test": labels(test, task),
        },
        sensitive=sensitive,
    )


def _needed_columns(params: Mapping[str, Any]) -> list[str]:
    cols = []
    for f in params["features"]:
        col = DERIVED_FEATURES[f][0] if f in DERIVED_FEATURES else f
        if col not in cols:
            cols.append(col)
    return [*cols, params["target"]]


def _reference(problem: Problem) -> LogisticModel:
    task = problem.task
    pooled = pd.concat(list(problem.party_data.values()), ignore_index=True)
    return fit_logistic(design_matrix(pooled, task.params["features"]), labels(pooled, task), task)


def _score(output: LogisticModel, reference: LogisticModel, problem: Problem) -> Accuracy:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    x, y = problem.evaluation["x_test"], problem.evaluation["y_test"]
    if tuple(output.features) != tuple(reference.features):
        raise ValueError(
            f"model features {output.features} differ from the task's {reference.features}"
        )
    p = output.predict_proba(x)
    p_ref = reference.predict_proba(x)
    auc, auc_ref = roc_auc_score(y, p), roc_auc_score(y, p_ref)
    brier, brier_ref = brier_score_loss(y, p), brier_score_loss(y, p_ref)
    metrics = {
        "auc": float(auc),
        "auc_pooled": float(auc_ref),
        "auc_shortfall": float(auc_ref - auc),
        "brier": float(brier),
        "brier_excess": float(brier - brier_ref),
        "max_coef_difference": float(np.max(np.abs(output.coef - reference.coef))),
        "test_rows": float(len(y)),
    }
    return Accuracy(metrics=metrics, primary="auc_shortfall", higher_is_better=False)


TRAIN = TaskKind(
    name="train",
    output_type=LogisticModel,
    parse_params=_parse,
    build=_build,
    reference=_reference,
    score=_score,
    description="a logistic model fitted across data holders, scored on held-out patients",
)
