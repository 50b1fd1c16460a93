"""Plans and their execution.

A plan is scenarios × backends × parameter sweeps × sizes × seeds × repeats. Each cell
runs in its own operating-system process (``python -m pets.worker``) with a timeout
and a memory limit; a crash, a hang or an exception becomes a record with a status and
a message, and the rest of the plan goes on. Records stream to the run folder as cells
finish, so an interrupted run loses nothing finished and ``resume`` skips done cells.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pets import options as checks
from pets.cell_spec import CellSpec
from pets.containment import sweep_stale_scratch
from pets.executors import executor_for
from pets.network import DEFAULT_PROFILES, NetworkProfile, NetworkProfiles
from pets.processes import refuse_inspection
from pets.records import Record, ResultStore, StoreError, cell_key
from pets.registry import Registry
from pets.scenarios import Scenario, find_scenarios, load_scenario
from pets.schedule import CellTimes, longest_first
from pets.worker import environment, unsupported_message

if TYPE_CHECKING:  # pragma: no cover
    from pets.api import Capabilities

__all__ = ["Cell", "RunOptions", "execute_plan", "plan_cells", "run"]


@dataclass(frozen=True)
class Cell:
    """One unit of work: a backend with parameters on a scenario at a size and seed."""

    scenario: Scenario
    backend: str
    target: str
    params: Mapping[str, Any]
    size: int
    seed: int
    repeat: int

    @property
    def key(self) -> str:
        """Identity of the cell (see :func:`pets.records.cell_key`)."""
        return cell_key(
            self.scenario.id,
            self.scenario.card_hash,
            self.backend,
            self.params,
            self.size,
            self.seed,
            self.repeat,
        )

    def spec(self, options: RunOptions) -> CellSpec:
        """Return what the worker process runs (see :class:`pets.cell_spec.CellSpec`)."""
        return CellSpec(
            scenario=self.scenario.id,
            card=str(self.scenario.path),
            card_text=self.scenario.card_text,
            card_hash=self.scenario.card_hash,
            backend=self.backend,
            target=self.target,
            params=dict(self.params),
            size=self.size,
            seed=self.seed,
            repeat=self.repeat,
            key=self.key,
            leakage=options.leakage,
            network=options.network.merged(self.scenario.network),
        )

    def record(self, status: str, **fields: Any) -> Record:
        """A record of this cell that the harness writes, not the cell's worker (it
        could not run, or did not end well): ``status`` and ``fields`` over the cell's
        identity, card version and kind, stamped now."""
        base: dict[str, Any] = {
            "scenario": self.scenario.id,
            "backend": self.backend,
            "params": dict(self.params),
            "size": self.size,
            "seed": self.seed,
            "repeat": self.repeat,
            "kind": self.scenario.kind,
            "card_hash": self.scenario.card_hash,
            "key": self.key,
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        return Record(**{**base, **fields, "status": status})

    def label(self) -> str:
        """Short human-readable name for progress lines."""
        params = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.scenario.id} / {self.backend}" + (f"[{params}]" if params else "")


@dataclass(frozen=True)
class RunOptions:
    """How cells are executed.

    Parameters
    ----------
    timeout_s : float
        Wall-clock limit per cell; the cell's whole process group is killed past it.
    memory_mb : float or None
        Resident-memory limit per cell (the worker and its children); None for none.
    jobs : int
        Cells run at once (default: the cores available, :func:`pets.options.available_cores`).
    leakage : str
        ``fast``, ``full`` or ``off``.
    python : str
        Interpreter that runs the worker.
    progress : bool
        Show a progress bar on standard error.
    network : NetworkProfiles
        Profiles every record's cost is modelled on (a card may add its own).
    warm : bool
        Fork each cell's worker from a cell server that imported the harness once
        (:mod:`pets.cell_server`) instead of starting a fresh interpreter per cell.
    executor : str
        Where cells execute (:mod:`pets.executors`): ``local`` (worker processes started
        here), ``dask`` (a Dask ``LocalCluster`` of ``jobs`` workers started for the run)
        or a Dask scheduler's address ``tcp://HOST:PORT`` (``dask://HOST:PORT`` is read
        as that).
    """

    timeout_s: float = 600.0
    memory_mb: float | None = 8192.0
    jobs: int = field(default_factory=checks.available_cores)
    leakage: str = "fast"
    python: str = field(default_factory=lambda: sys.executable)
    progress: bool = True
    network: NetworkProfiles = DEFAULT_PROFILES
    warm: bool = True
    executor: str = "local"

    def __post_init__(self) -> None:
        checks.check_cell_limits(self.timeout_s, self.memory_mb, self.jobs, self.leakage)
        object.__setattr__(self, "executor", checks.check_executor(self.executor))


def plan_cells(
    scenarios: Sequence[Scenario],
    backends: Sequence[str],
    registry: Registry,
    *,
    params: Mapping[str, Any] | None = None,
    size: int | None = None,
    quick: bool = False,
    seeds: int = 1,
    repeats: int = 1,
    sweep: bool = True,
    sizes: Sequence[int] | None = None,
) -> list[Cell]:
    """Expand a plan into cells.

    For each scenario and backend, parameters are the card's defaults for that backend,
    overridden by ``params`` (only keys the backend accepts); each sweep the card
    declares for the backend multiplies the cells, unless ``params`` fixes that
    parameter or ``sweep`` is False. Each size multiplies them too: ``sizes`` if given,
    else ``size``, else the card's quick size with ``quick``, else the card's ``sizes``
    sweep, else its ``size`` (see :meth:`pets.scenarios.DataSpec.cell_sizes`).
    """
    overrides = dict(params or {})
    names = _param_names(registry, backends) if overrides else {}
    checks.check_param_keys(overrides, names)
    cells = []
    sized = [(s, n) for s in scenarios for n in s.data.cell_sizes(size, sizes, quick)]
    for scenario, n in sized:
        for backend in backends:
            target = registry.target(backend)
            accepted = names.get(backend)
            base = dict(scenario.backend_params.get(backend, {}))
            base.update({k: v for k, v in overrides.items() if accepted is None or k in accepted})
            sweeps = [s for s in scenario.sweeps_for(backend) if s.param not in overrides]
            grids = [[(s.param, v) for v in s.values] for s in sweeps] if sweep else []
            for combo in itertools.product(*grids) if grids else [()]:
                cell_params = {**base, **dict(combo)}
                for seed, repeat in itertools.product(range(seeds), range(repeats)):
                    cells.append(Cell(scenario, backend, target, cell_params, n, seed, repeat))
    unique = list({c.key: c for c in reversed(cells)}.values())[::-1]
    if len(unique) < len(cells):
        warnings.warn(
            f"{len(cells) - len(unique)} cells of the plan repeat others (overlapping "
            "sweeps or a card given twice); each runs once",
            checks.PlanWarning,
            stacklevel=2,
        )
    return unique


def _param_names(registry: Registry, backends: Sequence[str]) -> dict[str, set[str] | None]:
    """Each backend's parameter names, read in a throwaway party process (backend code
    never runs in the runner); None where the backend cannot be built here."""
    from pets.runtime.harness import BackendDescription, PartyLauncher, describe_backends

    unique = list(dict.fromkeys(backends))
    answers = describe_backends(PartyLauncher(), [(registry.target(b), {}) for b in unique])
    return {
        b: set(a.param_names) if isinstance(a, BackendDescription) else None
        for b, a in zip(unique, answers, strict=True)
    }


def execute_plan(
    cells: Sequence[Cell],
    store: ResultStore,
    options: RunOptions,
    *,
    resume: bool = False,
    allow_changed: bool = False,
    on_record: Callable[[Record], None] | None = None,
) -> list[Record]:
    """Run ``cells``, appending each record to ``store`` as it finishes.

    The run holds the folder's writer lock throughout. Each cell's processes (worker,
    parties, anything a backend forks) are killed when the cell ends, however it ends;
    scratch folders of runs killed earlier are removed first.

    Parameters
    ----------
    resume : bool
        Skip cells that already have a record in ``store``.
    allow_changed : bool
        With ``resume``, go on although a card changed since the run began: the cells
        of the new card version are new cells (their key holds the card hash) and their
        records carry the new hash, so reports keep the versions apart.

    Returns
    -------
    list of Record
        Records of this plan's cells (with ``resume``, the earlier ones too).

    Raises
    ------
    StoreError
        Another process writes ``store``, a card changed (without ``allow_changed``),
        or a record could not be written (the message is one line).
    """
    refuse_inspection()  # party processes must not read or rewrite what this one writes
    sweep_stale_scratch()
    with store.lock():
        store.repair()
        done = store.done_keys() if resume else set()
        if not resume and store.jsonl_path.exists() and store.jsonl_path.stat().st_size:
            raise FileExistsError(
                f"{store.jsonl_path} already holds records; pass resume=True (--resume) to "
                "continue that run, or choose another output folder"
            )
        if resume and not allow_changed:
            _refuse_changed_cards(store, cells)
        _execute(cells, store, options, done, on_record)
        store.write_parquet()
        keys = {c.key for c in cells}
        return [r for r in store.read() if r.key in keys]


def _refuse_changed_cards(store: ResultStore, cells: Sequence[Cell]) -> None:
    """Refuse to resume when a card's hash differs from the one its records carry."""
    now = {c.scenario.id: c.scenario for c in cells}
    before: dict[str, set[str]] = {}
    for record in store.read():
        if record.scenario in now and record.card_hash:
            before.setdefault(record.scenario, set()).add(record.card_hash)
    for sid, hashes in sorted(before.items()):
        scenario = now[sid]
        if scenario.card_hash not in hashes or len(hashes) > 1:
            old = ", ".join(sorted(h[:12] for h in hashes - {scenario.card_hash}))
            raise StoreError(
                f"card {sid!r} ({scenario.path}) changed since {store.root} was written: "
                f"its records have sha256 {old}, the card now has "
                f"{scenario.card_hash[:12]}; restore the card, choose another --out, or "
                "pass --allow-changed to start a new card version kept apart in reports"
            )


