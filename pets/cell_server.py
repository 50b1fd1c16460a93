"""Warm cell processes: cell workers forked from a server that imported the harness once.

Starting a cell's worker with a fresh interpreter costs about a second of imports
(pandas, scikit-learn, SciPy, the leakage attacks) before the cell does any work. A
:class:`CellServer` is a process the runner starts once (and, from a long-lived thread,
keeps for its next runs: :func:`kept_server`): it imports the worker's modules, then
waits. For each cell it forks a child that becomes the cell's
worker (``pets.worker.cell_process``), exactly as a cold start would: in a session of
its own, with the cell's scratch folder as ``TMPDIR``, the cell's token in
:data:`pets.containment.CELL_VARIABLE`, its standard error in the cell's file, killed
with its parent. The server never reads a card or a patient row and never runs a
backend, and each child runs one cell and ends, so nothing passes from one cell to the
next. The server reports each child's exit status, so a crash is recorded the way a
cold worker's is.

The server's own environment carries the token ``<runner>/<run>.server`` (a kept
server's: ``<runner>-server``, outside every run's ``<runner>/...``); processes a cell starts
carry the cell's token, which the child sets before it starts any.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pets.processes import die_with_parent

__all__ = [
    "PRELOAD",
    "PRELOAD_LIBRARIES",
    "CellServer",
    "ServedProcess",
    "ServerGone",
    "forked_from_server",
    "kept_server",
    "preload",
    "serve",
]

#: Modules the server imports before forking any cell (never a backend's module).
PRELOAD = (
    "pets.worker",
    "pets.api",
    "pets.leakage",
    "pets.runtime.harness",
    "pets.scenarios",
    "pets.session",
    "pets.tasks",
    "pets.testing.verdicts",
    "pets.registry",
)

#: What a run of several cells also preloads: the data generators and the libraries the
#: worker imports only where it uses them (the light-import rule keeps them out of
#: ``import pets``, so they are named here). :func:`preload` adds every attack family.
#: About 1.8 s once, against about a second in each cell that needs them; a run of one
#: cell skips it.
PRELOAD_LIBRARIES = (
    "pets.data.cohort",
    "pets.data.partition",
    "pets.data.real",
    "pets.leakage.dp_audit.models",
    "scipy.stats",
    "sklearn.datasets",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.model_selection",
    "sklearn.preprocessing",
)

_SERVER = "from pets.cell_server import serve; serve(libraries={libraries})"
_served = False


def forked_from_server() -> bool:
    """Whether this process is a cell worker forked from a :class:`CellServer`."""
    return _served


class ServerGone(RuntimeError):
    """The cell server ended or stopped answering."""


class CellServer:
    """The runner's side of a warm cell server.

    Parameters
    ----------
    python : str
        Interpreter of the server (and so of every cell forked from it).
    env : mapping
        The server's environment (a cell adds its ``TMPDIR`` and token to it).
    libraries : bool
        Also preload :data:`PRELOAD_LIBRARIES` and the attack families (worth it for a
        run of several cells).
    """

    def __init__(self, python: str, env: Mapping[str, str], *, libraries: bool = True) -> None:
        self._process = subprocess.Popen(
            [python, "-c", _SERVER.format(libraries=bool(libraries))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(env),
            start_new_session=True,
            preexec_fn=die_with_parent,  # a runner killed outright takes the server along
        )
        assert self._process.stdout is not None
        self._reply = self._process.stdout.fileno()
        os.set_blocking(self._reply, False)
        self._buffer = b""
        self._codes: dict[int, int] = {}
        self._ready = False
        # one request or reply read at a time, for executors that share a server
        # between threads (a Dask worker with several threads)
        self._lock = threading.RLock()

    @property
    def pid(self) -> int:
        """Process id of the server."""
        return self._process.pid

    def alive(self) -> bool:
        """Whether the server still runs."""
        return self._process.poll() is None

    def start(
        self,
        spec_path: Path,
        out_path: Path,
        stderr_path: Path,
        scratch: Path,
        token: str,
        key: bytes = b"",
    ) -> ServedProcess:
        """Fork one cell's worker; returns a handle like :class:`subprocess.Popen`'s.

        Raises
        ------
        ServerGone
            The server ended (it could not import the harness, say) or did not answer.
        """
        with self._lock:
            request = {
                "spec": str(spec_path),
                "out": str(out_path),
                "stderr": str(stderr_path),
                "scratch": str(scratch),
                "token": token,
                "key": key.hex(),  # seals the record; over the pipe, never in a file
            }
            try:
                assert self._process.stdin is not None
                self._process.stdin.write(json.dumps(request).encode() + b"\n")
                self._process.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise ServerGone(f"the cell server ended: {exc}") from None
            deadline = time.monotonic() + 120
            while True:
                for message in self._pump(max(0.0, deadline - time.monotonic())):
                    if message.get("op") == "started":
                        self._ready = True
                        return ServedProcess(self, int(message["pid"]))
                if time.monotonic() >= deadline or not self.alive():
                    raise ServerGone("the cell server did not start the cell")

    def close(self) -> None:
        """End the server (its cells, if any still run, die with it)."""
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        with contextlib.suppress(OSError):
            if self._process.stdout is not None:
                self._process.stdout.close()

    def code(self, pid: int, timeout_s: float = 0.0) -> int | None:
        """Exit status of a cell's worker (as :attr:`subprocess.Popen.returncode`), or
        None while it runs. A cell whose server died is reported killed (``-9``)."""
        with self._lock:
            deadline = time.monotonic() + timeout_s
            while pid not in self._codes:
                left = deadline - time.monotonic()
                self._pump(max(0.0, left))
                if pid in self._codes:
                    break
                if not self.alive():
                    self._pump(0.0)
                    return self._codes.get(pid, -signal.SIGKILL)
                if left <= 0:
                    return None
            return self._codes[pid]

    def _pump(self, timeout_s: float) -> list[dict[str, Any]]:
        """Read what the server said (waiting up to ``timeout_s`` for a first line)."""
        messages = []
        with selectors.DefaultSelector() as selector:
            selector.register(self._reply, selectors.EVENT_READ)
            waited = False
            while True:
                if not selector.select(0 if waited else timeout_s):
                    break
                waited = True
                try:
                    chunk = os.read(self._reply, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if message.get("op") == "ended":
                    self._codes[int(message["pid"])] = int(message["code"])
                messages.append(message)
        return messages


class ServedProcess:
    """A cell worker forked by a :class:`CellServer`: the part of the
    :class:`subprocess.Popen` interface the runner uses."""

    def __init__(self, server: CellServer, pid: int) -> None:
        self._server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """Exit status once the worker has ended, else None."""
        if self.returncode is None:
            self.returncode = self._server.code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the worker to end; raises :class:`subprocess.TimeoutExpired`."""
        limit = 3600.0 if timeout is None else timeout
        if self.returncode is None:
            self.returncode = self._server.code(self.pid, limit)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"cell worker {self.pid}", limit)
        return self.returncode


