"""The Dask executor against the local one: real clusters, real cell processes.

A Dask task only starts and watches the cell's own worker process, exactly as the
runner does locally, so the records match the local executor's; a timeout, a run
resumed and a Dask worker killed mid-cell behave as they do locally, and no process of
a cell outlives it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import pets
from pets.containment import (
    SCRATCH_PREFIX,
    carrying,
    descendants,
    owner_id,
    process_table,
    sweep_stale_scratch,
)
from pets.executors import DaskExecutor
from pets.options import ExecutorWarning, OptionError
from pets.records import ResultStore
from pets.runner import RunOptions, execute_plan, plan_cells
from pets.scenarios import load_scenario

dask = pytest.importorskip("dask", reason="the dask extra is part of the test extra")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of one worker process, set up as the runner sets up its own."""
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            memory_limit=0,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as local,
        distributed.Client(local, set_as_default=False) as client,
    ):
        yield local.scheduler_address, client


def _dask_workers(client) -> dict[str, tuple[int, str]]:
    """Each Dask worker's pid and owner id (the prefix of its cells' tokens)."""
    client.wait_for_workers(1, timeout=60)
    return client.run(lambda: (os.getpid(), owner_id()))


class _Watch:
    """Counts, from a thread, the processes carrying a token under ``prefixes``."""

    def __init__(self, prefixes: list[str]) -> None:
        self.prefixes = prefixes
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, sum(len(carrying(p)) for p in self.prefixes))
            self._stop.wait(0.1)

    def __enter__(self) -> _Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _wait_until_gone(prefix: str, seconds: float = 20) -> None:
    """Wait until no process carries a token under ``prefix`` (killed processes take a
    moment to end)."""
    deadline = time.monotonic() + seconds
    while carrying(prefix) and time.monotonic() < deadline:
        time.sleep(0.1)


def _same_outcome(record) -> tuple:
    return (record["key"], record["status"], record["accuracy"], record["leakage"]["flags"])


def test_dask_local_cluster_gives_the_local_executors_records(tmp_path, registry, scenario_dir):
    frames = {}
    for executor in ("local", "dask"):
        frames[executor] = pets.run(
            ["multi_site_prevalence"],
            ["plaintext"],
            size=300,
            seeds=2,
            out=tmp_path / executor,
            registry=registry,
            scenario_dir=scenario_dir,
            jobs=2,
            executor=executor,
            progress=False,
        )
    local, on_dask = (
        {r.key: r.to_dict() for r in ResultStore(tmp_path / e).read()} for e in ("local", "dask")
    )
    assert len(local) == 2 and set(local) == set(on_dask)
    assert all(r["status"] == "ok" for r in on_dask.values()), on_dask
    for key in local:
        assert _same_outcome(local[key]) == _same_outcome(on_dask[key])
        assert on_dask[key]["isolation"] == "process"
        # forked from the Dask worker's warm cell server, as local cells are from the run's
        assert on_dask[key]["environment"]["cell_start"] == "warm"
        assert local[key]["environment"]["cell_start"] == "warm"
    manifest = ResultStore(tmp_path / "dask").read_manifest()
    assert manifest["options"]["executor"] == "dask"


def test_a_timeout_under_dask_is_recorded_and_leaves_nothing_then_resume_skips_it(
    tmp_path, registry, scenario_dir, cluster
):
    address, client = cluster
    workers = _dask_workers(client)
    prefixes = [f"{owner}/" for _, owner in workers.values()]
    scenario = load_scenario("multi_site_prevalence", scenario_dir)
    cells = plan_cells([scenario], ["sleeping"], registry, size=300, seeds=2)
    store = ResultStore(tmp_path)
    options = RunOptions(timeout_s=3, jobs=1, progress=False, executor=address)
    with _Watch(prefixes) as watch, pytest.warns(ExecutorWarning, match="authenticate"):
        (record,) = execute_plan(cells[:1], store, options)
    assert record.status == "timeout"
    assert "3 s timeout" in record.error
    assert watch.most > 0, "no process of a cell carried the Dask worker's token"
    assert [p for prefix in prefixes for p in carrying(prefix)] == []
    # the worker's warm cell server outlives the cell (it holds no cell's data or token)
    assert [p for _, owner in workers.values() for p in carrying(f"{owner}-server")]
    leftover = [
        f
        for _, owner in workers.values()
        for f in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}{owner}-*")
    ]
    assert leftover == []
    seen = []
    with pytest.warns(ExecutorWarning):
        execute_plan(cells, store, options, resume=True, on_record=seen.append)
    assert [(r.seed, r.status) for r in seen] == [(1, "timeout")]
    assert sorted(r.seed for r in store.read()) == [0, 1]


