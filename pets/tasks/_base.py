"""Shared shapes of every task kind: the task a backend sees, the problem the harness
holds, accuracy, and the table of task kinds."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from pets.expressions import ExpressionError, parse_filter

__all__ = [
    "Accuracy",
    "CardError",
    "CardTable",
    "PartyRole",
    "Problem",
    "ScenarioData",
    "Task",
    "TaskKind",
    "freeze",
]


class CardError(ValueError):
    """A scenario card (or a parameter given for one) is invalid.

    The message names the file, the field and what is allowed.
    """

    def __init__(self, source: str, field_name: str, problem: str) -> None:
        self.source = source
        self.field = field_name
        self.problem = problem
        super().__init__(f"{source}: field '{field_name}': {problem}")


def freeze(value: Any) -> Any:
    """Return a read-only deep copy of nested dicts and lists (dicts become mappingproxies,
    lists become tuples)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class PartyRole:
    """A party of a scenario and its role (``data_holder``, ``analyst``, ``aggregator``,
    ``provider``, ``supplier``, ``custodian``, ``researcher``, ...)."""

    name: str
    role: str


@dataclass(frozen=True)
class Task:
    """What a backend is told: public knowledge shared by every party.

    Parameters
    ----------
    kind : str
        Task kind, one of :data:`pets.tasks.TASK_KINDS`.
    scenario : str
        Scenario id.
    parties : tuple of PartyRole
        The parties and their roles.
    recipient : str
        The party that must learn the output.
    params : Mapping
        Validated, read-only task parameters from the card (public).
    public : Mapping
        Further public facts derived by the harness (e.g. feature names, column bounds,
        query workload), read-only.
    """

    kind: str
    scenario: str
    parties: tuple[PartyRole, ...]
    recipient: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    public: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def parties_with_role(self, role: str) -> tuple[str, ...]:
        """Return the names of the parties that have ``role``, in card order."""
        return tuple(p.name for p in self.parties if p.role == role)

    @property
    def party_names(self) -> tuple[str, ...]:
        """All party names, in card order."""
        return tuple(p.name for p in self.parties)


@dataclass
class ScenarioData:
    """The data the harness generated for one cell, before it is handed out.

    Parameters
    ----------
    partitions : dict
        Party name to its private rows (only parties that hold data).
    holdout : DataFrame or None
        Rows no party holds: held by the harness for evaluation and control sets.
    rng : numpy.random.Generator
        Seeded generator for anything the task must still draw.
    """

    partitions: dict[str, pd.DataFrame]
    holdout: pd.DataFrame | None
    rng: np.random.Generator


@dataclass
class Problem:
    """One task instance as the harness holds it.

    Parameters
    ----------
    task : Task
        What the backend sees.
    party_data : dict
        Each party's private input; handed out only through the session.
    evaluation : dict
        Harness-only material for scoring (held-out test sets, pooled references).
    sensitive : dict
        Per party, column name to a sample of distinctive private values (identifiers,
        measurements) that must not appear in another party's received bytes; used by
        the transcript-exposure check. Never written to results.
    """

    task: Task
    party_data: dict[str, Any]
    evaluation: dict[str, Any] = field(default_factory=dict)
    sensitive: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


@dataclass(frozen=True)
class Accuracy:
    """Accuracy metrics of one output against the reference, computed by the harness.

    Parameters
    ----------
    metrics : Mapping of str to float
        Metric name to value.
    primary : str
        The name of the task's primary metric (a key of ``metrics``).
    higher_is_better : bool
        Direction of the primary metric.
    """

    metrics: Mapping[str, float]
    primary: str
    higher_is_better: bool = False

    def __post_init__(self) -> None:
        if self.primary not in self.metrics:
            raise ValueError(f"primary metric {self.primary!r} not among {sorted(self.metrics)}")

    @property
    def primary_value(self) -> float:
        """Value of the primary metric."""
        return float(self.metrics[self.primary])

    def to_dict(self) -> dict[str, Any]:
        """Return ``{metric: value, ..., "primary": name}`` as JSON-ready data."""
        out: dict[str, Any] = {
            k: (None if v is None else float(v)) for k, v in self.metrics.items()
        }
        out["primary"] = self.primary
        out["higher_is_better"] = self.higher_is_better
        return out