#: The servers :func:`kept_server` keeps, by interpreter: (environment, libraries, server).
_kept: dict[str, tuple[tuple[tuple[str, str], ...], bool, CellServer]] = {}
_kept_lock = threading.Lock()


def kept_server(python: str, env: Mapping[str, str], *, libraries: bool = True) -> CellServer:
    """The cell server this process keeps for ``python`` from one run to the next.

    A server holds imported modules only (no card, row, record or backend), and every
    cell is a fresh fork of it, so runs may share it as cells of one run do. It is
    kept while it lives and is asked for with the same environment; a run that wants
    ``libraries`` preloaded replaces one started without them. Another environment (a
    variable set since, another import path) replaces it, so a cell never inherits a
    stale environment. Kept servers are closed when this process exits, and die with
    the thread that started them (Linux's parent-death signal): only threads that live
    as long as the process (the main thread, a Dask worker's threads) should ask.

    Raises
    ------
    OSError
        The server could not be started.
    """
    key = tuple(sorted(env.items()))
    with _kept_lock:
        held = _kept.pop(python, None)
        if held is not None:
            held_key, held_libraries, server = held
            if server.alive() and held_key == key and (held_libraries or not libraries):
                _kept[python] = held
                return server
            server.close()
        server = CellServer(python, env, libraries=libraries)
        _kept[python] = (key, libraries, server)
        return server


@atexit.register
def _close_kept() -> None:
    with _kept_lock:
        for _, _, server in _kept.values():
            server.close()
        _kept.clear()


def preload(libraries: bool = True) -> None:
    """Import :data:`PRELOAD` and, with ``libraries``, :data:`PRELOAD_LIBRARIES` and
    every attack family: what each cell's worker would otherwise import after it was
    forked."""
    import importlib

    for module in (*PRELOAD, *(PRELOAD_LIBRARIES if libraries else ())):
        importlib.import_module(module)
    if libraries:
        from pets.leakage import attack_families

        attack_families()


def serve(libraries: bool = True) -> None:  # pragma: no cover - runs in the server process
    """The server's loop: fork a worker per request line on standard input, report
    ``started`` and ``ended`` on standard output; end when standard input closes."""
    from pets.processes import refuse_inspection

    refuse_inspection()  # it holds no data, but cells are forked from its memory
    preload(libraries)
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    replies = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    os.set_blocking(wake_read, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    private = (requests.fileno(), replies, wake_read, wake_write, devnull)

    def say(message: Mapping[str, Any]) -> None:
        data = json.dumps(dict(message)).encode() + b"\n"
        while data:
            data = data[os.write(replies, data) :]

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            say({"op": "ended", "pid": pid, "code": os.waitstatus_to_exitcode(status)})

    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(requests, selectors.EVENT_READ)
        selector.register(wake_read, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj == wake_read:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_read, 4096)
                    reap()
                    continue
                chunk = requests.read(65536)
                if not chunk:
                    reap()
                    os._exit(0)
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    request = json.loads(line)
                    pid = os.fork()
                    if pid == 0:
                        _become_cell(request, private)
                    say({"op": "started", "pid": pid})
            reap()


def _become_cell(request: Mapping[str, str], private: tuple[int, ...]) -> None:  # pragma: no cover
    """In the forked child: become the cell's worker, as a cold start would, and run it."""
    import tempfile

    from pets.containment import CELL_VARIABLE
    from pets.worker import cell_process

    global _served
    _served = True
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        die_with_parent()
        stderr = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(stderr, 2)
        os.close(stderr)
        for fd in private:  # the server's pipes stay the server's
            with contextlib.suppress(OSError):
                os.close(fd)
        os.environ["TMPDIR"] = request["scratch"]
        os.environ[CELL_VARIABLE] = request["token"]
        tempfile.tempdir = None  # found again from TMPDIR
        sys.stderr = open(2, "w", closefd=False)  # the cell's own file
    except BaseException:  # a child must never return into the server loop
        os._exit(70)
    cell_process([request["spec"], request["out"]], bytes.fromhex(request.get("key", "")))
    os._exit(1)  # cell_process ends the process itself
