"""Task kinds: the ideal functionalities, their output types and accuracy metrics.

:data:`TASK_KINDS` maps each kind's name to its :class:`TaskKind`; it is read-only.
"""

from types import MappingProxyType

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
from pets.tasks._columns import DERIVED_FEATURES, design_matrix, public_ranges
from pets.tasks.aggregate import (
    AGGREGATE,
    AggregateOutput,
    cell_grid,
    finish_means,
    local_aggregate,
    sums_from_vector,
)
from pets.tasks.inference import INFERENCE, InferenceOutput
from pets.tasks.linkage import LINKAGE, LinkageOutput, eligible, link_statistics
from pets.tasks.query import (
    QUERY,
    QueryOutput,
    answer_query,
    answers_from_wire,
    answers_to_wire,
    withheld_reasons,
)
from pets.tasks.release import RELEASE, ReleaseOutput
from pets.tasks.train import TRAIN, LogisticModel, fit_logistic, labels

__all__ = [
    "DERIVED_FEATURES",
    "TASK_KINDS",
    "Accuracy",
    "AggregateOutput",
    "CardError",
    "CardTable",
    "InferenceOutput",
    "LinkageOutput",
    "LogisticModel",
    "PartyRole",
    "Problem",
    "QueryOutput",
    "ReleaseOutput",
    "ScenarioData",
    "Task",
    "TaskKind",
    "answer_query",
    "answers_from_wire",
    "answers_to_wire",
    "cell_grid",
    "design_matrix",
    "eligible",
    "finish_means",
    "fit_logistic",
    "freeze",
    "labels",
    "link_statistics",
    "local_aggregate",
    "public_ranges",
    "select_rows",
    "sums_from_vector",
    "withheld_reasons",
]

TASK_KINDS = MappingProxyType(
    {kind.name: kind for kind in (AGGREGATE, LINKAGE, TRAIN, INFERENCE, RELEASE, QUERY)}
)
