"""Keeping a cell's processes and files inside the cell (Linux ``/proc``).

A cell is its worker process and everything started under it: the fork server, the
party processes, and whatever a backend forks, in the same process group, in a new
session (``setsid``) or behind a double fork. Process groups alone do not hold such a
tree together, so three things do:

- every process of a cell inherits an environment variable, :data:`CELL_VARIABLE`,
  whose value names the runner and the cell (:func:`carrying` finds them in
  ``/proc/<pid>/environ``, wherever they were reparented);
- the worker is a child subreaper (:func:`become_subreaper`), so a process whose
  parent exits is reparented to the worker, not to ``init``, while the worker lives;
- :func:`stop_cell` stops (``SIGSTOP``) the worker's descendants and the carriers of
  the cell's token until no new one appears, then kills them all (``SIGKILL``) and
  waits until they have ended, so a process cannot fork its way out between the look
  and the kill, and none is still listed when :func:`stop_cell` returns.

A run's scratch folder is named ``pets-cells-<pid>.<start>-*`` after the runner that
owns it (process id and start time, so a reused pid does not count as the owner);
:func:`sweep_stale_scratch` removes the folders of runners that are gone (killed with
``SIGKILL``, say) and kills what their cells left running.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CELL_VARIABLE",
    "SCRATCH_PREFIX",
    "ProcessInfo",
    "become_subreaper",
    "carrying",
    "claim_scratch",
    "descendants",
    "owner_id",
    "process_table",
    "stop_cell",
    "sweep_stale_scratch",
    "tree_memory_mb",
]

#: Environment variable every process of a cell inherits: ``<runner id>/<cell>``.
CELL_VARIABLE = "PETS_CELL"
#: Name prefix of a run's scratch folder in the temporary folder.
SCRATCH_PREFIX = "pets-cells-"
_PR_SET_CHILD_SUBREAPER = 36
_SCRATCH_NAME = re.compile(re.escape(SCRATCH_PREFIX) + r"(\d+)\.(\d+)-")


@dataclass(frozen=True)
class ProcessInfo:
    """One line of the process table."""

    pid: int
    ppid: int
    state: str
    start: int  # clock ticks after boot: with the pid, names one process for good


def _stat(pid: int | str) -> ProcessInfo | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    try:
        return ProcessInfo(int(pid), int(fields[1]), fields[0], int(fields[19]))
    except (IndexError, ValueError):
        return None


def process_table() -> dict[int, ProcessInfo]:
    """Every process this one can see, by pid."""
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            info = _stat(entry.name)
            if info is not None:
                table[info.pid] = info
    return table


def descendants(pid: int, table: dict[int, ProcessInfo] | None = None) -> list[int]:
    """The pids under ``pid`` (children, their children, ...), not ``pid`` itself."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for info in table.values():
        children.setdefault(info.ppid, []).append(info.pid)
    out: list[int] = []
    stack = list(children.get(pid, []))
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(children.get(p, []))
    return out


#: Where each memory measure is read in ``/proc/<pid>``, in order of preference:
#: ``rss`` the resident set (cheap); ``pss`` the proportional set (a process's private
#: pages, and each page it shares divided by the number of processes sharing it: a
#: walk of its page tables), or the resident set where the kernel has no
#: ``smaps_rollup``.
_MEASURES = {
    "rss": (("status", "VmRSS:"),),
    "pss": (("smaps_rollup", "Pss:"), ("status", "VmRSS:")),
}


def _memory_kib(pid: int, measure: str) -> int:
    """One process's memory by ``measure`` (see :data:`_MEASURES`) in KiB; 0 for a
    process that has gone."""
    for name, key in _MEASURES[measure]:
        try:
            text = Path(f"/proc/{pid}/{name}").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(key):
                with contextlib.suppress(ValueError):  # a line cut short counts as gone
                    return int(line.split()[1])
    return 0


def tree_memory_mb(pid: int, limit_mb: float | None = None) -> float:
    """Memory of ``pid`` and its descendants in MiB, as the sum of their proportional
    set sizes: a page the processes share (a fork server's imported libraries, which
    every party forked from it maps) counts once in all, not once in each, so a cell
    whose parties fork idle children is not charged for copies that do not exist.

    With ``limit_mb``, the cheap sum of resident sets (never below the proportional
    one) is taken first and returned when it is within the limit.
    """
    tree = [pid, *descendants(pid)]
    if limit_mb is not None:
        resident = sum(_memory_kib(p, "rss") for p in tree) / 1024
        if resident <= limit_mb:
            return resident
    return sum(_memory_kib(p, "pss") for p in tree) / 1024


