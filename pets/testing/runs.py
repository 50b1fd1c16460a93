"""Toy runs of one backend, made once and shared by every check that needs them.

A :class:`Toybox` runs a backend's party programs on the toy problems
(:mod:`pets.testing.toys`) through the real party runtime (one process per party,
every message carried by the harness's session), exactly as a cell of a benchmark
run would, and keeps each run so that the checks on outputs, transcripts and
identifiers do not pay for it twice. A backend in the one-process prototyping style
(``run(task, session)``) runs in this process instead. A backend that declares
requirements runs under its own environment (:mod:`pets.envs`), found by its registered
name (``env_name``), as in a cell; without a current one its toy runs are
``unsupported`` and say which ``pets env sync`` builds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pets.api import Backend
from pets.runtime.harness import PartyLauncher, PartyProgramError, ProtocolRunner, target_of
from pets.session import Session
from pets.tasks import TASK_KINDS, Problem
from pets.testing.toys import ToyShelf

__all__ = ["ToyRun", "Toybox", "importable_target"]


@dataclass(frozen=True)
class ToyRun:
    """One run of a backend on a toy problem.

    Attributes
    ----------
    kind : str
        The task kind of the toy.
    problem : Problem
        The toy problem (every party's data; harness-side only).
    output : object or None
        The recipient's output, decoded and type-checked; None when the run failed.
    session : Session or None
        The ledger of the run (transcript, reveals); None when the run failed.
    status : str
        ``ok``, or the status of the failure (``failed``, ``unsupported``,
        ``party_failed``).
    message : str
        The failure's message, empty when ``ok``.
    """

    kind: str
    problem: Problem
    output: Any
    session: Session | None
    status: str
    message: str = ""


def importable_target(backend: Backend) -> str:
    """The backend's import target, or AssertionError saying how to make it importable.

    Party processes build the backend from its ``module:Class`` target, so a class
    defined in a notebook cell or a script run as ``__main__`` cannot be run by them.
    """
    target = target_of(backend)
    module, _, qualname = target.partition(":")
    if module == "__main__" or "<locals>" in qualname:
        raise AssertionError(
            f"{type(backend).__name__} is defined in {module!r}"
            + (" inside a function" if "<locals>" in qualname else "")
            + ": party processes import the backend by 'module:Class', so define it at the "
            "top level of an importable module (a file of your package) and import it from there"
        )
    return target


@dataclass
class Toybox:
    """Runs backends on toy problems and keeps the runs.

    Parameters
    ----------
    shelf : ToyShelf, optional
        The toy problems (default: a fresh shelf, seed 0).
    timeout_s : float
        Deadline of one toy run.
    preload : tuple of str
        Modules the party processes' fork server imports once (the backends' modules),
        so that each party process starts warm, as in a benchmark cell. The fork server
        is one per process: it takes the preload of the first launcher that starts it.
    env_name : str, optional
        The registered name of a backend that declares requirements: its party
        processes run under the environment ``pets env sync <env_name>`` built.
    """

    shelf: ToyShelf = field(default_factory=ToyShelf)
    timeout_s: float = 120.0
    preload: tuple[str, ...] = ()
    env_name: str | None = None
    _launcher: PartyLauncher | None = field(default=None, init=False, repr=False)
    _runs: dict[tuple[str, str, str, int], ToyRun] = field(
        default_factory=dict, init=False, repr=False
    )

    @property
    def launcher(self) -> PartyLauncher:
        """The launcher of party processes (made on first use)."""
        if self._launcher is None:
            self._launcher = PartyLauncher(preload=self.preload)
        return self._launcher

    def run(self, backend: Backend, kind: str, *, repeat: int = 0) -> ToyRun:
        """Run ``backend`` on the toy of ``kind`` (kept: the same ``repeat`` runs once).

        ``repeat`` numbers independent runs of the same backend on the same toy (the
        reproducibility check compares repeat 0 with repeat 1).
        """
        params = json.dumps(backend.get_params(), sort_keys=True, default=repr)
        key = (target_of(backend), params, kind, repeat)
        if key not in self._runs:
            self._runs[key] = self._fresh(backend, kind)
        return self._runs[key]

    def _fresh(self, backend: Backend, kind: str) -> ToyRun:
        problem = self.shelf.problem(kind)
        output_type = TASK_KINDS[kind].output_type
        if not type(backend).runs_parties():
            return self._in_process(backend, kind, problem)
        launcher: Any = self.launcher
        requirements = backend.capabilities.requirements
        if requirements:
            launcher = self._env_launcher(backend, requirements)
            if isinstance(launcher, str):
                return ToyRun(kind, problem, None, None, "unsupported", launcher)
        runner = ProtocolRunner(
            launcher,
            importable_target(backend),
            backend.get_params(),
            output_type=output_type,
            sockets=backend.capabilities.sockets,
            timeout_s=self.timeout_s,
        )
        try:
            run = runner.run(problem.task, problem.party_data)
        except PartyProgramError as exc:
            prefix = "" if exc.party is None else f"party {exc.party!r}: "
            return ToyRun(kind, problem, None, None, exc.status, prefix + str(exc))
        return ToyRun(kind, problem, run.output, run.session, "ok")

    def _env_launcher(self, backend: Backend, requirements: tuple[str, ...]) -> Any:
        """The launcher under the backend's own environment, or why there is none."""
        from pets.envs import EnvError, EnvSpec, env_state
        from pets.runtime.venv import EnvPartyLauncher

        if self.env_name is None:
            return (
                f"{type(backend).__name__} runs in its own Python environment; check it by "
                "its registered name (pets check NAME) once `pets env sync NAME` has built it"
            )
        try:
            state = env_state(EnvSpec.of(self.env_name, requirements))
        except EnvError as exc:
            return str(exc)
        if state.status != "current":
            return state.message()
        return EnvPartyLauncher(state.python, importable_target(backend))

    @staticmethod
    def _in_process(backend: Backend, kind: str, problem: Problem) -> ToyRun:
        from pets.api import PartyFailure, UnsupportedTask

        session = Session(problem.task.parties, problem.party_data)
        try:
            output = backend.run(problem.task, session)
        except UnsupportedTask as exc:
            return ToyRun(kind, problem, None, None, "unsupported", str(exc))
        except PartyFailure as exc:
            return ToyRun(kind, problem, None, None, "party_failed", str(exc))
        except Exception as exc:  # the backend's fault is the check's finding
            return ToyRun(kind, problem, None, None, "failed", f"{type(exc).__name__}: {exc}")
        expected = TASK_KINDS[kind].output_type
        if not isinstance(output, expected):
            return ToyRun(
                kind,
                problem,
                None,
                None,
                "failed",
                f"returned {type(output).__name__}, not {expected.__name__}",
            )
        return ToyRun(kind, problem, output, session, "ok")
