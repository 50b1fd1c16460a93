"""The harness side of the party runtime: run a backend's party programs, carry their
messages.

Party processes are started by :mod:`pets.runtime.launcher` (whose names this module
also serves, for callers that import them from here); each holds only what the harness
sends it: the public task and that party's own input. :func:`run_protocol` starts one
process per party, carries every message between them through a
:class:`~pets.session.Session` used as the ledger (bytes, messages, rounds, transcript,
reveals), relays the sockets of backends that bring their own network stack, and
returns the recipient's output decoded and checked.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from pets.runtime import _link
from pets.runtime.codec import CodecError, decode_value, encode_task, encode_value
from pets.runtime.launcher import (
    BackendDescription,
    PartyLauncher,
    PartyProcess,
    PartyProgramError,
    await_ready,
    describe_backend,
    describe_backends,
)
from pets.runtime.relay import Relay
from pets.session import Session, SessionError
from pets.tasks import PartyRole, Task

__all__ = [
    "BackendDescription",
    "PartyLauncher",
    "PartyProgramError",
    "ProtocolRun",
    "ProtocolRunner",
    "await_ready",
    "describe_backend",
    "describe_backends",
    "run_protocol",
    "runner_for",
    "target_of",
]


@dataclass
class ProtocolRun:
    """One run of a backend's party programs, as the harness saw it.

    Attributes
    ----------
    output : object
        The recipient's output, decoded and of the task kind's output type.
    session : Session
        The ledger: transcript, reveals, traffic and rounds, phases.
    wall_s : float
        From the moment every party holds its data (the harness then sends each
        ``go``, after which the party builds its backend) to the last party's ``done``.
    cpu_s : float
        CPU time of every party process (and the children they waited for).
    peak_rss_mb : float
        The largest peak resident memory of any party process.
    startup_s : float
        Time to start every party process (fork and ``hello``), apart from ``wall_s``.
    load_s : float
        Time to hand every party its data and the public task (sent and decoded),
        apart from ``wall_s``: in a deployment each party already holds its data.
    party_costs : dict
        Per party: ``cpu_s`` and ``peak_rss_mb``.
    """

    output: Any
    session: Session
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    startup_s: float = 0.0
    load_s: float = 0.0
    party_costs: dict[str, dict[str, float]] = field(default_factory=dict)


def run_protocol(
    launcher: PartyLauncher,
    target: str,
    params: Mapping[str, Any],
    task: Task,
    party_data: Mapping[str, Any],
    *,
    output_type: type,
    helpers: Sequence[PartyRole] = (),
    sockets: bool = False,
    scratch: Path | None = None,
    timeout_s: float = 3600,
    keep_transcript: bool = True,
) -> ProtocolRun:
    """Run the backend's party programs, one process per party, and return the run.

    Parameters
    ----------
    launcher : PartyLauncher
        Starts the party processes.
    target : str
        The backend's import target (``"module:Class"``), built in each party process.
    params : Mapping
        The backend's parameters (JSON-ready).
    task : Task
        The public task.
    party_data : Mapping
        Each card party's private input; each goes only to that party's process.
    output_type : type
        What the recipient must return.
    helpers : sequence of PartyRole
        Parties the backend brings (they hold no data).
    sockets : bool
        Give the parties relayed loopback sockets (``Capabilities.sockets``).
    scratch : Path, optional
        Folder under which the run gets a fresh folder, one sub-folder per party
        (default: the system's temporary folder, ``TMPDIR``); removed when the run ends.
    timeout_s : float
        Deadline for the whole run.
    keep_transcript : bool
        Keep message payloads for the leakage checks.

    Raises
    ------
    PartyProgramError
        A party program failed, a party process died, deadlocked or missed the deadline,
        or the recipient returned no output of ``output_type``.
    """
    parties = (*task.parties, *helpers)
    names = [p.name for p in parties]
    if len(set(names)) != len(names):
        raise PartyProgramError("failed", f"helper parties clash with the card's: {names}")
    origin = time.perf_counter()  # where the session's clock (Message.at_s) starts
    session = Session(parties, {}, keep_transcript=keep_transcript)
    root = Path(tempfile.mkdtemp(prefix="pets-run-", dir=scratch))
    relay = Relay(names, keep_payloads=keep_transcript) if sockets else None
    procs: dict[str, PartyProcess] = {}
    deadline = time.monotonic() + timeout_s
    try:
        t0 = time.perf_counter()
        for name in names:
            procs[name] = launcher.start(name)
        await_ready(list(procs.values()), deadline)
        startup = time.perf_counter() - t0
        task_bytes = encode_task(task)
        t_load = time.perf_counter()
        for role in parties:
            data = party_data.get(role.name)
            header = {
                "op": "start",
                "name": role.name,
                "role": role.role,
                "target": target,
                "params": dict(params),
                "parties": [[p.name, p.role] for p in parties],
                "network": relay.network_for(role.name) if relay else None,
                "scratch": str(root / f"party-{names.index(role.name)}"),
            }
            body = b"" if data is None else encode_value(data)
            _link.write(procs[role.name].conn, header, task_bytes, body)
        _await_loaded(procs, deadline)
        t1 = time.perf_counter()
        load = t1 - t_load
        for proc in procs.values():
            _link.write(proc.conn, {"op": "go"})
        _route(procs, session, deadline)
        wall = time.perf_counter() - t1
    except BaseException:
        for proc in procs.values():
            proc.kill()
        if relay is not None:
            relay.close()
        shutil.rmtree(root, ignore_errors=True)
        raise
    for proc in procs.values():
        with contextlib.suppress(Exception):
            _link.write(proc.conn, {"op": "bye"})
        proc.kill()
    shutil.rmtree(root, ignore_errors=True)
    if relay is not None:
        carried = [(m.sender, m.receiver, origin + m.at_s) for m in session.transcript]
        for link in relay.close(carried):
            session.add_external_traffic(
                link.sender,
                link.receiver,
                link.n_bytes,
                messages=link.chunks,
                rounds=link.rounds,
                payload=bytes(link.payload) if link.payload else None,
            )
    for proc in procs.values():
        session.add_phase_times(proc.phases)
    recipient = procs[task.recipient]
    if recipient.output is None:
        raise PartyProgramError(
            "failed",
            f"the recipient {task.recipient!r} returned no output; its party program must "
            f"return a {output_type.__name__}",
            task.recipient,
        )
    try:
        output = decode_value(recipient.output, output_type)
    except CodecError as exc:
        raise PartyProgramError(
            "failed",
            f"the recipient's output is not a valid {output_type.__name__}: {exc}",
            task.recipient,
        ) from None
    return ProtocolRun(
        output=output,
        session=session,
        wall_s=wall,
        cpu_s=sum(p.cpu_s for p in procs.values()),
        peak_rss_mb=max((p.peak_rss_mb for p in procs.values()), default=0.0),
        startup_s=startup,
        load_s=load,
        party_costs={n: {"cpu_s": p.cpu_s, "peak_rss_mb": p.peak_rss_mb} for n, p in procs.items()},
    )


def _await_loaded(procs: Mapping[str, PartyProcess], deadline: float) -> None:
    """Wait until every party has decoded its data and the public task (``loaded``);
    raise :class:`PartyProgramError` for a party that failed, died or broke the
    protocol instead, or when ``deadline`` passes."""
    pending = {p.conn: p for p in procs.values()}
    sentinels = {p.process.sentinel: p for p in procs.values()}
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            late = sorted(p.name for p in pending.values())
            raise PartyProgramError(
                "party_failed", f"parties {late} did not load their data in time"
            )
        live = list(pending.values())
        ready = wait([p.conn for p in live] + [p.process.sentinel for p in live], left)
        for obj in ready:
            party = pending.get(obj)  # type: ignore[call-overload]
            if party is None:
                dead = sentinels.get(obj)  # type: ignore[call-overload]
                if dead is not None and dead.conn in pending and not dead.conn.poll():
                    raise PartyProgramError(
                        "party_failed",
                        f"party process {dead.name!r} ended ({_how(dead.process.exitcode)}) "
                        "before its program started",
                        dead.name,
                    )
                continue
            try:
                header, _ = _link.read(party.conn)
            except (EOFError, OSError, _link.LinkError):
                party.process.join(timeout=5)
                raise PartyProgramError(
                    "party_failed",
                    f"party process {party.name!r} ended ({_how(party.process.exitcode)}) "
                    "before its program started",
                    party.name,
                ) from None
            op = header.get("op")
            if op == "fail":
                raise _reported_failure(party, header)
            if op != "loaded":
                raise PartyProgramError(
                    "failed",
                    f"party {party.name!r} sent {op!r} before its program started",
                    party.name,
                )
            del pending[obj]


def _reported_failure(party: PartyProcess, header: Mapping[str, Any]) -> PartyProgramError:
    """The error a party's ``fail`` message reports (a status it may not give becomes
    ``failed``)."""
    status = str(header.get("status", "failed"))
    if status not in ("failed", "unsupported", "party_failed"):
        status = "failed"
    return PartyProgramError(status, str(header.get("message", "")), party.name)


def _route(procs: Mapping[str, PartyProcess], session: Session, deadline: float) -> None:
    """Carry messages until every party is done; raise on failure or deadlock."""
    by_conn = {p.conn: p for p in procs.values()}
    by_sentinel = {p.process.sentinel: p for p in procs.values()}
    while any(p.state != "done" for p in procs.values()):
        left = deadline - time.monotonic()
        if left <= 0:
            late = sorted(p.name for p in procs.values() if p.state != "done")
            raise PartyProgramError("party_failed", f"parties {late} did not finish in time")
        live = [p for p in procs.values() if p.state != "done"]
        ready = wait([p.conn for p in live] + [p.process.sentinel for p in live], min(left, 1.0))
        handled = False
        for obj in ready:
            party = by_conn.get(obj)  # type: ignore[call-overload]
            if party is None:
                continue
            handled = True
            try:
                header, frames = _link.read(party.conn)
            except (EOFError, OSError):
                party.process.join(timeout=5)
                raise PartyProgramError(
                    "party_failed",
                    f"party process {party.name!r} ended ({_how(party.process.exitcode)}) "
                    "before its program finished",
                    party.name,
                ) from None
            except _link.LinkError as exc:
                raise PartyProgramError(
                    "failed", f"party {party.name!r}: {exc}", party.name
                ) from None
            _handle(party, header, frames, procs, session)
        if handled:
            continue
        for obj in ready:
            party = by_sentinel.get(obj)  # type: ignore[call-overload]
            if party is not None and party.state != "done" and not party.conn.poll():
                raise PartyProgramError(
                    "party_failed",
                    f"party process {party.name!r} ended ({_how(party.process.exitcode)}) "
                    "before its program finished",
                    party.name,
                )
        live = [p for p in procs.values() if p.state != "done"]
        if live and all(p.state == "waiting" for p in live) and not ready:
            waits = "; ".join(
                f"{p.name!r} waits for {p.waiting_for[0]!r}"
                + (f" (tag {p.waiting_for[1]!r})" if p.waiting_for[1] is not None else "")
                for p in live
                if p.waiting_for is not None
            )
            raise PartyProgramError("failed", f"the parties are deadlocked: {waits}")


def _how(code: int | None) -> str:
    return f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"


def _handle(
    party: PartyProcess,
    header: dict[str, Any],
    frames: list[bytes],
    procs: Mapping[str, PartyProcess],
    session: Session,
) -> None:
    op = header["op"]
    try:
        if op == "send":
            receiver = str(header["to"])
            session.carry(party.name, receiver, frames[0], str(header.get("tag", "")))
            waiting = procs.get(receiver)
            if waiting is not None and waiting.state == "waiting":
                _try_deliver(waiting, session)
        elif op == "receive":
            tag = header.get("tag")
            party.waiting_for = (str(header["frm"]), None if tag is None else str(tag))
            party.state = "waiting"
            _try_deliver(party, session)
        elif op == "reveal":
            session.record_reveal(party.name, str(header["label"]), decode_value(frames[0]))
        elif op == "done":
            party.read_counters()
            party.phases = _phases(header.get("phases"))
            party.output = frames[0] if frames else None
            party.state = "done"
        elif op == "fail":
            raise _reported_failure(party, header)
        else:
            raise PartyProgramError("failed", f"party {party.name!r} sent unknown op {op!r}")
    except PartyProgramError:
        raise
    except (CodecError, SessionError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise PartyProgramError(
            "failed", f"party {party.name!r} broke the protocol ({op}): {exc}", party.name
        ) from None


def _try_deliver(party: PartyProcess, session: Session) -> None:
    assert party.waiting_for is not None
    frm, tag = party.waiting_for
    payload = session.take(frm, party.name, tag)
    if payload is not None:
        party.state, party.waiting_for = "running", None
        _link.write(party.conn, {"op": "deliver"}, payload)


def _phases(raw: Any) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    if not isinstance(raw, Mapping):
        return out
    for name, totals in raw.items():
        if isinstance(totals, Mapping):
            out[str(name)] = {k: float(totals.get(k, 0.0)) for k in ("wall_s", "cpu_s", "count")}
    return out


class ProtocolRunner:
    """Runs one backend's party programs on any problem: the cell's own run and every
    rerun an attack asks for go through the same runtime, so a backend cannot tell them
    apart.

    Parameters
    ----------
    launcher : PartyLauncher
        Starts the party processes.
    target : str
        The backend's import target.
    params : Mapping
        The backend's parameters.
    output_type : type
        The task kind's output type.
    sockets : bool
        The backend's ``Capabilities.sockets``.
    helpers : (Task, sequence of PartyRole), optional
        The helper parties for the cell's task, if already known; other tasks are
        described afresh in a throwaway party process.
    helpers_of : callable, optional
        ``helpers_of(task)`` gives the helper parties without a throwaway process (for
        a backend instance already in this process: tests and notebooks).
    timeout_s : float
        Deadline of one run.
    """

    def __init__(
        self,
        launcher: PartyLauncher,
        target: str,
        params: Mapping[str, Any],
        *,
        output_type: type,
        sockets: bool = False,
        helpers: tuple[Task, Sequence[PartyRole]] | None = None,
        helpers_of: Callable[[Task], Sequence[PartyRole]] | None = None,
        timeout_s: float = 3600,
    ) -> None:
        self.launcher = launcher
        self.target = target
        self.params = dict(params)
        self.output_type = output_type
        self.sockets = sockets
        self.timeout_s = timeout_s
        self._helpers: dict[bytes, tuple[PartyRole, ...]] = {}
        self._helpers_of = helpers_of
        if helpers is not None:
            self._helpers[encode_task(helpers[0])] = tuple(helpers[1])

    def helpers_for(self, task: Task) -> tuple[PartyRole, ...]:
        """The backend's helper parties for ``task`` (asked once per distinct task)."""
        key = encode_task(task)
        if key not in self._helpers and self._helpers_of is not None:
            self._helpers[key] = tuple(self._helpers_of(task))
        if key not in self._helpers:
            self._helpers[key] = describe_backend(
                self.launcher, self.target, self.params, task
            ).helpers
        return self._helpers[key]

    def run(self, task: Task, party_data: Mapping[str, Any]) -> ProtocolRun:
        """One run on ``task`` with ``party_data``."""
        return run_protocol(
            self.launcher,
            self.target,
            self.params,
            task,
            party_data,
            output_type=self.output_type,
            helpers=self.helpers_for(task),
            sockets=self.sockets,
            timeout_s=self.timeout_s,
        )

    def __call__(self, problem: Any) -> tuple[Any, Session]:
        """The rerun oracle: ``(output, session)`` of a run on ``problem``."""
        result = self.run(problem.task, problem.party_data)
        return result.output, result.session


def target_of(backend: Any) -> str:
    """The import target (``"module:Class"``) of a backend instance or class."""
    cls = backend if isinstance(backend, type) else type(backend)
    return f"{cls.__module__}:{cls.__qualname__}"


def runner_for(
    backend: Any, output_type: type, *, launcher: PartyLauncher | None = None
) -> ProtocolRunner:
    """A :class:`ProtocolRunner` for a backend instance whose class is importable by
    name (a module on the path, not a notebook cell), with its parameters."""
    return ProtocolRunner(
        launcher or PartyLauncher(),
        target_of(backend),
        backend.get_params(),
        output_type=output_type,
        sockets=backend.capabilities.sockets,
        helpers_of=backend.helpers,
    )
