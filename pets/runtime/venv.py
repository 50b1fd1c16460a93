"""Party processes under another environment's interpreter.

A backend that declares requirements (:attr:`pets.api.Capabilities.requirements`) runs
its party programs in a virtual environment of its own (:mod:`pets.envs`).
:class:`EnvPartyLauncher` starts each party process there as a fresh interpreter
(``python -I``: no ``PYTHONPATH``, no user site, not the current folder) and speaks the
same framed protocol as a forked party over a socket pair: only bytes cross, nothing is
pickled in either direction. The interpreter finds ``pets`` and the backend's own
package through a folder of links to where the harness has them, so both sides run the
same code, while every other library comes from the environment. The process inherits
the cell's token and scratch ``TMPDIR``, asks Linux to kill it when the worker dies and
gives up its inspection rights, as a forked party does (``party_main``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import weakref
from multiprocessing.connection import Connection
from pathlib import Path

from pets.runtime.launcher import PartyProcess, PartyProgramError

__all__ = ["EnvPartyLauncher", "import_folder"]

_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from pets.runtime._party import serve_descriptor; serve_descriptor(int(sys.argv[2]))"
)


class _Interpreter:
    """A started interpreter, seen through the part of ``multiprocessing.Process`` the
    harness uses (``pid``, ``sentinel``, ``exitcode``, ``is_alive``, ``kill``, ``join``)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.sentinel = os.pidfd_open(popen.pid)  # readable once the process has ended
        weakref.finalize(self, os.close, self.sentinel)

    @property
    def exitcode(self) -> int | None:
        return self._popen.poll()

    def is_alive(self) -> bool:
        return self._popen.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._popen.kill()

    def join(self, timeout: float | None = None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout)


def import_folder(target: str, into: Path) -> Path:
    """Fill ``into`` with links to the harness's ``pets`` package and to the top-level
    package (or module) of the backend's import ``target``, as found on this process's
    path, and return it. Finding a top-level package runs none of its code.

    Raises
    ------
    ImportError
        If the backend's top-level package is not on this process's path.
    """
    import pets

    into.mkdir(parents=True, exist_ok=True)
    (into / "pets").symlink_to(Path(pets.__file__).resolve().parent, target_is_directory=True)
    top = target.split(":", 1)[0].split(".", 1)[0]
    if top == "pets":
        return into
    spec = importlib.util.find_spec(top)
    if spec is None:
        raise ImportError(f"the backend's package {top!r} is not on the harness's path")
    if spec.submodule_search_locations:
        (into / top).symlink_to(
            Path(next(iter(spec.submodule_search_locations))).resolve(), target_is_directory=True
        )
    elif spec.origin:
        origin = Path(spec.origin).resolve()
        (into / f"{top}{origin.suffix}").symlink_to(origin)
    return into


class EnvPartyLauncher:
    """Starts party processes under the interpreter of a backend's environment.

    Parameters
    ----------
    python : Path
        The environment's interpreter (``<env>/bin/python``).
    target : str
        The backend's import target; its top-level package is linked for the parties.
    """

    def __init__(self, python: Path, target: str) -> None:
        self.python = Path(python)
        self.target = target
        self._folder: Path | None = None

    def _paths(self) -> Path:
        if self._folder is None:
            folder = Path(tempfile.mkdtemp(prefix="pets-env-path-"))
            weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
            self._folder = import_folder(self.target, folder)
        return self._folder

    def start(self, name: str) -> PartyProcess:
        """Start one party process (it holds nothing until the harness sends it).

        Raises
        ------
        PartyProgramError
            If the interpreter cannot be started or the backend's package not found.
        """
        here, there = socket.socketpair()
        try:
            popen = subprocess.Popen(
                [str(self.python), "-I", "-c", _BOOT, str(self._paths()), str(there.fileno())],
                pass_fds=(there.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=2,  # a party's output never mixes with a runner's
            )
        except (OSError, ImportError, subprocess.SubprocessError) as exc:
            here.close()
            raise PartyProgramError(
                "failed", f"party {name!r} could not start under {self.python}: {exc}"
            ) from None
        finally:
            there.close()
        return PartyProcess(name, _Interpreter(popen), Connection(here.detach()))
