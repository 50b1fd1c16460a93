"""Operating-system process helpers shared by the runner and backends that start
parties as processes."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

__all__ = ["die_with_parent", "drop_inspection_rights", "refuse_inspection"]

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_CAP_SYS_PTRACE = 19
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to kill this process with SIGKILL when the process that started it dies
    (for use as a ``preexec_fn``); elsewhere it does nothing."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def refuse_inspection() -> bool:
    """Make this process non-dumpable (Linux): another process of the same user can no
    longer read or write its memory (``/proc/<pid>/mem``, ``ptrace``) unless it holds
    ``CAP_SYS_PTRACE``. The harness's processes call it, so a party process cannot reach
    their data or their verdicts. Returns whether it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_DUMPABLE, 0) == 0
    except (OSError, AttributeError):
        return False


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_inspection_rights() -> bool:  # pragma: no cover - runs in party processes
    """Give up ``CAP_SYS_PTRACE`` (Linux), so that even a process started as root cannot
    read another process's memory once that process refuses inspection; and refuse
    inspection itself, so parties cannot read each other. Returns whether the capability
    is gone (True when it was never held)."""
    if not sys.platform.startswith("linux"):
        return False
    refuse_inspection()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        if libc.capget(ctypes.byref(header), data) != 0:
            return False
        mask = ~(1 << _CAP_SYS_PTRACE) & 0xFFFFFFFF
        data[0].effective &= mask
        data[0].permitted &= mask
        data[0].inheritable &= mask
        return libc.capset(ctypes.byref(header), data) == 0
    except (OSError, AttributeError):
        return False