def _execute(
    cells: Sequence[Cell],
    store: ResultStore,
    options: RunOptions,
    done: set[str],
    on_record: Callable[[Record], None] | None,
) -> None:
    todo = [c for c in cells if c.key not in done]
    _write_manifest(store, cells, options)
    bar = _progress(len(cells), len(cells) - len(todo), options.progress)
    dp_claims = set()
    for cell, (record, capabilities) in zip(list(todo), _unsupported_here(todo), strict=True):
        if record is not None:
            todo.remove(cell)
            store.append(record)
            if on_record:
                on_record(record)
            bar.update(1)
        elif capabilities is not None and capabilities.claim.epsilon is not None:
            dp_claims.add(cell.key)
    times = CellTimes.load()
    if options.jobs > 1 or options.executor != "local":  # one at a time: order is moot
        todo = longest_first(todo, times, options.leakage, lambda c: c.key in dp_claims)

    def deliver(cell: Cell, record: Record) -> None:
        store.append(record)
        times.note(cell, options.leakage, record)
        if on_record:
            on_record(record)
        bar.set_postfix_str(f"{cell.label()}: {record.status}", refresh=False)
        bar.update(1)

    with _terminate_as_interrupt():
        try:
            executor_for(options).run(todo, options, deliver)
        finally:
            bar.close()
            times.save()


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While running cells, turn SIGTERM into KeyboardInterrupt so the cleanup runs: the
    cells' process groups are killed and their scratch folders removed (records already
    written stay). Only the main thread can install the handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _unsupported_here(cells: Sequence[Cell]) -> list[tuple[Record | None, Capabilities | None]]:
    """Settle the cells whose backend does not serve the task kind without a process each.

    Capabilities are data: one throwaway party process reads them for every distinct
    backend and parameters (backend code never runs in the runner). Where a backend
    cannot be built there, the cell's worker decides and records why. Each cell gets
    its ``unsupported`` record (or None: it runs) and its backend's capabilities as
    declared (None where they could not be read).
    """
    from pets.api import Capabilities
    from pets.runtime.harness import BackendDescription, PartyLauncher, describe_backends

    if not cells:
        return []
    requests = list(dict.fromkeys((c.target, json.dumps(c.params, sort_keys=True)) for c in cells))
    try:
        answers = describe_backends(PartyLauncher(), [(t, json.loads(p)) for t, p in requests])
    except Exception:  # the probe as a whole failed: every worker decides on its own
        return [(None, None)] * len(cells)
    described = dict(zip(requests, answers, strict=True))
    out: list[tuple[Record | None, Capabilities | None]] = []
    for cell in cells:
        answer = described[(cell.target, json.dumps(cell.params, sort_keys=True))]
        try:
            capabilities = (
                Capabilities.from_dict(answer.capabilities)
                if isinstance(answer, BackendDescription) and not answer.unknown
                else None
            )
        except (TypeError, ValueError):
            capabilities = None
        if capabilities is None or cell.scenario.kind in capabilities.task_kinds:
            out.append((None, capabilities))
            continue
        record = cell.record(
            "unsupported",
            error=unsupported_message(cell.backend, capabilities.task_kinds, cell.scenario.kind),
            pet_class=capabilities.pet_class.value,
            environment=environment(),
        )
        out.append((record, capabilities))
    return out


