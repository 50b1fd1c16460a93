"""What a backend author imports: the one public surface for PET suppliers.

Everything a backend needs is here (version :data:`API_VERSION`): the backend contract
(:class:`Backend`, :class:`PartyContext`, :class:`PartyRole`), capabilities and claims as
typed data, the task's output types, the wire format (:func:`pack`, :func:`unpack`), the
task helpers backends use (local aggregates, design matrices, query answers), the
table-release base class and the public column coding. Other modules of ``pets`` may
change without notice; this one changes only with :data:`API_VERSION`. Importing it is
light: the task helpers, output types, wire format and party context (and with them
pandas, pyarrow and scikit-learn) are imported on first use of one of their names.

A backend is a class whose constructor takes keyword-only parameters and only stores
them; its :attr:`~Backend.capabilities` say, as data, which task kinds it serves, its
PET class and its formal :class:`Claim`; :meth:`~Backend.run` answers one task inside a
harness-owned :class:`~pets.session.Session` and returns the task's output type. The
harness, never the backend, computes accuracy, cost and leakage.

Examples
--------
>>> from pets.api import Backend, Capabilities, Claim, PetClass
>>> class Shout(Backend):
...     def __init__(self, *, volume: int = 1) -> None:
...         self.volume = volume
...     @property
...     def capabilities(self) -> Capabilities:
...         return Capabilities(task_kinds=frozenset({"aggregate"}), pet_class=PetClass.BASELINE,
...                             claim=Claim(declared_leakage=("inputs",)))
>>> Shout(volume=3).get_params()
{'volume': 3}
"""

from __future__ import annotations

import enum
import importlib
import inspect
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pets.backends.release import TableRelease
    from pets.backends.synth.coding import (
        ColumnCoding,
        decode_table,
        encode_table,
        public_codings,
    )
    from pets.runtime.context import ChannelError, PartyContext, PartyNetwork
    from pets.session import Session
    from pets.tasks import (
        DERIVED_FEATURES,
        AggregateOutput,
        InferenceOutput,
        LinkageOutput,
        LogisticModel,
        PartyRole,
        QueryOutput,
        ReleaseOutput,
        Task,
        answer_query,
        answers_from_wire,
        answers_to_wire,
        cell_grid,
        design_matrix,
        eligible,
        finish_means,
        fit_logistic,
        labels,
        link_statistics,
        local_aggregate,
        public_ranges,
        select_rows,
        sums_from_vector,
    )
    from pets.wire import join_frames, pack, split_frames, unpack

#: Version of this supplier surface. A backend says which version it was written for with
#: the class attribute ``Backend.api_version``; records carry it.
API_VERSION = 1

__all__ = [
    "API_VERSION",
    "DERIVED_FEATURES",
    "AggregateOutput",
    "Backend",
    "Capabilities",
    "ChannelError",
    "Claim",
    "ColumnCoding",
    "InferenceOutput",
    "LinkageOutput",
    "LogisticModel",
    "PartyContext",
    "PartyFailure",
    "PartyNetwork",
    "PartyRole",
    "PetClass",
    "QueryOutput",
    "ReleaseOutput",
    "SecurityModel",
    "TableRelease",
    "Task",
    "UnsupportedTask",
    "answer_query",
    "answers_from_wire",
    "answers_to_wire",
    "cell_grid",
    "decode_table",
    "design_matrix",
    "eligible",
    "encode_table",
    "finish_means",
    "fit_logistic",
    "join_frames",
    "labels",
    "link_statistics",
    "local_aggregate",
    "pack",
    "public_codings",
    "public_ranges",
    "select_rows",
    "split_frames",
    "sums_from_vector",
    "unpack",
]

