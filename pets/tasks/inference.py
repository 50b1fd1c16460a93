"""``inference``: a supplier's model scores a provider's patients.

Ideal functionality: the provider learns the supplier's model score for each of its
patients (and what those scores reveal of the weights); the supplier learns nothing.
The supplier's model is fitted by the harness on the supplier's own development rows,
which then play no further part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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
from pets.tasks._columns import design_matrix, distinctive_values
from pets.tasks.train import fit_logistic, labels, model_params

__all__ = ["INFERENCE", "InferenceOutput"]


@dataclass(frozen=True)
class InferenceOutput:
    """Scores as the provider learns them.

    Parameters
    ----------
    scores : numpy.ndarray
        Predicted probability per provider row, in the provider's row order.
    """

    scores: np.ndarray


def _parse(
    raw: Mapping[str, Any], source: str, parties: Sequence[PartyRole], columns: Sequence[str]
) -> dict[str, Any]:
    table = CardTable(raw, source, "task")
    names = [p.name for p in parties]
    params = {
        "recipient": table.get("recipient", str, allowed=names),
        "supplier": table.get("supplier", str, allowed=names),
        "threshold": table.get("threshold", float, 0.5),
        **model_params(table, columns),
    }
    if params["supplier"] == params["recipient"]:
        raise table.error("supplier", "must differ from the recipient (the provider)")
    if not 0 < params["threshold"] < 1:
        raise table.error("threshold", f"must be in (0, 1), got {params['threshold']}")
    table.check_unknown()
    return params


def _build(params: Mapping[str, Any], parties: Sequence[PartyRole], data: ScenarioData) -> Problem:
    task = Task(
        kind="inference",
        scenario="",
        parties=tuple(parties),
        recipient=params["recipient"],
        params=freeze(params),
        public=freeze({"features": list(params["features"])}),
    )
    supplier, provider = params["supplier"], params["recipient"]
    development = data.partitions[supplier]
    model = fit_logistic(
        design_matrix(development, params["features"]), labels(development, task), task
    )
    patients = data.partitions[provider].reset_index(drop=True)
    sensitive = {
        provider: distinctive_values(patients, list(patients.columns), data.rng),
        supplier: {"coef": np.asarray(model.coef, dtype=np.float64)},
    }
    return Problem(
        task=task,
        party_data={provider: patients, supplier: model},
        sensitive=sensitive,
    )


def _reference(problem: Problem) -> InferenceOutput:
    task = problem.task
    model = problem.party_data[task.params["supplier"]]
    patients = problem.party_data[task.recipient]
    return InferenceOutput(model.predict_proba(design_matrix(patients, task.params["features"])))


def _score(output: InferenceOutput, reference: InferenceOutput, problem: Problem) -> Accuracy:
    got = np.asarray(output.scores, dtype=np.float64)
    truth = reference.scores
    if got.shape != truth.shape:
        raise ValueError(f"expected {truth.shape[0]} scores, got shape {got.shape}")
    err = np.abs(got - truth)
    t = problem.task.params["threshold"]
    metrics = {
        "decision_agreement": float(np.mean((got >= t) == (truth >= t))),
        "max_abs_score_error": float(err.max()) if err.size else 0.0,
        "mean_abs_score_error": float(err.mean()) if err.size else 0.0,
        "patients": float(truth.size),
    }
    return Accuracy(metrics=metrics, primary="decision_agreement", higher_is_better=True)


INFERENCE = TaskKind(
    name="inference",
    output_type=InferenceOutput,
    parse_params=_parse,
    build=_build,
    reference=_reference,
    score=_score,
    description="a supplier's logistic model scores a provider's patients",
)