def _write_manifest(store: ResultStore, cells: Sequence[Cell], options: RunOptions) -> None:
    previous = store.read_manifest()
    scenarios = {c.scenario.id: c.scenario for c in cells}
    manifest = {
        "created_at": previous.get("created_at")
        or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "updated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "schema_version": 1,
        "environment": environment(),
        "options": {
            "timeout_s": options.timeout_s,
            "memory_mb": options.memory_mb,
            "jobs": options.jobs,
            "leakage": options.leakage,
            "executor": options.executor,
            "network": list(options.network.names()),
        },
        "cards": {
            sid: {"path": str(s.path), "sha256": s.card_hash} for sid, s in scenarios.items()
        },
        "backends": sorted({c.backend for c in cells}),
        "seeds": sorted({c.seed for c in cells}),
        "sizes": sorted({c.size for c in cells}),
        "cells": len(cells),
    }
    store.write_manifest(manifest)


class _NoBar:
    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        pass

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, done: int, show: bool) -> Any:
    if not show:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="cell", desc="pets run", file=sys.stderr)


def run(
    scenarios: Iterable[str] | None = None,
    backends: Iterable[str] | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    size: int | None = None,
    sizes: Sequence[int] | None = None,
    quick: bool = False,
    seeds: int = 1,
    repeats: int = 1,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    allow_changed: bool = False,
    timeout: float = 600.0,
    memory_mb: float | None = 8192.0,
    jobs: int | None = None,
    leakage: str = "fast",
    registry: Registry | None = None,
    scenario_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    network: Iterable[NetworkProfile] = (),
    warm: bool = True,
    executor: str = "local",
) -> pd.DataFrame:
    """Run a plan and return its records as a flat DataFrame.

    Parameters
    ----------
    scenarios : iterable of str, optional
        Scenario ids or card paths (default: every card in the scenario folder).
    backends : iterable of str, optional
        Backend names (default: every registered backend).
    params : Mapping, optional
        Backend parameters overriding the cards' defaults and sweeps.
    size : int, optional
        Patients per cell (default: the card's size, or its quick size with ``quick``).
    sizes : sequence of int, optional
        A size sweep: one cell per size (default: the card's ``sizes``, if it lists
        them and neither ``size`` nor ``quick`` is given).
    quick : bool
        Use each card's ``quick_size``.
    seeds, repeats : int
        Seeds 0..seeds-1, each run ``repeats`` times.
    out : path-like, optional
        Run folder (default ``results/<timestamp>``).
    resume : bool
        Skip cells already recorded in ``out``; refused if a card changed since.
    allow_changed : bool
        With ``resume``, run a changed card as a new card version (see
        :func:`execute_plan`).
    timeout, memory_mb, jobs, leakage, progress, warm
        See :class:`RunOptions` (``jobs`` None: the cores available).
    registry : Registry, optional
        Where backend names are looked up (default: installed entry points).
    scenario_dir : path-like, optional
        Where scenario ids are looked up.
    network : iterable of NetworkProfile
        Profiles to model besides :data:`pets.network.DEFAULT_PROFILES` and the cards'.
    executor : str
        ``local`` (default), ``dask`` or a Dask scheduler's address (see
        :class:`RunOptions`); Dask needs the ``dask`` extra.

    Returns
    -------
    pandas.DataFrame
        One row per record (see :func:`pets.records.records_frame`); the run folder is
        in ``DataFrame.attrs["out"]``.
    """
    if allow_changed and not resume:
        raise checks.OptionError(
            "--allow-changed", "applies only with --resume (a new version of a card in a run)"
        )
    jobs = checks.available_cores() if jobs is None else jobs
    sizes = checks.check_size_sweep(size, sizes)
    checks.check_run_options(
        size=size,
        seeds=seeds,
        repeats=repeats,
        timeout=timeout,
        memory_mb=memory_mb,
        jobs=jobs,
        leakage=leakage,
        executor=executor,
    )
    registry = Registry.from_entry_points() if registry is None else registry
    directory = Path(scenario_dir) if scenario_dir is not None else None
    ids = list(scenarios) if scenarios is not None else list(find_scenarios(directory))
    cards = [load_scenario(s, directory) for s in checks.unique_names("scenario", ids)]
    names = checks.unique_names("backend", backends) if backends is not None else registry.names()
    for name in names:
        registry.target(name)  # unknown names fail before anything runs
    known = set(registry.names()) | set(Registry.from_entry_points().names())
    for card in cards:
        checks.check_card_backends(card, sorted(known))
    cells = plan_cells(
        cards,
        names,
        registry,
        params=params,
        size=size,
        sizes=sizes,
        quick=quick,
        seeds=seeds,
        repeats=repeats,
    )
    out_dir = checks.check_out(
        out if out is not None else Path("results") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    )
    store = ResultStore(out_dir)
    options = RunOptions(
        timeout_s=timeout,
        memory_mb=memory_mb,
        jobs=jobs,
        leakage=leakage,
        progress=progress,
        network=DEFAULT_PROFILES.merged({p.name: p for p in network}),
        warm=warm,
        executor=executor,
    )
    execute_plan(cells, store, options, resume=resume, allow_changed=allow_changed)
    frame = store.to_frame()
    keys = {c.key for c in cells}
    frame = frame[frame["key"].isin(keys)].reset_index(drop=True) if len(frame) else frame
    frame.attrs["out"] = str(out_dir)
    return frame