@pytest.mark.filterwarnings("ignore::pets.options.ExecutorWarning")
def test_a_dask_worker_killed_mid_cell_gives_a_failed_record(
    tmp_path, registry, scenario_dir, cluster
):
    address, client = cluster
    ((pid, owner),) = _dask_workers(client).values()
    _wait_until_gone(f"{owner}/")  # what an earlier test's cells left is being reaped
    stop = threading.Event()

    def kill_the_worker_once_the_cell_runs() -> None:
        while not stop.is_set():
            if len(carrying(f"{owner}/")) >= 3:  # the cell's parties are running
                os.kill(pid, signal.SIGKILL)
                return
            stop.wait(0.1)

    killer = threading.Thread(target=kill_the_worker_once_the_cell_runs, daemon=True)
    killer.start()
    try:
        frame = pets.run(
            ["multi_site_prevalence"],
            ["sleeping"],
            size=300,
            out=tmp_path / "run",
            registry=registry,
            scenario_dir=scenario_dir,
            timeout=120,
            executor=address.replace("tcp://", "dask://"),
            progress=False,
        )
    finally:
        stop.set()
        killer.join()
    (row,) = frame.to_dict("records")
    assert row["status"] == "failed", row["error"]
    assert "Dask worker" in row["error"] and "died" in row["error"], row["error"]
    _wait_until_gone(f"{owner}/")  # the cell's processes die with the Dask worker
    assert carrying(f"{owner}/") == []
    # the dead worker's scratch folder is swept by the next run on this machine
    stale = list(Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}{owner}-*"))
    sweep_stale_scratch()
    assert not any(f.exists() for f in stale)


@pytest.mark.filterwarnings("ignore::pets.options.ExecutorWarning")
def test_dask_cells_forked_from_one_server_share_no_memory(
    tmp_path, registry, scenario_dir, cluster
):
    # the backend sets a module global in the cell's worker and fails if an earlier
    # cell's is there (tests/test_cell_server.py shows it fails in a shared process);
    # both cells are forked from the one Dask worker's warm server
    address, _ = cluster
    frame = pets.run(
        ["multi_site_prevalence"],
        ["global_setter"],
        size=300,
        seeds=2,
        out=tmp_path / "run",
        registry=registry,
        scenario_dir=scenario_dir,
        jobs=1,
        executor=address,
        progress=False,
        leakage="off",
    )
    assert list(frame["status"]) == ["ok", "ok"], frame["error"].tolist()
    assert all('"cell_start": "warm"' in e for e in frame["environment"])


@pytest.mark.filterwarnings("ignore::pets.options.ExecutorWarning")
def test_cold_start_under_dask_starts_a_fresh_interpreter(
    tmp_path, registry, scenario_dir, cluster
):
    address, _ = cluster
    frame = pets.run(
        ["multi_site_prevalence"],
        ["plaintext"],
        size=300,
        out=tmp_path / "run",
        registry=registry,
        scenario_dir=scenario_dir,
        executor=address,
        warm=False,
        progress=False,
        leakage="off",
    )
    (row,) = frame.to_dict("records")
    assert row["status"] == "ok"
    assert '"cell_start": "cold"' in row["environment"]


def test_the_runs_own_cluster_admits_only_its_own_clients():
    from distributed.security import Security

    def dumpable() -> int:
        import ctypes

        return ctypes.CDLL("libc.so.6").prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE

    with DaskExecutor().connect(RunOptions(jobs=1, executor="dask")) as client:
        address = client.scheduler.address
        assert address.startswith("tls://")
        # a party that reaches the port holds no certificate of the run's own authority
        for attempt in (
            {"address": address, "security": Security.temporary()},
            {"address": address.replace("tls://", "tcp://")},
        ):
            with pytest.raises((OSError, TimeoutError)):
                distributed.Client(**attempt, timeout="3s", set_as_default=False)
        # the workers refuse inspection before any task: their memory holds the key
        assert set(client.run(dumpable).values()) == {0}


