"""Where a run's cells execute: worker processes started here, or tasks on a Dask cluster.

Both executors run a cell the same way: :meth:`pets.cell_process.CellProcess.start`
starts the cell's own worker process (with its token, scratch folder and
die-with-parent), a poll loop enforces the timeout and the memory limit, and
:meth:`~pets.cell_process.CellProcess.kill` ends every process of the cell. They
differ only in which machine's process starts the worker:

- :class:`LocalExecutor` starts up to ``jobs`` cells from the runner's own process.
- :class:`DaskExecutor` hands each cell to a Dask cluster (a ``distributed.LocalCluster``
  the runner starts, or an existing scheduler). A Dask task never runs a backend in the
  Dask worker's process: it runs :func:`run_cell_task`, which starts the cell's worker
  process there exactly as the local executor does and returns the cell's record as
  JSON-able data. The cell crosses to the cluster as its JSON spec (the card's text,
  backend, parameters, size, seed: no patient rows; the worker process generates the
  cell's data itself); nothing else is pickled.

The runner stays the only writer of the run folder: each executor hands every record
back through ``deliver`` and the runner validates and appends it, so resume, masking
and the writer lock work the same whatever the executor.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pets.cell_process import CellProcess, worker_environment
from pets.cell_server import CellServer, kept_server
from pets.cell_spec import CellSpec
from pets.containment import claim_scratch, owner_id, sweep_stale_scratch
from pets.masking import redact
from pets.options import ExecutorWarning, OptionError
from pets.processes import refuse_inspection
from pets.records import Record

if TYPE_CHECKING:  # pragma: no cover
    from pets.runner import Cell, RunOptions

__all__ = [
    "DaskExecutor",
    "Deliver",
    "Executor",
    "LocalExecutor",
    "cell_from_spec",
    "dask_setup",
    "executor_for",
    "kept_cell_server",
    "run_cell_task",
    "worker_cell_server",
]

#: Called by an executor with each cell and its record, in the runner's process.
Deliver = Callable[["Cell", Record], None]

#: Seconds between two looks at a cell's worker process.
_POLL_S = 0.02
#: Seconds between two looks (from a Dask task) at whether the run was stopped.
_STOP_CHECK_S = 0.5


class Executor(Protocol):
    """Runs cells and hands back one record per cell."""

    def run(self, cells: Sequence[Cell], options: RunOptions, deliver: Deliver) -> None:
        """Run ``cells`` under ``options`` (timeout, memory limit, jobs), calling
        ``deliver(cell, record)`` in this process as each one ends. On return or on an
        exception (KeyboardInterrupt included) no process of these cells is left."""


def executor_for(options: RunOptions) -> Executor:
    """The executor named by ``options.executor`` (checked by :mod:`pets.options`)."""
    if options.executor == "local":
        return LocalExecutor()
    return DaskExecutor(address=None if options.executor == "dask" else options.executor)


@dataclass(frozen=True)
class LocalExecutor:
    """Up to ``jobs`` cells at once, each a worker process started by this process."""

    def run(self, cells: Sequence[Cell], options: RunOptions, deliver: Deliver) -> None:
        """See :meth:`Executor.run`."""
        pending = list(cells)
        running: list[CellProcess] = []
        tmp = claim_scratch()
        # tokens name the run as well as the cell: two runs of one process (from two
        # threads) number their cells alike, and ending one's cell 1 must not kill the
        # other's
        run = f"{owner_id()}/{uuid.uuid4().hex[:12]}"
        started = 0
        # the main thread outlives every run: it keeps its server for the next run
        kept = threading.current_thread() is threading.main_thread()
        server = (
            cell_server(tmp, run, options, libraries=len(pending) > 1, kept=kept)
            if pending
            else None
        )
        try:
            while pending or running:
                while pending and len(running) < max(1, options.jobs):
                    started += 1
                    cell = pending.pop(0)
                    token = f"{run}.{started}"
                    running.append(
                        CellProcess.start(
                            cell,
                            cell.spec(options),
                            tmp,
                            started,
                            token,
                            python=options.python,
                            server=server,
                        )
                    )
                time.sleep(_POLL_S)
                for job in list(running):
                    record = job.poll(options.timeout_s, options.memory_mb)
                    if record is None:
                        continue
                    running.remove(job)
                    deliver(job.cell, record)
        finally:
            for job in running:
                job.kill()
            if server is not None and not kept:
                server.close()
            shutil.rmtree(tmp, ignore_errors=True)


def cell_server(
    tmp: Path, run: str, options: RunOptions, *, libraries: bool = True, kept: bool = False
) -> CellServer | None:
    """A run's warm cell server (:mod:`pets.cell_server`), or None (cold starts) when
    ``options.warm`` is off or the server cannot start. ``run`` names the run
    (``<this process's id>/<random>``, the start of its cells' tokens; the server's is
    ``<run>.server``). ``libraries``: preload the
    libraries cells use too (a run of several cells). ``kept``: the server this process
    keeps between runs (:func:`kept_cell_server`), else one for this run alone, with
    ``tmp`` as its ``TMPDIR``."""
    if not options.warm:
        return None
    if kept:
        return kept_cell_server(options.python, libraries=libraries)
    try:
        return CellServer(
            options.python, worker_environment(tmp, f"{run}.server"), libraries=libraries
        )
    except OSError:
        return None


def kept_cell_server(python: str, *, libraries: bool = True) -> CellServer | None:
    """The cell server this process keeps between runs (:func:`pets.cell_server.kept_server`),
    or None if it cannot start (cells then start cold).

    The local executor's runs from the main thread, and each Dask worker process, use
    it: a notebook's second run, or a worker's second cell, starts warm at once. The
    server holds only imported modules: it never reads a card or a patient row, and each
    cell forked from it runs one cell and ends. Its token is ``<this process's
    id>-server``, outside every cell's ``<id>/...``, and its ``TMPDIR`` is the system's
    (it writes nothing; each cell sets its own).
    """
    environment = worker_environment(Path(tempfile.gettempdir()), f"{owner_id()}-server")
    try:
        return kept_server(python, environment, libraries=libraries)
    except OSError:
        return None


@dataclass(frozen=True)
class DaskExecutor:
    """Each cell a task on a Dask cluster.

    Parameters
    ----------
    address : str or None
        A scheduler address (``tcp://host:port``) to connect to; None starts a
        ``distributed.LocalCluster`` of ``jobs`` worker processes with one thread each,
        closed when the run ends however it ends.

    Notes
    -----
    The runner starts the ``LocalCluster`` with ``allowed-failures`` 0, so a Dask worker
    that dies while running a cell gives that cell a ``failed`` record at once; an
    existing cluster keeps its own setting (Dask retries such a task on another worker
    that many times first). When the run ends early (Ctrl-C, an exception), the running
    tasks are told to kill their cells and the rest are cancelled.
    """

    address: str | None = None

    def run(self, cells: Sequence[Cell], options: RunOptions, deliver: Deliver) -> None:
        """See :meth:`Executor.run`."""
        if not cells:
            return
        from distributed import Event, as_completed

        run_id = uuid.uuid4().hex[:12]
        with self.connect(options) as client:
            stop = Event(f"pets-stop-{run_id}", client=client)
            futures = {}
            for n, cell in enumerate(cells, 1):
                future = client.submit(
                    run_cell_task,
                    cell.spec(options).to_json(),
                    f"{run_id}-{n}",
                    options.timeout_s,
                    options.memory_mb,
                    stop.name,
                    options.warm,
                    key=f"pets-cell-{run_id}-{n}",
                    pure=False,
                )
                futures[future] = cell
            try:
                for future in as_completed(futures, loop=client.loop):
                    cell = futures[future]
                    deliver(cell, _record_of(future, cell))
            finally:
                with contextlib.suppress(Exception):  # the scheduler may be gone
                    stop.set()
                    client.cancel(list(futures))

    @contextlib.contextmanager
    def connect(self, options: RunOptions) -> Iterator[Any]:
        """A ``distributed.Client`` of the run's cluster, closed (with the cluster the
        run started) on leaving, however it is left.

        The cluster the run starts listens on TLS with a certificate authority made for
        this run (``Security.temporary()``): its keys exist only in the memory of the
        runner and of the Dask workers, and both refuse inspection
        (:func:`pets.processes.refuse_inspection`; the workers as they start, through
        the preload :func:`dask_setup`), so a party process cannot connect to the
        scheduler and run code in the runner or a Dask worker.

        Raises
        ------
        OptionError
            The scheduler at ``address`` cannot be reached.
        """
        import logging

        import dask
        from distributed import Client, LocalCluster
        from distributed.security import Security

        if self.address is not None:
            if self.address.startswith("tcp://"):
                warnings.warn(
                    f"the Dask scheduler at {self.address} does not authenticate its "
                    "clients: any process that reaches it, a backend's party among them, "
                    "can run code on the cluster and alter other cells' records; on a "
                    "shared network use tls:// with Dask's TLS settings",
                    ExecutorWarning,
                    stacklevel=4,
                )
            try:
                client = Client(self.address, timeout="10s", set_as_default=False)
            except (OSError, TimeoutError, TypeError, ValueError) as exc:  # TLS settings too
                raise OptionError(
                    "executor", f"cannot reach the Dask scheduler at {self.address}: {exc}"
                ) from None
            with client:
                yield client
            return
        with (
            dask.config.set({"distributed.scheduler.allowed-failures": 0}),
            LocalCluster(
                n_workers=max(1, options.jobs),
                threads_per_worker=1,
                processes=True,
                memory_limit=0,  # each cell's own limit is enforced by its poll loop
                dashboard_address=":0",
                silence_logs=logging.ERROR,
                security=Security.temporary(),
                preload=[__name__],
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            yield client


def dask_setup(worker: Any) -> None:
    """Preload of the Dask workers the run starts: refuse inspection before any task
    runs, so no cell's party can read the worker's memory (its TLS key among it)."""
    refuse_inspection()


def _record_of(future: Any, cell: Cell) -> Record:
    """The record a Dask task returned for ``cell``, checked; or a ``failed`` record
    saying why there is none."""
    from distributed import KilledWorker

    try:
        data = future.result()
    except KilledWorker as exc:
        worker = getattr(exc.last_worker, "address", "a worker")
        return _failed(
            cell,
            f"the Dask worker running the cell ({worker}) died before the cell ended "
            f"(KilledWorker after {exc.allowed_failures + 1} attempt(s))",
        )
    except Exception as exc:  # the task raised, was cancelled or its result was lost
        return _failed(cell, f"the cell's Dask task failed: {type(exc).__name__}: {exc}")
    try:
        record = Record.from_dict(data)
    except (TypeError, ValueError, KeyError) as exc:
        return _failed(cell, f"the cell's Dask task returned no valid record: {exc}")
    if record.key != cell.key:
        return _failed(cell, f"the cell's Dask task returned the record of cell {record.key}")
    return record


def _failed(cell: Cell, message: str) -> Record:
    return cell.record("failed", error=redact(message)[:4000])


def cell_from_spec(spec: CellSpec) -> Cell:
    """Rebuild a cell from the JSON spec the runner made of it (:meth:`Cell.spec`),
    reading the card from the spec's text; refused unless it is the same cell (key)."""
    from pets.runner import Cell
    from pets.scenarios import load_scenario

    scenario = load_scenario(spec.card, text=spec.card_text)
    cell = Cell(
        scenario,
        spec.backend,
        spec.target,
        dict(spec.params),
        spec.size,
        spec.seed,
        spec.repeat,
    )
    if cell.key != spec.key:
        raise ValueError(f"the cell spec's key {spec.key} does not match its contents")
    return cell


