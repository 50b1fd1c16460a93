"""Starting party processes and asking them what a backend is.

:class:`PartyLauncher` forks party processes from a fork server that preloaded the
runtime and the backend's module and never held any party's data, so a party process
starts warm and holds only what the harness then sends it. :func:`await_ready` waits for
their ``hello``; :func:`describe_backend` and :func:`describe_backends` ask a throwaway
party process for a backend's parameters, capabilities and helper parties, so backend
code never runs in the harness's process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.util
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from pets.runtime import _link
from pets.runtime._party import party_main
from pets.runtime.codec import encode_task
from pets.tasks import PartyRole, Task

__all__ = [
    "BackendDescription",
    "PartyLauncher",
    "PartyProcess",
    "PartyProgramError",
    "await_ready",
    "describe_backend",
    "describe_backends",
]

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class PartyProgramError(RuntimeError):
    """A party program failed, or the parties did not finish a run.

    Attributes
    ----------
    status : str
        The record status it maps to: ``failed``, ``unsupported`` or ``party_failed``.
    party : str or None
        The party whose program failed first, if one did.
    """

    def __init__(self, status: str, message: str, party: str | None = None) -> None:
        self.status = status
        self.party = party
        super().__init__(message)


@dataclass(frozen=True)
class BackendDescription:
    """A backend as a throwaway party process described it (JSON-checked)."""

    param_names: tuple[str, ...]
    unknown: tuple[str, ...]
    capabilities: Mapping[str, Any]
    runs_parties: bool
    helpers: tuple[PartyRole, ...]
    api_version: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


class PartyProcess:
    """One started party process and the harness's end of its link."""

    def __init__(self, name: str, process: Any, conn: Any) -> None:
        self.name = name
        self.process = process
        self.conn = conn
        self.state = "starting"  # starting, running, waiting, done, failed
        self.waiting_for: tuple[str, str | None] | None = None
        self.output: bytes | None = None
        self.phases: dict[str, dict[str, float]] = {}
        self.cpu_s = 0.0
        self.peak_rss_mb = 0.0

    def read_counters(self) -> None:
        """CPU time (own and waited children) and peak RSS, read from /proc."""
        pid = self.process.pid
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            self.cpu_s = sum(int(x) for x in fields[11:15]) / _TICKS
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_mb = int(line.split()[1]) / 1024

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            if self.process.is_alive():
                self.process.kill()
        with contextlib.suppress(Exception):
            self.process.join(timeout=5)
        with contextlib.suppress(Exception):
            self.conn.close()


class PartyLauncher:
    """Starts party processes from a warm fork server.

    Parameters
    ----------
    preload : sequence of str
        Modules the fork server imports once (the backend's module), so each party
        process starts with them imported.
    """

    def __init__(self, preload: Sequence[str] = ()) -> None:
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(
            ["pets.runtime._forkserver", "pets.runtime._party", *preload]
        )
        _short_socket_folder()

    def warm_up(self) -> None:
        """Start the fork server now, so it imports its preload while this process goes
        on with other work (building the cell's data); the first :meth:`start` then
        waits only for what is left of that. Starting it twice starts one server."""
        with _main_script_hidden():
            multiprocessing.forkserver.ensure_running()

    def start(self, name: str) -> PartyProcess:
        """Start one party process (it holds nothing until the harness sends it)."""
        here, there = self._context.Pipe(duplex=True)
        process = self._context.Process(target=party_main, args=(there,), daemon=True)
        with _main_script_hidden():
            process.start()
        there.close()
        return PartyProcess(name, process, here)


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Start a process without multiprocessing's main-module import: a party process
    would otherwise import the script that called :func:`pets.run` (``__main__``) and
    run that script's top level again, inside the party, unless it had a ``__main__``
    guard. The party program needs nothing from the caller's script."""
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if hasattr(main, k)}
    try:
        if "__file__" in saved:
            del main.__file__  # type: ignore[union-attr]
        if "__spec__" in saved:
            main.__spec__ = None  # type: ignore[union-attr]
        yield
    finally:
        for key, value in saved.items():
            setattr(main, key, value)


def _short_socket_folder() -> None:
    """Make multiprocessing keep its sockets under a short folder: the fork server's Unix
    socket path (``<tmp>/pymp-XXXXXXXX/listener-XXXXXXXX``, 32 bytes past the folder)
    must fit in 107 bytes. A cell's ``TMPDIR`` is short enough, so the socket stays in
    the cell's scratch folder and goes with it."""
    if len(tempfile.gettempdir()) <= 70:
        return
    saved = tempfile.tempdir
    tempfile.tempdir = "/tmp" if os.path.isdir("/tmp") else saved
    try:
        multiprocessing.util.get_temp_dir()  # created once per process, then reused
    finally:
        tempfile.tempdir = saved


