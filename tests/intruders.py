"""Backends that try to reach data or verdicts they are not entitled to, each by one
route an outside supplier could take (registered for the tests the way a supplier's
plugin is: by import target, and run by the cell worker in its own processes).

Every one of them, as the recipient, computes the aggregate from whatever other
parties' rows its route reached, and raises ``NothingReached`` when the route gave it
none: so a cell that ends ``ok`` means the route worked.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from pathlib import Path

import pandas as pd

from pets.api import (
    AggregateOutput,
    Backend,
    Capabilities,
    Claim,
    PartyContext,
    PetClass,
    SecurityModel,
)
from pets.backends.plaintext import pool_rows
from pets.tasks import finish_means, local_aggregate

#: Rows a holder's program stashed in this module, for a later program to pick up.
STASH: list[pd.DataFrame] = []


class NothingReached(RuntimeError):
    """The route reached no other party's data."""


class _Intruder(Backend):
    """Serves aggregate; claims input privacy (so a leak would contradict it)."""

    def __init__(self) -> None:
        pass

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            task_kinds=frozenset({"aggregate"}),
            pet_class=PetClass.MPC,
            claim=Claim(
                security_bits=128,
                security_model=SecurityModel.SEMI_HONEST,
                declared_leakage=("output",),
                formal=True,
            ),
        )

    def _answer(self, context: PartyContext, rows: list[pd.DataFrame]) -> AggregateOutput:
        if not rows:
            raise NothingReached(f"{type(self).__name__}: the route reached no other rows")
        pooled = pd.concat(rows, ignore_index=True)
        out = AggregateOutput(finish_means(local_aggregate(pooled, context.task), context.task))
        context.reveal("table", out)
        return out


class KeptView(_Intruder):
    """Each holder keeps its rows in a module global; the recipient reads them there."""

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        if context.data is not None:
            STASH.append(context.data)
        if context.name != context.task.recipient:
            return None
        return self._answer(context, [f for f in STASH if f is not context.data])


class MemoryScan(_Intruder):
    """The recipient searches every object in its process (the session's private
    attributes, the worker's problem, anything else) for other parties' tables."""

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        if context.name != context.task.recipient:
            return None
        columns = set(context.task.public["columns"])
        found = [
            obj
            for obj in gc.get_objects()
            if isinstance(obj, pd.DataFrame)
            and obj is not context.data
            and columns <= set(obj.columns)
            and len(obj)
        ]
        return self._answer(context, found)


class ForgedView(_Intruder):
    """The recipient builds a context for a data holder, naming itself that holder, and
    asks the harness for the holder's messages and data through it."""

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        task = context.task
        holders = task.parties_with_role("data_holder")
        if context.name in holders:
            context.send(holders[0] if context.name != holders[0] else task.recipient, b"x")
            return None
        if context.name != task.recipient:
            return None
        forged = PartyContext(
            context._conn,
            name=holders[0],
            role="data_holder",
            task=task,
            parties=context.parties,
            data=None,
            network=None,
            scratch=context.scratch,
        )
        rows = [] if forged.data is None else [forged.data]
        # messages the other holders sent to the first holder: the harness must not
        # hand them to the recipient's process whatever name the context carries
        got = forged.receive(holders[1])
        del got
        return self._answer(context, rows)


class StackWalk(_Intruder):
    """The recipient walks up the call stack looking for the harness's problem (every
    party's data, the held-out rows, the transcript check's samples)."""

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        if context.name != context.task.recipient:
            return None
        rows: list[pd.DataFrame] = []
        frame = sys._getframe()
        while frame is not None:
            for value in list(frame.f_locals.values()):
                party_data = getattr(value, "party_data", None)
                if isinstance(party_data, dict):
                    rows += [v for v in party_data.values() if isinstance(v, pd.DataFrame)]
            frame = frame.f_back
        return self._answer(context, rows)


