"""The main function of a party process (runs there, never in the harness).

A party process is forked from the harness's fork server, which preloaded the runtime
and the backend's module but never held any party's data, or, for a backend in its own
environment, started as a fresh interpreter of that environment
(:mod:`pets.runtime.venv`) that serves a link handed to it as a file descriptor. It
says ``hello``, then either describes the backend (``describe``: parameter names,
capabilities, helper parties) or runs one party program (``start``): it decodes its
own input and the public task and says ``loaded``; on the harness's ``go`` (sent once
every party has loaded, which starts the protocol's clock) it builds the backend from
its parameters, calls ``backend.run_party(context)`` and reports ``done`` with its
output, or ``fail`` with a status and a message.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from pets.processes import die_with_parent, drop_inspection_rights
from pets.registry import load_target
from pets.runtime import _link
from pets.runtime.codec import decode_task, decode_value, encode_value
from pets.runtime.context import PartyContext, PartyNetwork
from pets.tasks import PartyRole

__all__ = ["party_main", "serve_descriptor"]


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""


def _failure(exc: BaseException) -> dict[str, str]:
    from pets.api import PartyFailure, UnsupportedTask

    if isinstance(exc, UnsupportedTask):
        status, message = "unsupported", str(exc)
    elif isinstance(exc, PartyFailure):
        status, message = "party_failed", str(exc)
    else:
        status, message = "failed", f"{type(exc).__name__}: {exc}{_where(exc)}"
    return {"status": status, "message": message[:4000]}


def _fail(conn: Any, exc: BaseException) -> None:
    _link.write(conn, {"op": "fail", **_failure(exc)})


def _load(target: str) -> Any:
    return load_target(target)


def _describe_one(request: dict[str, Any], task: Any) -> dict[str, Any]:
    cls = _load(request["target"])
    params = dict(request["params"])
    names = list(cls.param_names())
    if request.get("import_only"):
        return {
            "param_names": names,
            "unknown": [],
            "api_version": getattr(cls, "api_version", None),
        }
    unknown = sorted(set(params) - set(names))
    if unknown:
        return {"param_names": names, "unknown": unknown}
    backend = cls(**params)
    answer: dict[str, Any] = {
        "param_names": names,
        "unknown": [],
        "capabilities": backend.capabilities.to_dict(),
        "program": cls.runs_parties(),
        "api_version": getattr(cls, "api_version", None),
        "params": json.loads(json.dumps(backend.get_params(), default=repr)),
    }
    if task is not None:
        answer["helpers"] = [[p.name, p.role] for p in backend.helpers(task)]
    return answer


def _describe(conn: Any, header: dict[str, Any], frames: list[bytes]) -> None:
    task = decode_task(frames[0]) if frames and frames[0] else None
    answers = []
    for request in header["requests"]:
        try:
            answers.append(_describe_one(request, task))
        except Exception as exc:  # one broken backend must not hide the others
            answers.append({"error": _failure(exc)})
    _link.write(conn, {"op": "described", "answers": answers})


def _start(conn: Any, header: dict[str, Any], frames: list[bytes]) -> None:
    task = decode_task(frames[0])
    data = decode_value(frames[1]) if len(frames) > 1 and frames[1] else None
    target, params = str(header["target"]), dict(header["params"])
    network = header.get("network")
    scratch = Path(header["scratch"])
    scratch.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(scratch)
    context = PartyContext(
        conn,
        name=header["name"],
        role=header["role"],
        task=task,
        parties=tuple(PartyRole(n, r) for n, r in header["parties"]),
        data=data,
        network=None
        if network is None
        else PartyNetwork(
            order=tuple(network["order"]),
            listen=tuple(network["listen"]),
            peers={k: tuple(v) for k, v in network["peers"].items()},
        ),
        scratch=scratch,
    )
    # the party holds its data now: the harness starts the protocol's clock once every
    # party has said so, and lets them all go at once. The backend's module is imported
    # (a no-op where the fork server preloaded it) and the backend built only after
    # "go", so no backend code of this process runs before the clock starts
    _link.write(conn, {"op": "loaded"})
    go, _ = _link.read(conn)
    if go.get("op") != "go":
        raise RuntimeError(f"the harness sent {go.get('op')!r} instead of 'go'")
    output = _load(target)(**params).run_party(context)
    frames_out = [] if output is None else [encode_value(output)]
    _link.write(conn, {"op": "done", "phases": context.phase_times()}, *frames_out)


def party_main(conn: Any) -> None:  # pragma: no cover - runs in the party process
    """Serve one request from the harness on ``conn``, then exit."""
    die_with_parent()
    drop_inspection_rights()
    sys.stdout = sys.stderr  # a party's prints never mix with a runner's output
    _link.write(conn, {"op": "hello", "pid": os.getpid()})
    try:
        header, frames = _link.read(conn)
    except (EOFError, OSError):
        return
    try:
        if header["op"] == "describe":
            _describe(conn, header, frames)
        elif header["op"] == "start":
            _start(conn, header, frames)
        else:
            return
    except BaseException as exc:  # the party program's fault goes back as a message
        try:
            _fail(conn, exc)
        except (OSError, ValueError):
            return
        if not isinstance(exc, Exception):
            raise
    try:  # wait for the harness to read this process's counters before it exits
        _link.read(conn)
    except (EOFError, OSError, _link.LinkError):
        pass


def serve_descriptor(fd: int) -> None:  # pragma: no cover - runs in the party process
    """:func:`party_main` on the socket inherited as file descriptor ``fd`` (a party
    process started under a backend's own environment)."""
    from multiprocessing.connection import Connection

    party_main(Connection(fd))