#: Names served on first use, with the module that defines each: the party runtime, the
#: task kinds and the wire format pull in pandas, pyarrow and scikit-learn, which a
#: program that only declares a backend (or the ``pets`` command) need not load; the
#: table-release base class and the column coding import this module.
_LAZY: dict[str, str] = {
    **dict.fromkeys(("ChannelError", "PartyContext", "PartyNetwork"), "pets.runtime.context"),
    **dict.fromkeys(
        (
            "DERIVED_FEATURES",
            "AggregateOutput",
            "InferenceOutput",
            "LinkageOutput",
            "LogisticModel",
            "PartyRole",
            "QueryOutput",
            "ReleaseOutput",
            "Task",
            "answer_query",
            "answers_from_wire",
            "answers_to_wire",
            "cell_grid",
            "design_matrix",
            "eligible",
            "finish_means",
            "fit_logistic",
            "labels",
            "link_statistics",
            "local_aggregate",
            "public_ranges",
            "select_rows",
            "sums_from_vector",
        ),
        "pets.tasks",
    ),
    **dict.fromkeys(("join_frames", "pack", "split_frames", "unpack"), "pets.wire"),
    "TableRelease": "pets.backends.release",
    **dict.fromkeys(
        ("ColumnCoding", "decode_table", "encode_table", "public_codings"),
        "pets.backends.synth.coding",
    ),
}


