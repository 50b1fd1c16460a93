"""Backends that misbehave on purpose, for the harness tests (imported by the cell
worker processes through the import path the runner passes on)."""

from __future__ import annotations

import time

import numpy as np

from pets.api import (
    AggregateOutput,
    Backend,
    Capabilities,
    Claim,
    PartyContext,
    PetClass,
    SecurityModel,
    Task,
)
from pets.backends.plaintext import Plaintext
from pets.tasks import finish_means, local_aggregate, sums_from_vector
from pets.wire import pack, unpack

ALL_KINDS = frozenset({"aggregate", "linkage", "train", "inference", "release", "query"})


class _Misbehaving(Backend):
    """No parameters, serves every kind, claims nothing; subclasses define ``run_party``."""

    def __init__(self) -> None:
        pass

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(task_kinds=ALL_KINDS, pet_class=PetClass.BASELINE, claim=Claim())


class Raising(_Misbehaving):
    """Raises inside the recipient's party program."""

    def run_party(self, context: PartyContext) -> object:
        if context.name == context.task.recipient:
            raise RuntimeError("deliberate failure in run")
        return None


class Sleeping(_Misbehaving):
    """Sleeps past any sensible timeout."""

    def __init__(self, *, seconds: float = 60.0) -> None:
        self.seconds = seconds

    def run_party(self, context: PartyContext) -> object:
        time.sleep(self.seconds)
        return None


class Crashing(_Misbehaving):
    """Kills its own party process, as a segfaulting native library would."""

    def run_party(self, context: PartyContext) -> object:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
        return None


class Hog(_Misbehaving):
    """Allocates memory until the harness stops it."""

    def __init__(self, *, mb: int = 4000) -> None:
        self.mb = mb

    def run_party(self, context: PartyContext) -> object:
        if context.name != context.task.recipient:
            return None
        blocks = []
        for _ in range(self.mb // 100):
            blocks.append(np.ones(100 * 2**20 // 8))
            time.sleep(0.01)
        time.sleep(30)
        return None


class WrongOutput(_Misbehaving):
    """Returns a number where the task needs its output type."""

    def run_party(self, context: PartyContext) -> object:
        return 42 if context.name == context.task.recipient else None


class Unsupporting(Backend):
    """Serves only the train task."""

    def __init__(self) -> None:
        pass

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(task_kinds=frozenset({"train"}), pet_class=PetClass.BASELINE)

    def run_party(self, context: PartyContext) -> object:
        raise AssertionError("the harness must not run an unsupported kind")


class SecretlyPlain(Plaintext):
    """Claims semi-honest cryptographic security but ships rows in the clear."""

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            task_kinds=ALL_KINDS,
            pet_class=PetClass.HE,
            claim=Claim(
                security_bits=128,
                security_model=SecurityModel.SEMI_HONEST,
                declared_leakage=("output",),
                formal=True,
            ),
        )


class LocalSums(Backend):
    """Aggregate where each holder sends only its per-cell sums (no rows)."""

    def __init__(self) -> None:
        pass

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(task_kinds=frozenset({"aggregate"}), pet_class=PetClass.BASELINE)

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        task = context.task
        holders = task.parties_with_role("data_holder")
        if context.name in holders:
            sums = local_aggregate(context.data, task)
            context.send(task.recipient, pack(sums.to_numpy()), tag="sums")
            return None
        if context.name != task.recipient:
            return None
        total = sum(unpack(context.receive(h, tag="sums")) for h in holders)
        template = local_aggregate(_empty(task), task)
        template.iloc[:, :] = total
        out = AggregateOutput(finish_means(template, task))
        context.reveal("table", out)
        return out


class TooLittleNoise(Backend):
    """Claims ``epsilon``-DP aggregates but adds Laplace noise of scale
    ``0.1 * sensitivity / epsilon`` per statistic: a tenth of what one statistic alone
    would need (and the budget is not split across the statistics either), so its true
    loss per patient is far above the claim. The DP audit must catch it.

    Parameters
    ----------
    epsilon : float
        The claimed epsilon.
    seed : int or None
        Seed of the noise.
    """

    def __init__(self, *, epsilon: float = 1.0, seed: int | None = None) -> None:
        self.epsilon = epsilon
        self.seed = seed

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            task_kinds=frozenset({"aggregate"}),
            pet_class=PetClass.DP,
            claim=Claim(
                epsilon=float(self.epsilon),
                delta=0.0,
                neighbouring="add-remove",
                accountant="none (the noise is miscalibrated on purpose)",
                formal=True,
            ),
        )

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        from pets.tasks import public_ranges

        task = context.task
        ranges = public_ranges()
        columns = sorted({m["column"] for m in task.params["measures"]})
        scales = np.array([1.0] + [max(abs(v) for v in ranges[c]) for c in columns]) * (
            0.1 / self.epsilon
        )
        holders = task.parties_with_role("data_holder")
        if context.name in holders:
            seed = None if self.seed is None else [self.seed, holders.index(context.name)]
            rng = np.random.default_rng(seed)
            frame = context.data.assign(
                **{c: context.data[c].astype(float).clip(*ranges[c]) for c in columns}
            )
            sums = local_aggregate(frame, task).to_numpy()
            noisy = sums + rng.laplace(0.0, 1.0, sums.shape) * scales
            context.send(task.recipient, pack(noisy), tag="noisy-sums")
            return None
        if context.name != task.recipient:
            return None
        total = sum(unpack(context.receive(h, tag="noisy-sums")) for h in holders)
        sums = sums_from_vector(np.asarray(total).ravel(), task)
        counts = sums["n"].clip(lower=0.0)
        table = finish_means(sums.assign(n=counts.clip(lower=1.0)), task)
        table["n"] = counts
        out = AggregateOutput(table)
        context.reveal("table", out)
        return out


def _empty(task: Task):
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype=float) for c in task.public["columns"]})