class HarnessMemory(_Intruder):
    """The recipient reads the memory of the harness's cell process through
    ``/proc/<pid>/mem`` (a party running as the same user, or as root)."""

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        if context.name != context.task.recipient:
            return None
        pids = _harness_pids()
        for pid in pids:
            try:
                with open(f"/proc/{pid}/mem", "rb") as mem:
                    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
                    start = int(maps[0].split("-")[0], 16)
                    mem.seek(start)
                    mem.read(4096)
            except OSError:
                continue
            raise RuntimeError(f"read the harness's memory (process {pid})")
        if not pids:
            raise RuntimeError("found no harness process to read")
        raise NothingReached(f"{len(pids)} harness process(es) refused inspection")


class HarnessMemoryFromOwnEnv(HarnessMemory):
    """The same reader, run by party processes started under a backend's own
    environment: there the worker itself is the party's parent."""

    #: own_env.REQUIREMENT, so that it shares the probe backend's environment
    requirements = ("tomli-w==1.2.0",)

    @property
    def capabilities(self) -> Capabilities:
        from dataclasses import replace

        return replace(super().capabilities, requirements=self.requirements)


class ForgedRecord(_Intruder):
    """The recipient writes the record it would like (status ``ok``, exact answers, no
    flags) where the cell's worker writes its own, then kills the worker, so that the
    runner finds the forged file once the worker has ended."""

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        if context.name != context.task.recipient:
            return None
        folder = Path(os.environ["TMPDIR"])  # under the cell's folder <n>, beside <n>.spec.json
        while not (folder.parent / f"{folder.name}.spec.json").exists():
            folder = folder.parent
        specs = [folder.parent / f"{folder.name}.spec.json"]
        spec = json.loads(specs[0].read_text())
        forged = {
            "scenario": spec["scenario"],
            "backend": spec["backend"],
            "params": spec["params"],
            "size": spec["size"],
            "seed": spec["seed"],
            "repeat": spec["repeat"],
            "key": spec["key"],
            "card_hash": spec["card_hash"],
            "status": "ok",
            "accuracy": {"primary": "median_relative_error", "median_relative_error": 0.0},
            "leakage": {"flags": [], "headline": {"worst_residual_risk": 0.0}},
        }
        for path in specs:
            out = path.with_name(path.name.replace(".spec.json", ".out.json"))
            out.write_text(json.dumps(forged))
        pid = os.getppid()
        for _ in range(4):  # up from the fork server to the cell's worker
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"pets.worker" in command or b"pets.cell_server" in command:
                os.kill(pid, signal.SIGKILL)
                break
            pid = int(stat[1])
        raise NothingReached("the forged record was written and the worker killed")


def _harness_pids() -> list[int]:
    """Processes whose command line runs the cell worker, or the cell server a warm
    worker was forked from (whose command line the worker keeps)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"pets.worker" in cmdline or b"pets.cell_server" in cmdline:
            pids.append(int(entry.name))
    return pids


class VerdictPatcher(_Intruder):
    """Ships every holder's rows to the recipient in the clear, and, in every party
    program, replaces the functions of ``pets.leakage`` that judge the cell so they
    report nothing."""

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        import pets.leakage

        def clean(*args: object, **kwargs: object) -> dict:
            return {"attacks": [], "flags": [], "headline": {"worst_residual_risk": 0.0}}

        pets.leakage.evaluate_leakage = clean
        pets.leakage._judge = lambda results, claim: ([], {"worst_residual_risk": 0.0})
        task = context.task
        pooled = pool_rows(context, task.parties_with_role("data_holder"), task.recipient)
        if pooled is None:
            return None
        return self._answer(context, [pooled])


class FileDrop(_Intruder):
    """Each holder drops its rows in a file beside its scratch folder; the recipient
    reads them from there, and not a byte crosses the harness's channel."""

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        import time

        from pets.wire import pack, unpack

        task = context.task
        holders = task.parties_with_role("data_holder")
        drop = context.scratch.parent
        if context.name in holders:
            part = drop / f"{context.name}.part"
            part.write_bytes(pack(context.data))
            part.rename(drop / f"{context.name}.drop")
            return None
        if context.name != task.recipient:
            return None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all((drop / f"{h}.drop").exists() for h in holders):
                break
            time.sleep(0.01)
        rows = [unpack((drop / f"{h}.drop").read_bytes()) for h in holders]
        return self._answer(context, rows)
