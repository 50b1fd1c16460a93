"""Measurements of whole cells run through the harness (the runner's API, leakage off).

* ``harness_overhead``: the plaintext backend's aggregate as the harness times it (party
  processes, metered channel, the record's ``cost.wall_s``) against the same library
  calls scripted in one process: each holder's rows through :func:`pets.wire.pack` and
  :func:`pets.wire.unpack`, pooled, :func:`pets.tasks.local_aggregate`,
  :func:`pets.tasks.finish_means`.
* ``per_cell_overhead``: one plaintext cell from plan to record (card, plan, worker
  process, data, party processes, protocol, scoring, record written) against the
  protocol time the record itself states.
* ``warm_start``: plaintext cells of one run started in a fresh interpreter each against
  forked from the run's warm cell server (seconds per cell after the run's first).
* ``secure_vs_pandas``: each installed secure backend's aggregate (its record's
  ``cost.wall_s``) against the pandas group-by that computes the same table in the clear.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import statistics
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from pets.bench.measures import BenchSettings, Measurement, Side, Skipped, time_repeats
from pets.records import Record, ResultStore
from pets.registry import Registry

__all__ = [
    "SECURE_BACKENDS",
    "CellFailed",
    "HarnessCells",
    "harness_overhead",
    "installed_secure_backends",
    "per_cell_overhead",
    "secure_vs_pandas",
    "warm_start",
]

#: Secure aggregate backends measured against pandas, with the library each needs.
SECURE_BACKENDS: Mapping[str, str] = {
    "tenseal-ckks": "tenseal",
    "tenseal-bfv": "tenseal",
    "paillier": "phe",
    "mpyc": "mpyc",
    "opendp": "opendp",
}


def installed_secure_backends(registry: Registry) -> list[str]:
    """The backends of :data:`SECURE_BACKENDS` registered here whose library is installed."""
    return [
        name
        for name, library in SECURE_BACKENDS.items()
        if name in registry and importlib.util.find_spec(library) is not None
    ]


class CellFailed(RuntimeError):
    """A cell the benchmark needed did not end ``ok``."""


class HarnessCells:
    """Runs single cells through the runner's API and keeps each one's record and its
    time from plan to record; a cell asked for twice runs once.

    Parameters
    ----------
    root : Path
        Folder of the run folders (one per backend) the cells' records are kept in.
    settings : BenchSettings
        The card and the patients per cell.
    registry : Registry
        Where backend names are looked up.
    """

    def __init__(self, root: Path, settings: BenchSettings, registry: Registry) -> None:
        from pets.scenarios import load_scenario

        self.root = Path(root)
        self.settings = settings
        self.registry = registry
        self.scenario = load_scenario(settings.scenario)
        self._done: dict[tuple[str, int], tuple[Record, float]] = {}
        self._problem: Any = None

    def problem(self) -> Any:
        """The cell's problem rebuilt here from the card, size and seed 0 (the same data
        every cell's worker builds)."""
        from pets.scenarios import build_problem

        if self._problem is None:
            self._problem = build_problem(self.scenario, self.settings.cell_size, 0)
        return self._problem

    def run(self, backend: str, repeat: int) -> tuple[Record, float]:
        """Cell ``repeat`` of ``backend``: its record and seconds from plan to record.

        Raises
        ------
        CellFailed
            The cell ended with another status than ``ok`` (its message says why).
        """
        if (backend, repeat) in self._done:
            return self._done[(backend, repeat)]
        from pets.runner import RunOptions, execute_plan, plan_cells

        recorded: list[float] = []
        start = time.perf_counter()
        cells = plan_cells(
            [self.scenario],
            [backend],
            self.registry,
            size=self.settings.cell_size,
            repeats=repeat + 1,
            sweep=False,
        )
        cells = [c for c in cells if c.repeat == repeat]
        options = RunOptions(leakage="off", progress=False, jobs=1)
        (record,) = execute_plan(
            cells,
            ResultStore(self.root / backend),
            options,
            resume=True,
            on_record=lambda _: recorded.append(time.perf_counter()),
        )
        if record.status != "ok":
            raise CellFailed(f"{backend} cell ended {record.status}: {record.error}")
        self._done[(backend, repeat)] = (record, recorded[-1] - start)
        return self._done[(backend, repeat)]

    def records(self, backend: str) -> Iterator[tuple[Record, float]]:
        """The ``repeats`` cells of ``backend``, run in turn."""
        for repeat in range(self.settings.repeats):
            yield self.run(backend, repeat)


def _pandas_aggregate(problem: Any) -> pd.DataFrame:
    """The aggregate in the clear: holders' rows pooled, grouped, means finished."""
    from pets.tasks import finish_means, local_aggregate

    task = problem.task
    holders = task.parties_with_role("data_holder")
    pooled = pd.concat([problem.party_data[h] for h in holders], ignore_index=True)
    return finish_means(local_aggregate(pooled, task), task)


def _plaintext_scripted(problem: Any) -> pd.DataFrame:
    """The plaintext backend's library calls in one process: every holder's rows
    encoded and decoded as its parties do, then pooled and aggregated."""
    from pets.tasks import finish_means, local_aggregate
    from pets.wire import pack, unpack

    task = problem.task
    holders = task.parties_with_role("data_holder")
    frames = [unpack(pack(problem.party_data[h])) for h in holders]
    pooled = pd.concat(frames, ignore_index=True)
    return finish_means(local_aggregate(pooled, task), task)


#: Samples of the in-process side taken after each cell (it is cheap, and short
#: timings scatter most on a shared machine).
SAMPLES_PER_CELL = 3


