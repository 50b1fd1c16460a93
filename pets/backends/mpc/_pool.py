"""Start MPyC parties as separate processes, drive them, and account for their traffic.

:class:`PartyPool` starts one ``python .../_party.py`` process per party,
connected by MPyC's own sockets on loopback ports, and sends every party the same
command with its own input file. Data and results cross between the harness's session
and a party's process only inside that party's scope (its input is written, and its
output read, under ``session.as_party``). Any process that fails to start, dies, or
misses a deadline ends the run with :class:`~pets.api.PartyFailure`, and every party
process is killed before the error leaves the pool: none is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pets.api import PartyFailure
from pets.processes import die_with_parent
from pets.session import Session

__all__ = ["PartyPool", "causal_rounds", "free_ports"]

_PARTY_PROGRAM = Path(__file__).with_name("_party.py")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct ports that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _check_port(port: int, party: str, host: str = "127.0.0.1") -> None:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise PartyFailure(
                f"MPC party {party!r} cannot listen on port {port}: {exc.strerror or exc}; "
                "choose another base_port or leave it unset to pick free ports"
            ) from None


class _CausalClock:
    """Causal depth of the parties' messages, step by step (Lamport's happened-before).

    Each party reports its sends and received messages in order. A message's depth is
    one more than the deepest message its sender had received before sending it; TCP
    keeps each link in order, so the j-th message a party receives from a peer is the
    j-th that peer sent it. A step starts at depth 0 for everyone (the session chains
    steps with its own messages); its rounds are its deepest message. A message that
    merely arrived before a send is counted as a dependency of it, so under MPyC's
    asynchronous scheduling this is an upper bound on the protocol's round complexity
    for the timing of this run (a three-party secure sum measures 2, a six-party one 2
    to 4).
    """

    def __init__(self, m: int) -> None:
        self.m = m
        self._pending: list[list[tuple[str, int]]] = [[] for _ in range(m)]
        self._in_flight: dict[tuple[int, int], list[int]] = {}

    def step(self, events: Sequence[Sequence[Sequence[Any]]]) -> int:
        """Add each party's events of one step; return the step's rounds."""
        for pid, new in enumerate(events):
            self._pending[pid].extend((str(kind), int(peer)) for kind, peer in new)
        # messages of earlier steps that arrive late (MPyC opens a value once t + 1
        # shares are in) belong to those steps: they add no depth to this one
        for waiting in self._in_flight.values():
            waiting[:] = [0] * len(waiting)
        depth, deepest = [0] * self.m, 0
        progress = True
        while progress:
            progress = False
            for pid in range(self.m):
                queue = self._pending[pid]
                done = 0
                for kind, peer in queue:
                    if kind == "s":
                        depth_sent = depth[pid] + 1
                        self._in_flight.setdefault((pid, peer), []).append(depth_sent)
                        deepest = max(deepest, depth_sent)
                    else:
                        waiting = self._in_flight.get((peer, pid))
                        if not waiting:
                            break  # its send is not reported yet
                        depth[pid] = max(depth[pid], waiting.pop(0))
                    done += 1
                if done:
                    del queue[:done]
                    progress = True
        return deepest


def causal_rounds(events: Sequence[Sequence[Sequence[Any]]]) -> int:
    """Rounds of one step given each party's ordered ``("s"|"r", peer)`` events."""
    return _CausalClock(len(events)).step(events)