def run_cell_task(
    spec_json: str,
    label: str,
    timeout_s: float,
    memory_mb: float | None,
    stop_event: str,
    warm: bool = True,
) -> dict[str, Any]:
    """A Dask task: run one cell in a worker process of its own, return its record.

    Runs in a Dask worker's process, which only starts and watches the cell's worker
    process (:class:`~pets.cell_process.CellProcess`), as the runner does locally: the
    cell's processes carry the token ``<this process's id>/<label>`` and use a scratch
    folder named after this process, so :func:`pets.containment.sweep_stale_scratch`
    cleans up after a Dask worker that was killed. The cell's interpreter is this
    process's own. With ``warm``, the cell's worker is forked from this Dask worker's
    own cell server (:func:`worker_cell_server`), else started as a fresh interpreter.

    Parameters
    ----------
    spec_json : str
        The cell's spec (:meth:`pets.runner.Cell.spec`) as JSON.
    label : str
        Names the cell within the run (the second half of its token).
    timeout_s, memory_mb
        The cell's limits (see :class:`pets.runner.RunOptions`).
    stop_event : str
        Name of a Dask ``Event`` the runner sets when the run ends early: the cell is
        then killed.
    warm : bool
        Fork the cell's worker from a warm cell server (``RunOptions.warm``).

    Returns
    -------
    dict
        The record (:meth:`pets.records.Record.to_dict`).
    """
    refuse_inspection()  # a cell's parties must not read this process (it holds records)
    sweep_stale_scratch()
    spec = CellSpec.from_json(spec_json)
    cell = cell_from_spec(spec)
    stopped = _stop_signal(stop_event)
    tmp = claim_scratch()
    job = None
    try:
        job = CellProcess.start(
            cell,
            spec,
            tmp,
            1,
            f"{owner_id()}/{label}",
            python=sys.executable,
            server=worker_cell_server() if warm else None,
        )
        checked = time.monotonic()
        while True:
            record = job.poll(timeout_s, memory_mb)
            if record is not None:
                job = None  # poll ended the cell and removed its files
                return record.to_dict()
            if time.monotonic() - checked >= _STOP_CHECK_S:
                checked = time.monotonic()
                if stopped():
                    raise RuntimeError("the run was stopped; the cell was killed")
            time.sleep(_POLL_S)
    finally:
        if job is not None:
            job.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def worker_cell_server() -> CellServer | None:
    """This Dask worker process's warm cell server (:func:`kept_cell_server`), started by
    the first cell it runs and kept for the next; a later cell that finds it gone
    (it dies with the thread that started it) starts another."""
    return kept_cell_server(sys.executable)


def _stop_signal(name: str) -> Callable[[], bool]:
    """Whether the runner set the Dask event ``name``; False while it cannot be asked."""
    from distributed import Event

    event = Event(name)

    def stopped() -> bool:
        try:
            return bool(event.is_set())
        except Exception:  # the scheduler is unreachable: the cell's own limits still hold
            return False

    return stopped