def __getattr__(name: str) -> Any:
    """Import the module behind a lazy name on first use and keep the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pets.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class PetClass(enum.StrEnum):
    """The family a backend belongs to, used to group it in reports."""

    BASELINE = "baseline"
    SDC = "sdc"
    HE = "he"
    MPC = "mpc"
    PSI = "psi"
    DP = "dp"
    SYNTHETIC = "synthetic"
    FEDERATED = "federated"
    REMOTE = "remote"


class SecurityModel(enum.StrEnum):
    """Adversary model under which a cryptographic claim holds."""

    NONE = "none"
    SEMI_HONEST = "semi-honest"
    MALICIOUS = "malicious"
    TRUSTED_THIRD_PARTY = "trusted-third-party"


@dataclass(frozen=True)
class Claim:
    """A backend's formal privacy claim, as typed data.

    Parameters
    ----------
    epsilon, delta : float or None
        Differential-privacy guarantee, if any, for the whole run.
    privacy_unit : str
        What one neighbouring change adds or removes (``"patient"``).
    neighbouring : str or None
        Neighbouring relation for a DP claim (``"add-remove"`` or ``"substitute"``).
    accountant : str or None
        How a DP claim's budget is accounted (``"basic sequential composition"``,
        ``"zCDP"``).
    security_bits : int or None
        Computational security level of the cryptography, in bits.
    security_model : SecurityModel
        Adversary model for the cryptographic part.
    collusion_threshold : int or None
        Largest number of colluding parties the claim survives.
    declared_leakage : tuple of str
        What the backend admits is revealed beyond nothing, e.g. ``"output"``,
        ``"set sizes"``, ``"intersection cardinality"``, ``"inputs"`` (a party sees others'
        raw data).
    formal : bool
        False for heuristics (hashing, suppression, k-anonymity) that carry no proof.
    notes : str
        One plain-language sentence on what the claim does not cover.
    """

    epsilon: float | None = None
    delta: float | None = None
    privacy_unit: str = "patient"
    neighbouring: str | None = None
    accountant: str | None = None
    security_bits: int | None = None
    security_model: SecurityModel = SecurityModel.NONE
    collusion_threshold: int | None = None
    declared_leakage: tuple[str, ...] = ("output",)
    formal: bool = False
    notes: str = ""

    def __post_init__(self) -> None:
        if self.epsilon is not None and not self.epsilon > 0:
            raise ValueError(f"Claim.epsilon must be > 0, got {self.epsilon!r}")
        if self.delta is not None and not 0 <= self.delta < 1:
            raise ValueError(f"Claim.delta must be in [0, 1), got {self.delta!r}")
        if isinstance(self.declared_leakage, str):
            raise TypeError("Claim.declared_leakage must be a tuple of strings, not a string")

    def to_dict(self) -> dict[str, Any]:
        """Return the claim as JSON-ready data."""
        out = asdict(self)
        out["security_model"] = self.security_model.value
        out["declared_leakage"] = list(self.declared_leakage)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Claim:
        """Rebuild a claim from :meth:`to_dict` data, checking every field.

        Raises
        ------
        ValueError
            If a field is unknown or has the wrong type or value.
        """
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"Claim has no field {unknown[0]!r}")
        fields_ = dict(data)
        if "security_model" in fields_:
            fields_["security_model"] = SecurityModel(fields_["security_model"])
        if "declared_leakage" in fields_:
            leakage = fields_["declared_leakage"]
            if not isinstance(leakage, list | tuple) or not all(
                isinstance(x, str) for x in leakage
            ):
                raise ValueError("Claim.declared_leakage must be a list of strings")
            fields_["declared_leakage"] = tuple(leakage)
        for name in ("epsilon", "delta"):
            value = fields_.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise ValueError(f"Claim.{name} must be a number or null, got {value!r}")
        return cls(**fields_)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, stated as data (read without running it).

    Parameters
    ----------
    task_kinds : frozenset of str
        Task kinds served, from :data:`pets.tasks.TASK_KINDS`.
    pet_class : PetClass
        The PET family.
    claim : Claim
        The formal claim for the backend's current parameters.
    needs_processes : bool
        True when the backend starts its own operating-system processes.
    extra : str or None
        The optional install extra that provides the backend's libraries.
    sockets : bool
        True when the party programs talk over their own TCP sockets (a library's own
        network stack, as MPyC's): each party gets loopback addresses in
        ``context.network`` and the harness relays and meters the bytes.
    deterministic : bool
        True when the recipient's output is the same on every run on the same inputs
        with the same parameters (the transcript may still differ, e.g. fresh keys). The
        conformance kit checks it (``pets check``). Every non-cryptographic random
        choice should be drawn from the cell's seed (``task.public["seed"]``).
    unseeded_randomness : tuple of str
        Random draws the cell's seed cannot fix, each named with its source (e.g. noise
        a DP library draws from its own secure generator); empty when every draw is
        seeded or there is none. The cell's record carries it.
    requirements : tuple of str
        Packages the party programs need that the harness's environment may not hold,
        as PEP 508 requirement strings (``("syft==0.9.5", "sniffio")``). When not empty,
        the party processes run under a virtual environment of their own that
        ``pets env sync <backend>`` builds from these (docs/environments.md); the
        backend's module must then import them inside :meth:`Backend.run_party`, never
        at module level, so that the harness can still describe it. They should not
        depend on the parameters.
    """

    task_kinds: frozenset[str]
    pet_class: PetClass
    claim: Claim = field(default_factory=Claim)
    needs_processes: bool = False
    extra: str | None = None
    sockets: bool = False
    deterministic: bool = False
    unseeded_randomness: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.unseeded_randomness, str):
            raise TypeError("Capabilities.unseeded_randomness must be a tuple of strings")
        if isinstance(self.requirements, str):
            raise TypeError("Capabilities.requirements must be a tuple of strings")
        for requirement in self.requirements:
            if (
                not isinstance(requirement, str)
                or not requirement.strip()
                or requirement.lstrip().startswith("-")
                or any(c in requirement for c in "\n\r\0")
            ):
                raise ValueError(
                    f"Capabilities.requirements holds {requirement!r}; each must be one "
                    "requirement such as 'syft==0.9.5' (no installer options)"
                )

    def to_dict(self) -> dict[str, Any]:
        """Return the capabilities as JSON-ready data."""
        return {
            "task_kinds": sorted(self.task_kinds),
            "pet_class": self.pet_class.value,
            "claim": self.claim.to_dict(),
            "needs_processes": self.needs_processes,
            "extra": self.extra,
            "sockets": self.sockets,
            "deterministic": self.deterministic,
            "unseeded_randomness": list(self.unseeded_randomness),
            "requirements": list(self.requirements),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Capabilities:
        """Rebuild capabilities from :meth:`to_dict` data, checking every field.

        Raises
        ------
        ValueError
            If a field is missing, unknown, or has the wrong type or value.
        """
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"Capabilities has no field {unknown[0]!r}")
        kinds = data.get("task_kinds")
        if not isinstance(kinds, list | tuple) or not all(isinstance(k, str) for k in kinds):
            raise ValueError("Capabilities.task_kinds must be a list of task kind names")
        extra = data.get("extra")
        if extra is not None and not isinstance(extra, str):
            raise ValueError("Capabilities.extra must be a string or null")
        return cls(
            task_kinds=frozenset(kinds),
            pet_class=PetClass(data.get("pet_class")),
            claim=Claim.from_dict(data.get("claim") or {}),
            needs_processes=bool(data.get("needs_processes", False)),
            extra=extra,
            sockets=bool(data.get("sockets", False)),
            deterministic=bool(data.get("deterministic", False)),
            unseeded_randomness=_strings(
                data.get("unseeded_randomness", ()), "unseeded_randomness"
            ),
            requirements=_strings(data.get("requirements", ()), "requirements"),
        )


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"Capabilities.{name} must be a list of strings")
    return tuple(value)


