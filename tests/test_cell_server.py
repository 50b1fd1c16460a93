"""Warm cell processes: workers forked from a cell server behave as cold ones do."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pets
from pets.cell_process import worker_environment
from pets.cell_server import CellServer
from pets.containment import carrying, process_table

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, scenario_dir: Path, name: str, warm: bool):
    return pets.run(
        ["multi_site_prevalence"],
        ["plaintext"],
        size=400,
        seeds=3,
        out=tmp_path / name,
        scenario_dir=scenario_dir,
        leakage="off",
        jobs=2,
        progress=False,
        warm=warm,
    )


def test_warm_and_cold_cells_give_the_same_records(tmp_path, scenario_dir):
    warm = _run(tmp_path, scenario_dir, "warm", True).sort_values("key")
    cold = _run(tmp_path, scenario_dir, "cold", False).sort_values("key")
    assert list(warm["key"]) == list(cold["key"]) and len(warm) == 3
    assert (warm["status"] == "ok").all() and (cold["status"] == "ok").all()
    for column in ("accuracy.primary", "pet_class", "isolation", "cost.bytes_total"):
        assert list(warm[column]) == list(cold[column])
    primary = warm["accuracy.primary"].iloc[0]
    assert list(warm[f"accuracy.{primary}"]) == list(cold[f"accuracy.{primary}"])
    assert set(warm["environment"].map(lambda e: '"cell_start": "warm"' in e)) == {True}
    assert set(cold["environment"].map(lambda e: '"cell_start": "cold"' in e)) == {True}


def _global_setter_run(out: Path, registry, scenario_dir: Path, seeds: int):
    """Cells of ``global_setter``, which fails if an earlier cell's module global shows."""
    return pets.run(
        ["multi_site_prevalence"],
        ["global_setter"],
        size=300,
        seeds=seeds,
        out=out,
        registry=registry,
        scenario_dir=scenario_dir,
        leakage="off",
        jobs=1,
        progress=False,
    )


def test_cells_forked_from_one_server_share_no_memory(tmp_path, registry, scenario_dir):
    frame = _global_setter_run(tmp_path / "run", registry, scenario_dir, 3)
    assert list(frame["status"]) == ["ok"] * 3, frame["error"].tolist()
    assert all('"cell_start": "warm"' in e for e in frame["environment"])


def test_the_global_setter_fails_when_a_process_is_shared(scenario_dir):
    # the control for the test above: two runs in one process, and the second fails
    import pytest

    from pets.scenarios import build_problem, load_scenario
    from pets.session import Session

    from misbehaving import CELLS_SEEN, GlobalSetter

    problem = build_problem(load_scenario("multi_site_prevalence", scenario_dir), 300, seed=0)
    CELLS_SEEN.clear()
    try:
        GlobalSetter().run(problem.task, Session(problem.task.parties, problem.party_data))
        with pytest.raises(RuntimeError, match="set by an earlier cell"):
            GlobalSetter().run(problem.task, Session(problem.task.parties, problem.party_data))
    finally:
        CELLS_SEEN.clear()