class Deadlocking(_Misbehaving):
    """Every party waits for a message from the next; nobody sends."""

    def run_party(self, context: PartyContext) -> object:
        names = context.party_names
        context.receive(names[(names.index(context.name) + 1) % len(names)])
        return None


class ScratchWriter(_Misbehaving):
    """Each party writes a file into its scratch folder and the recipient returns the
    pooled rows (as plaintext does)."""

    def run_party(self, context: PartyContext) -> object:
        (context.scratch / "left-behind.txt").write_text(context.name)
        return Plaintext().run_party(context)


class KeyInConstructor(Plaintext):
    """Generates a key in its constructor (it must only store its parameters)."""

    def __init__(self, *, key_bits: int = 2048) -> None:
        import secrets

        self.key_bits = key_bits
        self._key = secrets.token_bytes(key_bits // 8)


class MalformedClaim(Plaintext):
    """Claims differential privacy without a privacy unit or neighbouring relation."""

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            task_kinds=frozenset({"aggregate"}),
            pet_class=PetClass.DP,
            claim=Claim(epsilon=1.0, delta=0.0, privacy_unit="", formal=True),
        )


def _start_sleeper(how: str) -> str:
    """Fork a process that outlives this one's work: in this process group (``group``),
    in a new session (``setsid``) or behind a double fork in a new session
    (``double``). Returns its ``<pid>.<start>`` once it runs."""
    import os

    from pets.containment import owner_id

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the sleeper
        try:
            os.close(read_end)
            if how in ("setsid", "double", "kill_worker"):
                os.setsid()
            if how == "double" and os.fork():
                os._exit(0)
            os.write(write_end, owner_id().encode())
            os.close(write_end)
            time.sleep(600)
        finally:
            os._exit(0)
    os.close(write_end)
    if how == "double":
        os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as fh:
        return fh.read().decode()