@dataclass(frozen=True)
class TaskKind:
    """One task kind: its output type, card parameters, ideal functionality and metrics.

    Parameters
    ----------
    name : str
        Kind name.
    output_type : type
        The type a backend's ``run`` must return.
    parse_params : callable
        ``parse_params(raw, source, parties, columns) -> dict``: validate the card's
        ``[task]`` table (``parties`` is the tuple of PartyRole, ``columns`` the columns of
        the card's data source); raise :class:`CardError` naming the field.
    build : callable
        ``build(params, parties, data) -> Problem`` from validated params, the tuple of
        PartyRole and a :class:`ScenarioData`.
    reference : callable
        ``reference(problem) -> output``: the plaintext ideal functionality.
    score : callable
        ``score(output, reference, problem) -> Accuracy``.
    description : str
        One sentence for listings.
    """

    name: str
    output_type: type
    parse_params: Callable[..., dict[str, Any]]
    build: Callable[..., Problem]
    reference: Callable[[Problem], Any]
    score: Callable[[Any, Any, Problem], Accuracy]
    description: str = ""


_MISSING = object()


class CardTable:
    """Read one table of a scenario card, with errors that name the file, the field and
    what is allowed.

    Parameters
    ----------
    raw : Mapping
        The parsed TOML table.
    source : str
        The card's path, for messages.
    prefix : str
        Dotted path of the table inside the card (``"task"``, ``"data.split"``).
    """

    def __init__(self, raw: Any, source: str, prefix: str) -> None:
        if not isinstance(raw, Mapping):
            raise CardError(source, prefix, f"must be a table, got {type(raw).__name__}")
        self.raw = raw
        self.source = source
        self.prefix = prefix
        self._read: set[str] = set()

    def path(self, key: str) -> str:
        """Return the dotted field name of ``key``."""
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, problem: str) -> CardError:
        """Return a :class:`CardError` for ``key``."""
        return CardError(self.source, self.path(key), problem)

    def get(
        self,
        key: str,
        kind: type | tuple[type, ...],
        default: Any = _MISSING,
        *,
        allowed: Any = None,
    ) -> Any:
        """Return field ``key`` checked against ``kind`` and, if given, ``allowed`` values.

        Integers are accepted where floats are expected. A missing field without a default
        is an error.
        """
        self._read.add(key)
        if key not in self.raw:
            if default is _MISSING:
                raise self.error(key, "is required")
            return default
        value = self.raw[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(key, f"must be {_kind_names(kinds)}, got a boolean")
        if not isinstance(value, kinds):
            raise self.error(key, f"must be {_kind_names(kinds)}, got {value!r}")
        if allowed is not None:
            values = value if isinstance(value, list) else [value]
            for v in values:
                if v not in allowed:
                    raise self.error(
                        key, f"{v!r} is not allowed; allowed: {', '.join(map(str, allowed))}"
                    )
        return value

    def get_filter(self, key: str, columns: Sequence[str], default: str = "") -> str:
        """Return the row filter ``key``, checked against the grammar of
        :mod:`pets.expressions` and ``columns`` (empty if absent).

        The text is kept as written; it is parsed again, never run, where it is applied.
        """
        text = self.get(key, str, default)
        if text:
            try:
                parse_filter(text, columns)
            except ExpressionError as exc:
                raise self.error(key, str(exc)) from None
        return text

    def table(self, key: str, default: Any = _MISSING) -> CardTable:
        """Return the sub-table ``key`` as a :class:`CardTable`."""
        raw = self.get(key, dict, default)
        return CardTable(raw, self.source, self.path(key))

    def check_unknown(self) -> None:
        """Raise for any field that was never read, listing the known ones."""
        unknown = sorted(set(self.raw) - self._read)
        if unknown:
            known = ", ".join(sorted(self._read))
            raise self.error(unknown[0], f"is not a known field; known fields: {known}")


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)
