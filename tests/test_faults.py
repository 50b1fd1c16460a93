"""Faults: every process of a cell dies with it, a written result wins over a late
timeout, a crash's record says what happened (masked). Real processes throughout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pets
from pets import cell_process
from pets.cell_process import CellProcess, how_ended
from pets.cell_spec import seal_result
from pets.containment import (
    CELL_VARIABLE,
    carrying,
    claim_scratch,
    descendants,
    owner_id,
    process_table,
    stop_cell,
    sweep_stale_scratch,
    tree_memory_mb,
)
from pets.records import Record, ResultStore
from pets.runner import RunOptions, execute_plan, plan_cells
from pets.scenarios import load_scenario

from conftest import make_registry


def _alive(owner: str) -> bool:
    pid, _, start = owner.partition(".")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and fields[19] == start


def _registry():
    registry = make_registry()
    registry.add("forking", "misbehaving:Forking")
    registry.add("leaves_a_thread", "misbehaving:LeavesAThread")
    registry.add("prints_and_crashes", "misbehaving:PrintsAndCrashes")
    return registry


def test_processes_a_backend_forks_do_not_outlive_the_cell(tmp_path, scenario_dir):
    """Same group, setsid, double fork, and a backend that kills its own worker before
    it can clean up: after the run, not one of the forked processes is alive."""
    registry = _registry()
    pids = tmp_path / "pids"
    pids.mkdir()
    scenario = load_scenario("multi_site_prevalence", scenario_dir)
    cells = []
    for how in ("group", "setsid", "double", "kill_worker"):
        cells += plan_cells(
            [scenario], ["forking"], registry, params={"how": how, "pid_dir": str(pids)}, size=300
        )
    options = RunOptions(timeout_s=300, jobs=2, progress=False)
    records = execute_plan(cells, ResultStore(tmp_path / "run"), options)
    by_how = {r.params["how"]: r for r in records}
    assert {h: by_how[h].status for h in ("group", "setsid", "double")} == dict.fromkeys(
        ("group", "setsid", "double"), "ok"
    ), [r.error for r in records]
    crashed = by_how["kill_worker"]
    assert crashed.status == "failed"
    assert "killed by signal SIGKILL (9)" in crashed.error
    forked = {p.name: p.read_text() for p in pids.iterdir() if not p.name.startswith(".")}
    parties = len(scenario.parties)
    for how in ("group", "setsid", "double"):
        assert sum(name.startswith(how + "-") for name in forked) == parties
    assert any(name.startswith("kill_worker-") for name in forked)
    survivors = sorted(name for name, owner in forked.items() if _alive(owner))
    assert survivors == [], f"{len(survivors)} of {len(forked)} forked processes survived"


def test_a_thread_left_running_does_not_turn_a_written_result_into_a_timeout(
    tmp_path, scenario_dir
):
    frame = pets.run(
        ["multi_site_prevalence"],
        ["leaves_a_thread"],
        size=300,
        out=tmp_path / "run",
        registry=_registry(),
        scenario_dir=scenario_dir,
        timeout=300,
        progress=False,
    )
    (row,) = frame.to_dict("records")
    assert row["status"] == "ok", row["error"]
    assert row["isolation"] == "api"


def _lingering_worker(tmp_path, scenario_dir, key, sealed_with):
    """A stand-in for a cell's worker that writes its result file (sealed under
    ``sealed_with``) and then hangs, as a worker stuck on its way out would; the
    runner's handle on it (a cell key of ``key``) once the file is there."""
    scenario = load_scenario("multi_site_prevalence", scenario_dir)
    (cell,) = plan_cells([scenario], ["plaintext"], _registry(), size=300)
    out = tmp_path / "1.out.json"
    record = Record(
        scenario=scenario.id,
        backend="plaintext",
        params={},
        size=300,
        seed=0,
        repeat=0,
        status="ok",
        key=cell.key,
    )
    sealed = seal_result(record.to_dict(), sealed_with).decode()
    code = (
        "import os, sys, time\n"
        f"open({str(out) + '.tmp'!r}, 'w').write({sealed!r})\n"
        f"os.replace({str(out) + '.tmp'!r}, {str(out)!r})\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    scratch = tmp_path / "1"
    scratch.mkdir()
    job = CellProcess(
        cell,
        process,
        tmp_path / "1.spec.json",
        out,
        tmp_path / "1.stderr",
        time.monotonic(),
        scratch,
        "no-token",
        key,
    )
    while not out.exists():
        assert process.poll() is None
        time.sleep(0.05)
    return job, process


def test_a_written_result_wins_over_a_late_timeout(tmp_path, scenario_dir):
    """The runner side alone: a process that wrote its record and then hangs, polled
    past its timeout, is recorded with its own result, and killed."""
    key = b"k" * 32
    job, process = _lingering_worker(tmp_path, scenario_dir, key, key)
    job.started -= 10  # ten seconds ago: past the one-second timeout below
    result = job.poll(timeout_s=1, memory_mb=None)
    assert result is not None and result.status == "ok"
    assert process.returncode is not None  # the hanging process was ended


def test_a_worker_lingering_after_its_sealed_record_is_ended_long_before_the_timeout(
    tmp_path, scenario_dir, monkeypatch
):
    """A worker that wrote its sealed record but does not leave is ended once the
    grace has passed, with its record kept, not left to run out the cell's timeout."""
    monkeypatch.setattr(cell_process, "ENDING_GRACE_S", 0.5)
    key = b"k" * 32
    job, process = _lingering_worker(tmp_path, scenario_dir, key, key)
    deadline = time.monotonic() + 120
    result = None
    while result is None and time.monotonic() < deadline:
        result = job.poll(timeout_s=600, memory_mb=None)
        time.sleep(0.05)
    assert result is not None and result.status == "ok"
    assert process.returncode is not None  # the lingering process was ended


def test_a_result_file_not_sealed_with_the_cells_key_starts_no_grace(
    tmp_path, scenario_dir, monkeypatch
):
    """A party process can write the cell's result file (forged: another key). That
    must not end a cell that is still working: only the worker's sealed record starts
    the grace."""
    monkeypatch.setattr(cell_process, "ENDING_GRACE_S", 0.5)
    job, process = _lingering_worker(tmp_path, scenario_dir, b"k" * 32, b"f" * 32)
    try:
        until = time.monotonic() + 3  # past the grace and two looks at the file
        while time.monotonic() < until:
            assert job.poll(timeout_s=600, memory_mb=None) is None
            time.sleep(0.05)
        assert process.poll() is None  # still running: not ended
        assert job.sealed_at is None
    finally:
        job.kill()
    assert process.returncode is not None


def test_a_crash_record_names_the_signal_and_masks_the_stderr_tail(tmp_path, scenario_dir):
    frame = pets.run(
        ["multi_site_prevalence"],
        ["prints_and_crashes"],
        size=300,
        out=tmp_path / "run",
        registry=_registry(),
        scenario_dir=scenario_dir,
        timeout=300,
        progress=False,
    )
    (row,) = frame.to_dict("records")
    assert row["status"] == "failed"
    error = row["error"]
    assert "killed by signal SIGABRT (6)" in error
    assert "rows:" in error and "lives in" in error  # the tail is there ...
    for secret in ("943", "5919", "1980", "04/05", "LS12", "4AB", "EH10"):
        assert secret not in error  # ... masked
    assert "RuntimeWarning" not in error and "runpy" not in error
    raw = (tmp_path / "run" / "records.jsonl").read_text()
    for secret in ("476 5919", "476-5919", "476.5919", "9434765919", "1980-05-04", "04/05/1980"):
        assert secret not in raw  # (a bare "5919" can be digits of a timing)


def test_how_ended_names_signals():
    assert how_ended(-11) == "killed by signal SIGSEGV (11)"
    assert how_ended(3) == "exit code 3"


def test_stop_cell_kills_a_forking_tree_and_the_token_carriers(tmp_path):
    """A process that keeps forking cannot escape: the tree is stopped, then killed;
    a setsid process reparented away is found by its token."""
    token = f"test-{owner_id()}/1"
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork(): os._exit(0)\n"  # double fork: reparented away
        "    time.sleep(600)\n"
        "while True:\n"  # and keep forking short-lived children
        "    if os.fork() == 0:\n"
        "        time.sleep(600); os._exit(0)\n"
        "    time.sleep(0.05)\n"
    )
    env = {**os.environ, CELL_VARIABLE: token}
    root = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 60
    while len(carrying(token)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(carrying(token)) >= 4
    killed = stop_cell(token, root.pid)
    root.wait()
    assert killed >= 4
    table = process_table()
    assert [p for p in carrying(token) if table.get(p) and table[p].state != "Z"] == []


def test_scratch_of_a_dead_runner_is_swept_and_a_live_ones_kept(tmp_path):
    mine = claim_scratch(tmp_path)
    (mine / "1").mkdir()
    stale = tmp_path / "pets-cells-999999.1-abcd"
    (stale / "1").mkdir(parents=True)
    (stale / "1.stderr").write_text("943 476 5919")
    reused = tmp_path / f"pets-cells-{owner_id().split('.')[0]}.1-efgh"  # pid reused
    reused.mkdir()
    other = tmp_path / "unrelated"
    other.mkdir()
    removed = sweep_stale_scratch(tmp_path)
    assert sorted(removed) == sorted([stale, reused])
    assert mine.exists() and other.exists()
    assert not stale.exists() and not reused.exists()


_FORKED_COPIES = """
import os, sys, time
import numpy as np
block = np.ones(100 * 2**20 // 8)  # 100 MiB, every page touched
for _ in range(8):
    if os.fork() == 0:
        if sys.argv[1] == "write":
            block += 1  # the child's own copy of every page
        os.write(1, b"r")  # one byte, one write: ready
        time.sleep(120)
        os._exit(0)
time.sleep(120)
"""


def _rss_sum_mb(pid: int) -> float:
    total = 0.0
    for p in [pid, *descendants(pid)]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


@pytest.mark.parametrize("children", ["share", "write"])
def test_a_cells_memory_counts_each_shared_page_once_and_each_copy(children):
    """Eight forked children of a process holding 100 MiB: sharing its pages they add
    next to nothing to the tree's memory (the sum of their resident sets counts the
    block nine times); writing their own copies they add 100 MiB each."""
    process = subprocess.Popen(
        [sys.executable, "-c", _FORKED_COPIES, children],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.read(8) == b"r" * 8
        time.sleep(0.2)  # the parent's last fork has returned
        memory, rss_sum = tree_memory_mb(process.pid), _rss_sum_mb(process.pid)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert rss_sum > 900
    if children == "share":
        assert memory < 300, (memory, rss_sum)
    else:
        assert memory > 850, (memory, rss_sum)