@pytest.mark.slow  # starts a cluster of its own besides the module's
def test_an_exception_in_the_runner_closes_its_cluster_and_kills_the_cells(
    tmp_path, registry, scenario_dir
):
    me = os.getpid()
    before = set(descendants(me))
    run: dict[int, int] = {}

    def fail(record) -> None:
        # the sleeping cell runs now: note the run's processes (the cluster's workers,
        # the cell's worker, its parties), then fail as a runner's bug would
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(set(descendants(me)) - before) < 5:
            time.sleep(0.1)
        table = process_table()
        run.update({p: table[p].start for p in set(descendants(me)) - before if p in table})
        raise RuntimeError("the runner failed")

    scenario = load_scenario("multi_site_prevalence", scenario_dir)
    cells = plan_cells([scenario], ["plaintext", "sleeping"], registry, size=300)
    options = RunOptions(timeout_s=300, jobs=2, progress=False, executor="dask")
    with pytest.raises(RuntimeError, match="the runner failed"):
        execute_plan(cells, ResultStore(tmp_path), options, on_record=fail)
    assert len(run) >= 5, run

    def alive() -> list[int]:
        table = process_table()
        return [
            p
            for p, start in run.items()
            if p in table and table[p].start == start and table[p].state != "Z"
        ]

    deadline = time.monotonic() + 30  # killed processes take a moment to end
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive() == []
    assert [r.backend for r in ResultStore(tmp_path).read()] == ["plaintext"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("daks", "did you mean 'dask'?"),
        ("dask://scheduler", "is not a scheduler address HOST:PORT"),
        ("tcp://scheduler:port", "is not a scheduler address HOST:PORT"),
        ("ray", "allowed: local, dask, or a scheduler address"),
    ],
)
def test_a_bad_executor_is_refused_in_one_line_before_anything_runs(
    tmp_path, registry, scenario_dir, value, expected
):
    with pytest.raises(OptionError, match="executor") as caught:
        pets.run(
            ["multi_site_prevalence"],
            ["plaintext"],
            out=tmp_path / "run",
            registry=registry,
            scenario_dir=scenario_dir,
            executor=value,
        )
    message = str(caught.value)
    assert expected in message and "\n" not in message
    assert not (tmp_path / "run").exists()
    with pytest.raises(OptionError, match=expected.split("'")[0]):
        RunOptions(executor=value)


def test_the_dask_executor_without_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(OptionError, match=r"pip install 'pets-sandbox\[dask\]'") as caught:
        RunOptions(executor="dask")
    assert "\n" not in str(caught.value)
    assert RunOptions(executor="local").executor == "local"


def test_scheduler_addresses_are_read_as_tcp():
    assert RunOptions(executor="dask://10.0.0.5:8786").executor == "tcp://10.0.0.5:8786"
    assert RunOptions(executor="tcp://sched.example:8786").executor == "tcp://sched.example:8786"
    assert RunOptions(executor="tls://sched.example:8786").executor == "tls://sched.example:8786"


def test_the_cli_refuses_a_bad_executor_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pets.cli", "run", "multi_site_prevalence", "--executor", "daks"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--executor (executor): 'daks'" in lines[0], done.stderr


@pytest.mark.slow  # the whole quick matrix (about 75 cells)
def test_the_quick_matrix_on_dask_matches_the_one_process_harness(tmp_path):
    import json
    import math

    from pets.registry import Registry

    reference = json.loads((Path(__file__).parent / "data" / "quick_accuracy.json").read_text())
    built_in = sorted({key.split("|")[1] for key in reference["cells"]})  # not others installed
    frame = pets.run(
        backends=built_in,
        quick=True,
        leakage="off",
        out=tmp_path / "run",
        registry=Registry.from_entry_points(),
        jobs=2,
        executor="dask",
        progress=False,
    )
    records = frame[frame["status"] != "unsupported"]
    keys = [
        "|".join(
            [row["scenario"], row["backend"], json.dumps(json.loads(row["params"]), sort_keys=True)]
        )
        for _, row in records.iterrows()
    ]
    assert sorted(keys) == sorted(reference["cells"])
    bad = records[(records["status"] != "ok") | (records["isolation"] != "process")]
    assert bad.empty, bad[["scenario", "backend", "status", "error"]].to_string()
    mismatched = []
    for key, (_, row) in zip(keys, records.iterrows(), strict=True):
        expected = reference["cells"][key]
        value = row[f"accuracy.{expected['primary']}"]
        assert row["accuracy.primary"] == expected["primary"]
        if expected["tolerance"] is None:
            assert math.isfinite(value) and -1.0 <= value <= 1.0 + 1e-9, (row["backend"], value)
        elif abs(value - expected["value"]) > expected["tolerance"]:
            mismatched.append((row["scenario"], row["backend"], expected["value"], value))
    assert not mismatched, mismatched