def await_ready(parties: Sequence[PartyProcess], deadline: float) -> None:
    """Wait until every started party process said hello (by ``deadline``, a
    ``time.monotonic`` instant); raise :class:`PartyProgramError` otherwise."""
    pending = {p.conn: p for p in parties}
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise PartyProgramError(
                "party_failed",
                f"party processes {sorted(p.name for p in pending.values())} did not start in time",
            )
        ready = wait(list(pending) + [p.process.sentinel for p in pending.values()], left)
        for obj in ready:
            party = pending.get(obj)  # type: ignore[call-overload]
            if party is None:
                dead = next(p for p in pending.values() if p.process.sentinel == obj)
                raise PartyProgramError(
                    "party_failed", f"party process {dead.name!r} died while starting"
                )
            try:
                header, _ = _link.read(party.conn)
            except (EOFError, OSError, _link.LinkError) as exc:
                raise PartyProgramError(
                    "party_failed", f"party process {party.name!r} did not start: {exc}"
                ) from None
            if header["op"] != "hello":
                raise PartyProgramError("failed", f"party {party.name!r} broke the protocol")
            party.state = "running"
            del pending[obj]


def describe_backends(
    launcher: PartyLauncher,
    requests: Sequence[tuple[str, Mapping[str, Any]]],
    task: Task | None = None,
    *,
    timeout_s: float = 300,
    import_only: bool = False,
) -> list[BackendDescription | PartyProgramError]:
    """Ask one throwaway party process what each ``(target, params)`` backend is.

    Each answer is a :class:`BackendDescription`, or the :class:`PartyProgramError` of a
    backend that could not be imported or built (the others are still described).
    Helper parties are described only when ``task`` is given. With ``import_only`` each
    backend is only imported and checked to be a Backend class (for listing plugins):
    nothing is built.

    Raises
    ------
    PartyProgramError
        If the probe process fails as a whole or answers malformed data.
    """
    probe = launcher.start("describe")
    try:
        await_ready([probe], time.monotonic() + timeout_s)
        frames = [encode_task(task)] if task is not None else []
        request = {
            "op": "describe",
            "requests": [
                {"target": t, "params": dict(p), "import_only": import_only} for t, p in requests
            ],
        }
        _link.write(probe.conn, request, *frames)
        if not probe.conn.poll(timeout_s):
            raise PartyProgramError("failed", f"describing backends took over {timeout_s:g} s")
        try:
            header, _ = _link.read(probe.conn)
            answers = header["answers"]
            if header["op"] != "described" or len(answers) != len(requests):
                raise ValueError("wrong answer")
            return [_description(a) for a in answers]
        except (EOFError, OSError, _link.LinkError, KeyError, TypeError, ValueError) as exc:
            raise PartyProgramError(
                "failed", f"describing backends failed: {type(exc).__name__}: {exc}"
            ) from None
    finally:
        with contextlib.suppress(Exception):
            _link.write(probe.conn, {"op": "bye"})
        probe.kill()


def _description(answer: Mapping[str, Any]) -> BackendDescription | PartyProgramError:
    if "error" in answer:
        error = answer["error"]
        status = str(error.get("status", "failed"))
        return PartyProgramError(
            status if status in ("unsupported", "party_failed") else "failed",
            str(error.get("message", "")),
        )
    return BackendDescription(
        param_names=tuple(str(n) for n in answer["param_names"]),
        unknown=tuple(str(n) for n in answer["unknown"]),
        capabilities=dict(answer.get("capabilities") or {}),
        runs_parties=bool(answer.get("program", False)),
        helpers=tuple(PartyRole(str(n), str(r)) for n, r in answer.get("helpers", [])),
        api_version=_version(answer.get("api_version")),
        params=dict(answer.get("params") or {}),
    )


def _version(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def describe_backend(
    launcher: PartyLauncher,
    target: str,
    params: Mapping[str, Any],
    task: Task | None = None,
    *,
    timeout_s: float = 300,
) -> BackendDescription:
    """Ask a throwaway party process what the backend at ``target`` is.

    Raises
    ------
    PartyProgramError
        If the backend cannot be imported or built, or its answer is malformed.
    """
    (answer,) = describe_backends(launcher, [(target, params)], task, timeout_s=timeout_s)
    if isinstance(answer, PartyProgramError):
        raise answer
    return answer