def owner_id(pid: int | None = None) -> str:
    """``<pid>.<start time>`` of a process (default this one): a name no later process
    with the same pid can have."""
    pid = os.getpid() if pid is None else pid
    info = _stat(pid)
    return f"{pid}.{info.start if info else 0}"


def _alive(owner: str) -> bool:
    pid, _, start = owner.partition(".")
    info = _stat(pid)
    return info is not None and info.state != "Z" and str(info.start) == start


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux): orphans among its descendants are
    reparented to it instead of ``init``. Returns whether it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def carrying(prefix: str) -> list[int]:
    """Live processes whose environment sets :data:`CELL_VARIABLE` to a value starting
    with ``prefix``: a cell's token exactly, or (ending in ``/``) every cell of a run.

    A process whose environment cannot be read (another user's, or a non-dumpable one
    when this process lacks ``CAP_SYS_PTRACE``) is not found this way.
    """
    needle = f"\0{CELL_VARIABLE}={prefix}".encode()
    if not prefix.endswith("/"):
        needle += b"\0"  # one cell's token exactly: cell 1 is not cell 12
    me = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                blob = b"\0" + fh.read()
        except OSError:
            continue
        if needle in blob:
            found.append(int(entry.name))
    return found


def stop_cell(token: str | None, root: int | None = None, *, keep_root: bool = False) -> int:
    """Kill a cell's processes: ``root`` and its descendants, and every process carrying
    ``token``. Never this process.

    Each round stops (``SIGSTOP``) the ones not seen yet, so none can fork again, and
    looks again, until a round finds nothing new; then all are killed (``SIGKILL``),
    and it returns once they have ended (or after 5 s).

    Returns
    -------
    int
        How many processes were killed.
    """
    me = os.getpid()
    stopped: dict[int, int] = {}  # pid: start time
    for _ in range(100):
        table = process_table()
        found: set[int] = set()
        if root is not None and root in table:
            found.update(descendants(root, table))
            if not keep_root:
                found.add(root)
        if token:
            found.update(carrying(token))
        new = {p for p in found - stopped.keys() - {me} if p in table and table[p].state != "Z"}
        if not new:
            break
        for p in new:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGSTOP)
        stopped.update((p, table[p].start) for p in new)
    for p in stopped:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)
    _await_ends(stopped)
    return len(stopped)


def _await_ends(pids: dict[int, int], timeout_s: float = 5.0) -> None:
    """Wait until each killed process has ended (gone, or a zombie its parent has not
    reaped yet). ``SIGKILL`` is acted on when the kernel next schedules the process, so
    on a loaded machine a killed process can still be listed as stopped or running for
    a moment after :func:`os.kill` returned; it never runs its own code again, but a
    caller that counts what is left must not see it. ``pids`` maps each pid to its
    start time, so a later process given a freed pid is not waited for."""
    deadline = time.monotonic() + timeout_s
    left = dict(pids)
    while left and time.monotonic() < deadline:
        for p, start in list(left.items()):
            info = _stat(p)
            if info is None or info.state in ("Z", "X") or info.start != start:
                del left[p]
        if left:
            time.sleep(0.005)


def claim_scratch(parent: str | os.PathLike[str] | None = None) -> Path:
    """Create this run's scratch folder (mode 0700), named after this process."""
    base = tempfile.gettempdir() if parent is None else os.fspath(parent)
    return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{owner_id()}-", dir=base))


def sweep_stale_scratch(parent: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the scratch folders of runners that are gone, and kill every process
    their cells left behind (found by their token).

    Returns
    -------
    list of Path
        The folders removed.
    """
    base = Path(tempfile.gettempdir() if parent is None else parent)
    removed = []
    with contextlib.suppress(OSError):
        for folder in base.iterdir():
            match = _SCRATCH_NAME.match(folder.name)
            if match is None or not folder.is_dir() or folder.is_symlink():
                continue
            owner = f"{match.group(1)}.{match.group(2)}"
            if _alive(owner):
                continue
            stop_cell(f"{owner}/")
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                removed.append(folder)
    return removed