class PartyFailure(RuntimeError):
    """Raised when a party that runs as its own process fails to start, dies, or misses
    its deadline. The harness records the cell with status ``party_failed`` and this
    message; the backend has already stopped every process it started."""


class UnsupportedTask(Exception):
    """Raised by a backend for a task (or task parameter) it cannot serve.

    The harness records such a cell with status ``unsupported`` and this message.
    """


class Backend:
    """Base class for backends.

    Subclasses define a keyword-only ``__init__`` that stores each parameter under
    its own name and does nothing else (no key generation, no I/O), a
    :attr:`capabilities` property, and :meth:`run_party`.

    Attributes
    ----------
    api_version : int
        The :data:`API_VERSION` the backend was written for (records carry it).
    """

    api_version: int = API_VERSION

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """Return the constructor's parameter names."""
        sig = inspect.signature(cls.__init__)
        return tuple(
            name
            for name, p in sig.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        """Return the constructor's parameters with their defaults."""
        sig = inspect.signature(cls.__init__)
        return {
            name: (None if p.default is inspect.Parameter.empty else p.default)
            for name, p in sig.parameters.items()
            if name in cls.param_names()
        }

    def get_params(self) -> dict[str, Any]:
        """Return the parameters this instance was built with."""
        return {name: getattr(self, name) for name in self.param_names()}

    @property
    def capabilities(self) -> Capabilities:  # pragma: no cover - abstract
        """What this backend serves and claims."""
        raise NotImplementedError(f"{type(self).__name__} must define `capabilities`")

    def helpers(self, task: Task) -> tuple[PartyRole, ...]:
        """Parties this backend brings for ``task`` besides the card's (an extra MPC
        server, a key holder). They hold no data; each runs the party program in its own
        process and what it receives is attacked like any other party's view."""
        return ()

    def run_party(self, context: PartyContext) -> Any:  # pragma: no cover - abstract
        """The program every party runs, each in its own process (SPMD).

        ``context`` holds this party's name, role and data, the public task, and the
        channel to the other parties. The recipient (``context.task.recipient``)
        returns the task kind's output type; every other party returns None.
        """
        raise NotImplementedError(f"{type(self).__name__} must define `run_party`")

    @classmethod
    def runs_parties(cls) -> bool:
        """Whether this backend defines party programs (:meth:`run_party`); the harness
        then runs each party in its own process (records say ``isolation: process``)."""
        return cls.run_party is not Backend.run_party

    def run(self, task: Task, session: Session) -> Any:  # pragma: no cover - abstract
        """Prototyping style, in one process: answer ``task`` acting as each party in
        turn through ``session.as_party``. Records of such a backend say
        ``isolation: api``; every built-in backend defines :meth:`run_party` instead.

        Returns
        -------
        object
            An instance of the task kind's output type.
        """
        raise NotImplementedError(f"{type(self).__name__} must define `run_party` or `run`")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