def _paired(cells: HarnessCells, backend: str, scripted: Any) -> tuple[list[Record], list[float]]:
    """The cells of ``backend`` and, after each one, :data:`SAMPLES_PER_CELL` timings
    of ``scripted(problem)`` in this process, so drift of the machine over the run
    falls on both sides."""
    problem = cells.problem()
    records, samples = [], []
    for record, _ in cells.records(backend):
        records.append(record)
        samples += time_repeats(lambda: scripted(problem), SAMPLES_PER_CELL)
    return records, samples


def _cost_figures(records: list[Record]) -> dict[str, Any]:
    """Medians of what the records say besides the protocol time."""
    out: dict[str, Any] = {}
    for key in ("party_startup_s", "cpu_s", "bytes_total", "peak_rss_mb"):
        values = [float(r.cost[key]) for r in records if r.cost.get(key) is not None]
        if values:
            out[key] = float(statistics.median(values))
    # a fast side must also be a right one: the harness's own score of each cell
    primary = records[0].accuracy.get("primary")
    if primary:
        out[f"worst_{primary}"] = max(float(r.accuracy[primary]) for r in records)
    return out


def harness_overhead(cells: HarnessCells) -> list[Measurement]:
    """The plaintext aggregate through the harness against the same calls scripted."""
    records, scripted = _paired(cells, "plaintext", _plaintext_scripted)
    return [
        Measurement(
            "harness_overhead",
            Side(
                "plaintext aggregate through the harness", tuple(r.cost["wall_s"] for r in records)
            ),
            Side("the same calls scripted in one process", tuple(scripted)),
            size=cells.settings.cell_size,
            figures=_cost_figures(records),
            note="protocol time the harness records / the same pack, pool and group-by "
            "scripted directly (1.0 = no overhead)",
        )
    ]


def per_cell_overhead(cells: HarnessCells) -> list[Measurement]:
    """A plaintext cell from plan to record against its own protocol time."""
    runs = list(cells.records("plaintext"))
    records = [r for r, _ in runs]
    whole = tuple(seconds for _, seconds in runs)
    protocol = tuple(r.cost["wall_s"] for r in records)
    figures = _cost_figures(records)
    figures["overhead_s"] = float(
        statistics.median(w - p for w, p in zip(whole, protocol, strict=True))
    )
    return [
        Measurement(
            "per_cell_overhead",
            Side("plaintext cell, plan to record", whole),
            Side("its protocol time (record cost.wall_s)", protocol),
            size=cells.settings.cell_size,
            figures=figures,
            note="everything around a cell (worker, data, parties, scoring, record) "
            "relative to the protocol itself; overhead_s is the absolute difference",
        )
    ]


def warm_start(cells: HarnessCells) -> list[Measurement]:
    """Plaintext cells of one run started cold (a fresh interpreter each) against warm
    (forked from the run's cell server): seconds per cell after the run's first."""
    from pets.runner import RunOptions, execute_plan, plan_cells

    per_cell: dict[bool, list[float]] = {}
    count = max(3, cells.settings.repeats + 1)
    for warm in (False, True):
        plan = plan_cells(
            [cells.scenario],
            ["plaintext"],
            cells.registry,
            size=cells.settings.cell_size,
            repeats=count,
            sweep=False,
        )
        stamps: list[float] = []
        records = execute_plan(
            plan,
            ResultStore(cells.root / ("warm" if warm else "cold")),
            RunOptions(leakage="off", progress=False, jobs=1, warm=warm),
            on_record=lambda _, stamps=stamps: stamps.append(time.perf_counter()),
        )
        failed = [r for r in records if r.status != "ok"]
        if failed:
            raise CellFailed(f"plaintext cell ended {failed[0].status}: {failed[0].error}")
        # the first cell also waits for the interpreter (or the server) to start
        per_cell[warm] = [b - a for a, b in itertools.pairwise(stamps)]
    return [
        Measurement(
            "warm_start",
            Side("plaintext cell, fresh interpreter per cell", tuple(per_cell[False])),
            Side("plaintext cell, forked from the cell server", tuple(per_cell[True])),
            size=cells.settings.cell_size,
            figures={"cells_per_run": count},
            note="seconds per cell after a run's first, cold / warm (> 1: the warm start "
            "saves that much)",
        )
    ]


def secure_vs_pandas(cells: HarnessCells) -> list[Measurement | Skipped]:
    """Each installed secure backend's aggregate against the pandas group-by; a backend
    whose library is missing or whose cell fails is skipped with the reason."""
    installed = installed_secure_backends(cells.registry)
    out: list[Measurement | Skipped] = [
        Skipped(f"secure_vs_pandas:{name}", f"{library} is not installed")
        for name, library in SECURE_BACKENDS.items()
        if name not in installed
    ]
    for backend in installed:
        try:
            records, pandas_s = _paired(cells, backend, _pandas_aggregate)
        except CellFailed as exc:
            out.append(Skipped(f"secure_vs_pandas:{backend}", str(exc)))
            continue
        figures = _cost_figures(records)
        figures["params"] = json.dumps(records[0].params, sort_keys=True)
        out.append(
            Measurement(
                f"secure_vs_pandas:{backend}",
                Side(
                    f"{backend} aggregate through the harness",
                    tuple(r.cost["wall_s"] for r in records),
                ),
                Side("pandas group-by of the pooled rows", tuple(pandas_s)),
                size=cells.settings.cell_size,
                figures=figures,
                note=f"{backend}'s protocol time / the same table computed in the clear",
            )
        )
    return out