class PartyPool:
    """MPyC parties as running processes.

    Parameters
    ----------
    session : Session
        The run's session (traffic is added to it on close).
    names : sequence of str
        Session party of each MPyC party id, in id order.
    threshold : int
        Shamir threshold t (2t < m).
    bit_length : int
        Bit length of MPyC's secure integers.
    base_port : int or None
        First of m consecutive ports; None picks free ports.
    start_timeout_s, step_timeout_s : float
        Deadline for all parties to connect, and for each command.
    capture : bool
        Keep the raw bytes each party's sockets received, for the transcript checks.
    """

    def __init__(
        self,
        session: Session,
        names: Sequence[str],
        *,
        threshold: int,
        bit_length: int,
        base_port: int | None,
        start_timeout_s: float,
        step_timeout_s: float,
        capture: bool = True,
    ) -> None:
        self.session = session
        self.names = list(names)
        self.threshold = threshold
        self.bit_length = bit_length
        self.base_port = base_port
        self.start_timeout_s = start_timeout_s
        self.step_timeout_s = step_timeout_s
        self.capture = capture
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self._selector: selectors.DefaultSelector | None = None
        self._step = 0
        self._causal = _CausalClock(len(self.names))

    @property
    def m(self) -> int:
        """Number of parties."""
        return len(self.names)

    def pid_of(self, name: str) -> int:
        """MPyC party id of session party ``name``."""
        return self.names.index(name)

    # -- life cycle --------------------------------------------------------------------
    def __enter__(self) -> PartyPool:
        try:
            self._start()
        except BaseException:
            self._kill()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            try:
                self._stop()
            finally:
                self._kill()
            self._account()
        else:
            self._kill()
        if self._dir is not None:
            self._dir.cleanup()

    def _start(self) -> None:
        if not 0 <= 2 * self.threshold < self.m:
            raise ValueError(
                f"MPC threshold {self.threshold} needs more than {2 * self.threshold} parties "
                f"(honest majority), got {self.m}"
            )
        if self.base_port is None:
            ports = free_ports(self.m)
        else:
            ports = [self.base_port + i for i in range(self.m)]
            for name, port in zip(self.names[1:], ports[1:], strict=True):
                _check_port(port, name)  # party 0 only connects; the others listen
        self._dir = tempfile.TemporaryDirectory(prefix="pets-mpc-")
        root = Path(self._dir.name)
        self._selector = selectors.DefaultSelector()
        for pid in range(self.m):
            folder = root / f"party{pid}"
            (folder / "capture").mkdir(parents=True)
            addresses = []
            for other, port in enumerate(ports):
                addresses += ["-P", f"{'' if other == pid else '127.0.0.1'}:{port}"]
            config = {
                "pid": pid,
                "m": self.m,
                "bit_length": self.bit_length,
                "mpyc_args": [
                    *addresses,
                    "-T",
                    str(self.threshold),
                    "--no-log",
                    "--no-barrier",
                ],
                "stats": str(folder / "stats.json"),
                "capture_dir": str(folder / "capture") if self.capture else None,
            }
            (folder / "config.json").write_text(json.dumps(config))
            proc = subprocess.Popen(
                # run by path: the party needs numpy and mpyc, not the harness's imports
                [sys.executable, str(_PARTY_PROGRAM), str(folder / "config.json")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=open(folder / "stderr.txt", "w"),
                preexec_fn=die_with_parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            self._procs.append(proc)
            assert proc.stdout is not None
            os.set_blocking(proc.stdout.fileno(), False)
            self._selector.register(proc.stdout, selectors.EVENT_READ, pid)
        self._await_all("start", self.start_timeout_s)

    def _folder(self, pid: int) -> Path:
        assert self._dir is not None
        return Path(self._dir.name) / f"party{pid}"

    def _stderr_tail(self, pid: int) -> str:
        try:
            lines = (self._folder(pid) / "stderr.txt").read_text().strip().splitlines()
        except OSError:
            return ""
        return lines[-1][:300] if lines else ""

    def _await_all(self, what: str, timeout_s: float) -> None:
        """Wait for every party's answer to ``what``; add the rounds the step took to
        the session's causal chains."""
        assert self._selector is not None
        waiting = set(range(self.m))
        buffers = dict.fromkeys(waiting, b"")
        deadline = time.monotonic() + timeout_s
        while waiting:
            for pid in list(waiting):
                code = self._procs[pid].poll()
                if code is not None and b"\n" not in buffers[pid]:
                    tail = self._stderr_tail(pid)
                    raise PartyFailure(
                        f"MPC party {pid} ({self.names[pid]!r}) exited with code {code} "
                        f"during {what}" + (f": {tail}" if tail else "")
                    )
            left = deadline - time.monotonic()
            if left <= 0:
                late = ", ".join(f"{p} ({self.names[p]!r})" for p in sorted(waiting))
                raise PartyFailure(
                    f"MPC parties {late} did not finish {what} within {timeout_s:g} s"
                )
            for key, _ in self._selector.select(timeout=min(left, 0.2)):
                pid = key.data
                with contextlib.suppress(BlockingIOError):
                    buffers[pid] += os.read(key.fd, 65536)
            for pid in list(waiting):
                if b"\n" in buffers[pid]:
                    waiting.discard(pid)
        answers = [json.loads(buffers[pid].split(b"\n", 1)[0]) for pid in range(self.m)]
        rounds = self._causal.step([a["events"] for a in answers])
        self.session.synchronise(self.names, rounds)

    def run(
        self, op: str, inputs: dict[int, dict[str, np.ndarray]], **fields: Any
    ) -> dict[int, np.ndarray]:
        """Send command ``op`` to every party; party ``p`` gets the arrays ``inputs[p]``
        (written to its own folder, passed as file names under the same keys). Return
        the outputs of the parties that learned one."""
        self._step += 1
        outputs = {}
        for pid in range(self.m):
            cmd = {"op": op, **fields}
            for key, array in inputs.get(pid, {}).items():
                path = self._folder(pid) / f"{key}{self._step}.npy"
                np.save(path, np.asarray(array, dtype=object), allow_pickle=True)
                cmd[key] = str(path)
            cmd["output"] = outputs[pid] = str(self._folder(pid) / f"out{self._step}.npy")
            self._send(pid, cmd)
        self._await_all(op, self.step_timeout_s)
        return {
            pid: np.load(path, allow_pickle=True)
            for pid, path in outputs.items()
            if Path(path).exists()
        }

    def _send(self, pid: int, cmd: dict[str, Any]) -> None:
        proc = self._procs[pid]
        try:
            assert proc.stdin is not None
            proc.stdin.write((json.dumps(cmd) + "\n").encode())
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise PartyFailure(
                f"MPC party {pid} ({self.names[pid]!r}) is gone: {self._stderr_tail(pid)}"
            ) from None

    def _stop(self) -> None:
        for pid in range(self.m):
            self._send(pid, {"op": "stop"})
            stdin = self._procs[pid].stdin
            if stdin is not None:
                stdin.close()
        deadline = time.monotonic() + self.step_timeout_s
        for pid, proc in enumerate(self._procs):
            try:
                code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise PartyFailure(
                    f"MPC party {pid} ({self.names[pid]!r}) did not shut down"
                ) from None
            if code != 0:
                raise PartyFailure(
                    f"MPC party {pid} ({self.names[pid]!r}) exited with code {code}: "
                    f"{self._stderr_tail(pid)}"
                )

    def _kill(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self._procs:
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(Exception):
                    if stream is not None:
                        stream.close()
        if self._selector is not None:
            self._selector.close()
            self._selector = None

    def _account(self) -> None:
        """Add what each party's socket meter counted to the session."""
        for pid, name in enumerate(self.names):
            stats = json.loads((self._folder(pid) / "stats.json").read_text())
            for peer_key, n_bytes in stats["sent"].items():
                peer = int(peer_key)
                capture = self._folder(peer) / "capture" / f"from_{pid}.bin"
                payload = capture.read_bytes() if capture.exists() else None
                self.session.add_external_traffic(
                    name,
                    self.names[peer],
                    n_bytes,
                    messages=stats["messages"].get(peer_key, 0),
                    payload=payload,
                )