def test_a_script_without_a_main_guard_runs_once(tmp_path, scenario_dir):
    # party processes start from a fork server; multiprocessing would import the
    # caller's script in each of them and run its top level again
    script = tmp_path / "analysis.py"
    marker = tmp_path / "ran"
    script.write_text(
        "import pets\n"
        f"with open({str(marker)!r}, 'a') as fh:\n"
        "    fh.write('x')\n"
        f"pets.run(['multi_site_prevalence'], ['plaintext'], size=300, leakage='off',"
        f" out={str(tmp_path / 'run')!r}, scenario_dir={str(scenario_dir)!r},"
        " progress=False)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert marker.read_text() == "x"


def test_the_server_reports_how_a_cell_ended_and_ends_with_its_runner(tmp_path):
    folder = tmp_path / "cells"
    folder.mkdir()
    token = f"test-{os.getpid()}/server"
    server = CellServer(sys.executable, worker_environment(folder, token))
    try:
        # a spec file that is not JSON: the forked worker fails and exits non-zero
        spec = folder / "1.spec.json"
        spec.write_text("not json")
        (folder / "1").mkdir()
        cell = server.start(spec, folder / "1.out.json", folder / "1.stderr", folder / "1", "t/1")
        assert cell.wait(timeout=120) == 1
        assert "JSONDecodeError" in (folder / "1.stderr").read_text()
        assert not (folder / "1.out.json").exists()
        assert carrying(token) == [server.pid]  # the server's children are gone
    finally:
        server.close()
    assert not server.alive()
    assert carrying(token) == []


def test_the_cell_spec_round_trips_and_is_checked_once(scenario_dir):
    import pytest

    from pets.cell_spec import CellSpec
    from pets.network import NetworkProfile, NetworkProfiles
    from pets.options import OptionError

    spec = CellSpec(
        scenario="multi_site_prevalence",
        card=str(scenario_dir / "multi_site_prevalence.toml"),
        backend="plaintext",
        target="pets.backends.plaintext:Plaintext",
        params={"a": 1},
        size=300,
        seed=2,
        leakage="full",
        network=NetworkProfiles((NetworkProfile("hscn", latency_ms=8.0, bandwidth_mbit_s=500.0),)),
    )
    back = CellSpec.from_json(spec.to_json())
    assert back.to_dict() == spec.to_dict()
    assert [(p.name, p.latency_ms, p.bandwidth_mbit_s) for p in back.network] == [
        ("hscn", 8.0, 500.0)
    ]
    with pytest.raises(OptionError, match="allowed: fast, full, off"):
        CellSpec.from_dict({**spec.to_dict(), "leakage": "ful"})
    with pytest.raises(ValueError, match="unknown fields"):
        CellSpec.from_dict({**spec.to_dict(), "sede": 1})
    with pytest.raises(TypeError, match="'size' must be an int"):
        CellSpec.from_dict({**spec.to_dict(), "size": "300"})


def test_the_server_preloads_what_cells_use_and_no_backend():
    # the light-import rule keeps scikit-learn, SciPy and the attacks out of
    # ``import pets``; the server must still import them once for every cell it forks
    code = (
        "import pkgutil, sys; from pets.cell_server import preload; preload(); "
        "import pets.leakage as l; "
        "print([m.name for m in pkgutil.walk_packages(l.__path__, 'pets.leakage.') "
        "if m.name not in sys.modules]); "
        "print([m for m in ('sklearn.linear_model', 'sklearn.metrics', 'scipy.stats', "
        "'pets.data.cohort') if m not in sys.modules]); "
        "print(sorted(m for m in sys.modules if m.startswith('pets.backends') or "
        "m.split('.')[0] in ('opendp', 'tenseal', 'mpyc', 'phe', 'jax', 'acro', 'diffprivlib')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.splitlines()
    assert out == ["[]", "[]", "[]"]


def test_a_one_cell_run_preloads_only_the_harness():
    # a run of one cell would pay the libraries' import once either way: the server
    # started for it imports the harness alone, and the cell what it uses
    code = (
        "import sys; from pets.cell_server import preload; preload(libraries=False); "
        "print([m for m in ('sklearn', 'scipy.stats', 'pets.leakage.dp_audit') "
        "if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert out == "[]"


# -- the server a process keeps between runs ----------------------------------------------


def _kept_pid() -> int:
    from pets.executors import kept_cell_server

    server = kept_cell_server(sys.executable, libraries=False)  # whichever is kept
    assert server is not None
    return server.pid


def _alive(pid: int) -> bool:
    info = process_table().get(pid)
    return info is not None and info.state != "Z"


def test_runs_from_the_main_thread_share_a_kept_server_and_no_memory(
    tmp_path, registry, scenario_dir
):
    first = _global_setter_run(tmp_path / "first", registry, scenario_dir, 2)
    server = _kept_pid()
    second = _global_setter_run(tmp_path / "second", registry, scenario_dir, 2)
    assert _kept_pid() == server  # the second run started no server
    for frame in (first, second):
        # a module global one cell sets is never seen by the next, in either run
        assert list(frame["status"]) == ["ok"] * 2, frame["error"].tolist()
        assert all('"cell_start": "warm"' in e for e in frame["environment"])


def test_a_changed_environment_gets_a_new_kept_server(tmp_path, scenario_dir, monkeypatch):
    _run(tmp_path, scenario_dir, "before", True)
    before = _kept_pid()
    monkeypatch.setenv("PETS_TEST_MARK", "set-after-the-first-run")
    frame = _run(tmp_path, scenario_dir, "after", True)
    assert (frame["status"] == "ok").all()
    after = _kept_pid()
    assert after != before and not _alive(before)
    # cells fork from a server that has the run's environment, never a stale one
    assert b"PETS_TEST_MARK=set-after-the-first-run" in Path(f"/proc/{after}/environ").read_bytes()


def test_a_run_from_another_thread_starts_and_ends_its_own_server(tmp_path, scenario_dir):
    import threading

    from pets.containment import owner_id

    _run(tmp_path, scenario_dir, "main", True)
    kept = _kept_pid()
    frames = []
    thread = threading.Thread(target=lambda: frames.append(_run(tmp_path, scenario_dir, "t", True)))
    thread.start()
    thread.join()
    (frame,) = frames
    assert (frame["status"] == "ok").all()
    assert all('"cell_start": "warm"' in e for e in frame["environment"])
    assert _kept_pid() == kept  # left alone
    assert carrying(f"{owner_id()}/") == []  # the thread's own server was closed


def test_two_runs_of_one_process_at_once_do_not_end_each_others_cells(tmp_path, scenario_dir):
    """Two runs in one process (a thread each) both number their first cell 1; the
    cell tokens also name the run, so when the quick run's cell ends and its processes
    are killed, the slow run's parties, still working, are not among them."""
    import threading

    from conftest import make_registry

    registry = make_registry()
    registry.add("slow_plaintext", "misbehaving:SlowPlaintext")

    def run(name, backend, **params):
        return pets.run(
            ["multi_site_prevalence"],
            [backend],
            params=params,
            size=300,
            out=tmp_path / name,
            scenario_dir=scenario_dir,
            registry=registry,
            leakage="off",
            progress=False,
        )

    frames = {}
    slow = threading.Thread(
        target=lambda: frames.update(slow=run("slow", "slow_plaintext", seconds=8.0))
    )
    slow.start()
    time.sleep(2.0)  # the slow run's parties are up and waiting by now
    frames["quick"] = run("quick", "plaintext")
    slow.join()
    for name in ("quick", "slow"):
        (row,) = frames[name].to_dict("records")
        assert row["status"] == "ok", (name, row["error"])


def test_a_kept_server_ends_with_its_process(tmp_path, scenario_dir):
    script = (
        "import sys, pets\n"
        "from pets.containment import owner_id\n"
        "from pets.executors import kept_cell_server\n"
        f"pets.run(['multi_site_prevalence'], ['plaintext'], size=300, seeds=2, leakage='off',"
        f" out={str(tmp_path / 'run')!r}, scenario_dir={str(scenario_dir)!r}, progress=False)\n"
        "print(owner_id(), kept_cell_server(sys.executable, libraries=False).pid)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    owner, pid = done.stdout.split()
    deadline = time.monotonic() + 10
    while _alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(int(pid))
    assert carrying(f"{owner}-server") == []
