"""One cell's worker process, seen from the runner: start, watch, end, record.

The worker runs ``pets.worker.cell_process`` in a session of its own, with a scratch
folder as ``TMPDIR`` and the cell's token in :data:`pets.containment.CELL_VARIABLE`.
:meth:`CellProcess.poll` enforces the limits (a record already written wins over a
late timeout) and, once the cell ends for any reason, kills every process of the cell
(:func:`pets.containment.stop_cell`) and turns what happened into a record: the
worker's own (sealed with the cell's key, :func:`pets.cell_spec.seal_result`, so a
result file written by a party process is refused), or one saying how the process
ended with the last lines of its standard error, masked.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pets.cell_server import CellServer, ServedProcess, ServerGone
from pets.cell_spec import CellSpec, ForgedResult, open_result
from pets.containment import CELL_VARIABLE, stop_cell, tree_memory_mb
from pets.masking import redact
from pets.processes import die_with_parent
from pets.records import Record

if TYPE_CHECKING:  # pragma: no cover
    from pets.runner import Cell

__all__ = ["ENDING_GRACE_S", "CellProcess", "how_ended", "worker_environment"]

#: How a cell's worker starts: ``-c`` rather than ``-m pets.worker``, which would warn
#: (runpy) that the package imported the module first, burying a crash's real stderr.
#: The cell's key (which seals its record) comes on standard input, never in a file.
_WORKER = (
    "import sys; from pets.worker import cell_process; "
    "cell_process(sys.argv[1:], bytes.fromhex(sys.stdin.readline().strip()))"
)
#: Seconds between two measurements of a cell's memory.
_MEASURE_EVERY_S = 0.2
#: Seconds a worker has, once its sealed record is written, to end the cell itself
#: (kill what is left and leave); past them the runner ends it and keeps the record.
ENDING_GRACE_S = 30.0
#: Seconds between two looks at a result file that did not open with the cell's key.
_RECHECK_S = 1.0


def worker_environment(scratch: Path, token: str) -> dict[str, str]:
    """Environment of a cell's worker (or of a cell server, with its own token): this
    process's, with the scratch folder as ``TMPDIR``, this process's import path and the
    token every process of the cell inherits."""
    env = dict(os.environ)
    env["TMPDIR"] = str(scratch)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env[CELL_VARIABLE] = token
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def how_ended(code: int | None) -> str:
    """``exit code 3`` or ``killed by signal SIGSEGV (11)``."""
    if code is None or code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "signal"
    return f"killed by signal {name} ({-code})"


@dataclass
class CellProcess:
    """A started cell: its worker process and its files in the run's scratch folder."""

    cell: Cell
    process: subprocess.Popen[bytes] | ServedProcess
    spec_path: Path
    out_path: Path
    stderr_path: Path
    started: float
    scratch: Path
    token: str
    key: bytes = b""
    peak_mb: float = 0.0
    measured: float = 0.0
    killed_for: str | None = None
    sealed_at: float | None = None
    checked_at: float = -_RECHECK_S

    @classmethod
    def start(
        cls,
        cell: Cell,
        spec: CellSpec,
        folder: Path,
        n: int,
        token: str,
        *,
        python: str = sys.executable,
        server: CellServer | None = None,
    ) -> CellProcess:
        """Start cell number ``n`` of a run whose scratch folder is ``folder``: forked
        from ``server`` when one is given and still answers, else a fresh interpreter."""
        spec_path = folder / f"{n}.spec.json"
        out_path = folder / f"{n}.out.json"
        stderr_path = folder / f"{n}.stderr"
        spec_path.write_text(spec.to_json())
        # the cell's own scratch folder (short, so the fork server's socket fits in it):
        # whatever its backend writes there is removed when the cell ends, however it ends
        scratch = folder / str(n)
        scratch.mkdir(mode=0o700, exist_ok=True)
        key = secrets.token_bytes(32)  # seals the worker's record (see seal_result)
        if server is not None and server.alive():
            try:
                process: subprocess.Popen[bytes] | ServedProcess = server.start(
                    spec_path, out_path, stderr_path, scratch, token, key
                )
            except ServerGone:
                pass
            else:
                started = time.monotonic()
                return cls(
                    cell, process, spec_path, out_path, stderr_path, started, scratch, token, key
                )
        env = worker_environment(scratch, token)
        with open(stderr_path, "wb") as err:
            process = subprocess.Popen(
                [python, "-c", _WORKER, str(spec_path), str(out_path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent,  # a runner killed outright takes its cells along
            )
        assert process.stdin is not None
        with contextlib.suppress(OSError):  # a worker that died at once is recorded so
            process.stdin.write(key.hex().encode() + b"\n")
            process.stdin.close()
        return cls(
            cell, process, spec_path, out_path, stderr_path, time.monotonic(), scratch, token, key
        )

    def poll(self, timeout_s: float, memory_mb: float | None) -> Record | None:
        """The cell's record once it has ended (or was stopped at a limit), else None.

        A record the worker has written wins: past the timeout the cell is then ended
        and recorded with its own result, not as a timeout. A worker that has not
        ended :data:`ENDING_GRACE_S` after writing a sealed record is ended too, with
        its record kept; a result file that does not open with the cell's key (a
        party process may write one) starts no such clock.
        """
        code = self.process.poll()
        now = time.monotonic()
        elapsed = now - self.started
        written = self.out_path.exists()  # written atomically: complete if there
        if code is None:
            if written:
                if elapsed <= timeout_s and not self._past_grace(now):
                    return None  # the worker is ending the cell itself
            elif elapsed > timeout_s:
                self.killed_for = "timeout"
            elif memory_mb is not None and now - self.measured >= _MEASURE_EVERY_S:
                self.measured = now
                used = tree_memory_mb(self.process.pid, memory_mb)
                self.peak_mb = max(self.peak_mb, used)
                if used > memory_mb:
                    self.killed_for = "memory"
            if not written and self.killed_for is None:
                return None
        self.kill()  # the cell ends here: whatever it left running goes with it
        try:
            return self._record(elapsed, timeout_s, memory_mb)
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)
            for path in (self.spec_path, self.out_path, self.stderr_path):
                path.unlink(missing_ok=True)

    def _past_grace(self, now: float) -> bool:
        """Whether the worker's sealed record was written over :data:`ENDING_GRACE_S`
        ago (first seen then, to within a poll)."""
        if self.sealed_at is None and now - self.checked_at >= _RECHECK_S:
            self.checked_at = now
            try:
                open_result(self.out_path.read_bytes(), self.key)
            except (ForgedResult, OSError):
                pass
            else:
                self.sealed_at = now
        return self.sealed_at is not None and now - self.sealed_at > ENDING_GRACE_S

    def kill(self) -> None:
        """Kill the cell: its worker (if still running), everything under it and every
        process that carries its token, wherever it was reparented."""
        alive = self.process.poll() is None
        stop_cell(self.token, self.process.pid if alive else None)
        if alive:  # not reaped yet, so the group id cannot have been reused
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def _record(self, elapsed: float, timeout_s: float, memory_mb: float | None) -> Record:
        cell = self.cell
        cost = {"wall_s": elapsed, "peak_rss_mb": self.peak_mb or None}
        if self.killed_for == "timeout":
            return cell.record(
                "timeout",
                error=f"cell exceeded the {timeout_s:g} s timeout and was stopped",
                cost=cost,
            )
        if self.killed_for == "memory":
            return cell.record(
                "failed",
                error=f"cell exceeded the {memory_mb:g} MiB memory limit and was stopped",
                cost=cost,
            )
        if self.out_path.exists():
            try:
                return Record.from_dict(open_result(self.out_path.read_bytes(), self.key))
            except ForgedResult as exc:
                return cell.record(
                    "failed",
                    error=f"{exc}: a process of the cell wrote it, not the worker; discarded",
                    cost=cost,
                )
        tail = self.stderr_path.read_text(errors="replace").strip().splitlines()[-5:]
        message = f"cell process ended without a record ({how_ended(self.process.returncode)})"
        if tail:
            message += ": " + " | ".join(tail)
        return cell.record("failed", error=redact(message)[:4000], cost=cost)