class Forking(Plaintext):
    """Plaintext, but each party first forks a sleeping process (see ``how``) and notes
    its ``<pid>.<start>`` in ``pid_dir``; with ``how="kill_worker"`` the recipient then
    kills the cell's worker process outright, before the worker can clean up."""

    def __init__(self, *, how: str = "group", pid_dir: str = "") -> None:
        self.how = how
        self.pid_dir = pid_dir

    def run_party(self, context: PartyContext) -> object:
        import os
        import signal
        from pathlib import Path

        owner = _start_sleeper(self.how)
        # written whole or not at all: a party killed mid-write (the worker's death ends
        # the cell's processes) must not leave an empty note
        note = Path(self.pid_dir) / f"{self.how}-{context.name}"
        partial = note.with_name(f".{note.name}.partial")
        partial.write_text(owner)
        os.replace(partial, note)
        if self.how == "kill_worker" and context.name == context.task.recipient:
            fork_server = int(Path(f"/proc/{os.getppid()}/stat").read_text().split()[3])
            os.kill(fork_server, signal.SIGKILL)  # the fork server's parent: the worker
            time.sleep(600)
        return super().run_party(context)


class SlowPlaintext(Plaintext):
    """Plaintext, but each party first waits ``seconds``: a cell that is still running
    while another run's cell ends."""

    def __init__(self, *, seconds: float = 5.0) -> None:
        self.seconds = seconds

    def run_party(self, context: PartyContext) -> object:
        time.sleep(self.seconds)
        return super().run_party(context)


class SlowToBuild(Plaintext):
    """Plaintext whose constructor works for ``seconds`` (key generation, say, where
    the contract says a constructor only stores parameters): work the protocol's clock
    must not miss."""

    def __init__(self, *, seconds: float = 1.0) -> None:
        self.seconds = seconds
        time.sleep(seconds)


class LeavesAThread(Backend):
    """Prototyping style (runs in the worker): answers with local sums, leaving a
    non-daemon thread running, as a careless library might."""

    def __init__(self) -> None:
        pass

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(task_kinds=frozenset({"aggregate"}), pet_class=PetClass.BASELINE)

    def run(self, task: Task, session: object) -> AggregateOutput:
        import threading

        threading.Thread(target=time.sleep, args=(600,), daemon=False).start()
        return _pooled_in_process(task, session)


def _pooled_in_process(task: Task, session: object) -> AggregateOutput:
    """The aggregate in the prototyping style: each holder's sums, added, revealed."""
    total = None
    for holder in task.parties_with_role("data_holder"):
        with session.as_party(holder) as me:  # type: ignore[attr-defined]
            sums = local_aggregate(me.data, task)
        total = sums if total is None else total + sums
    with session.as_party(task.recipient):  # type: ignore[attr-defined]
        out = AggregateOutput(finish_means(total, task))
        session.reveal(task.recipient, "table", out)  # type: ignore[attr-defined]
    return out


#: What :class:`GlobalSetter` leaves in its module; a later cell must never see it.
CELLS_SEEN: list[str] = []


class GlobalSetter(LeavesAThread):
    """Prototyping style (runs in the cell's worker): records the cell in a module
    global and fails if an earlier cell's entry is already there, so a cell that shares
    a process's memory with an earlier one ends ``failed``."""

    def run(self, task: Task, session: object) -> AggregateOutput:
        if CELLS_SEEN:
            raise RuntimeError(f"a module global set by an earlier cell is visible: {CELLS_SEEN}")
        CELLS_SEEN.append(f"cell in process {__import__('os').getpid()}")
        return _pooled_in_process(task, session)


class PrintsAndCrashes(_Misbehaving):
    """Writes identifiers in several forms to standard error, then kills the worker (so
    the record is made from the stderr tail)."""

    def run(self, task: Task, session: object) -> object:
        import os
        import sys

        print("rows: 943 476 5919, 943-476-5919, 943.476.5919, 9434765919", file=sys.stderr)
        print("born 1980-05-04 or 04/05/1980, lives in LS12 4AB, district EH10", file=sys.stderr)
        sys.stderr.flush()
        os.abort()
