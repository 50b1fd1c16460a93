"""The runner end to end: real worker processes, statuses, resume, no identifiers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import pets
from pets.containment import CELL_VARIABLE
from pets.records import ResultStore
from pets.runner import RunOptions, execute_plan, plan_cells
from pets.scenarios import load_scenario

from conftest import CARD_IDS


def test_plaintext_runs_every_card_exactly(tmp_path, registry, scenario_dir):
    frame = pets.run(
        CARD_IDS,
        ["plaintext"],
        quick=True,
        out=tmp_path / "run",
        registry=registry,
        scenario_dir=scenario_dir,
        progress=False,
    )
    assert sorted(frame["scenario"]) == sorted(CARD_IDS)
    assert (frame["status"] == "ok").all(), frame[["scenario", "error"]].to_string()
    for _, row in frame.iterrows():
        primary = row["accuracy.primary"]
        value = row[f"accuracy.{primary}"]
        if row["accuracy.higher_is_better"]:
            assert value == pytest.approx(1.0), (row["scenario"], primary, value)
        else:
            assert value == pytest.approx(0.0, abs=1e-12), (row["scenario"], primary, value)
        assert row["cost.wall_s"] > 0
        assert row["cost.cpu_s"] > 0
        assert row["cost.peak_rss_mb"] > 10
        assert row["cost.bytes_total"] > 0
        by_party = json.loads(row["cost.bytes_by_party"])
        assert sum(p["received"] for p in by_party.values()) == row["cost.bytes_total"]
    out = tmp_path / "run"
    assert (out / "records.parquet").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["cards"]) == set(CARD_IDS)
    assert manifest["environment"]["packages"]["numpy"] == np.__version__


def test_bad_cells_get_a_status_and_the_rest_finish(tmp_path, registry, scenario_dir):
    names = [
        "raising",
        "sleeping",
        "crashing",
        "wrong_output",
        "unsupporting",
        "plaintext",
    ]
    frame = pets.run(
        ["multi_site_prevalence"],
        names,
        size=500,
        out=tmp_path,
        registry=registry,
        scenario_dir=scenario_dir,
        timeout=15,
        jobs=2,
        leakage="off",  # statuses are the point; the attacks only add time on a busy machine
        progress=False,
    )
    by = frame.set_index("backend")
    assert by.loc["raising", "status"] == "failed"
    assert "deliberate failure in run" in by.loc["raising", "error"]
    assert by.loc["sleeping", "status"] == "timeout"
    assert "15 s timeout" in by.loc["sleeping", "error"]
    assert by.loc["crashing", "status"] == "party_failed"
    assert "signal 9" in by.loc["crashing", "error"]
    assert by.loc["wrong_output", "status"] == "failed"
    assert "not a valid AggregateOutput" in by.loc["wrong_output", "error"]
    assert by.loc["unsupporting", "status"] == "unsupported"
    assert by.loc["plaintext", "status"] == "ok"


def test_memory_limit_stops_a_cell(tmp_path, registry, scenario_dir):
    frame = pets.run(
        ["multi_site_prevalence"],
        ["hog"],
        size=500,
        out=tmp_path,
        registry=registry,
        scenario_dir=scenario_dir,
        memory_mb=600,
        timeout=60,
        progress=False,
    )
    (row,) = frame.to_dict("records")
    assert row["status"] == "failed"
    assert "600 MiB memory limit" in row["error"]


def test_unknown_backend_parameter_is_named(tmp_path, registry, scenario_dir):
    scenario = load_scenario("multi_site_prevalence", scenario_dir)
    cells = plan_cells([scenario], ["sleeping"], registry, size=300)
    cells = [replace(c, params={"secnods": 1}) for c in cells]
    (record,) = execute_plan(cells, ResultStore(tmp_path), RunOptions(progress=False))
    assert record.status == "failed"
    assert "no parameter 'secnods'" in record.error and "seconds" in record.error


def test_resume_skips_finished_cells(tmp_path, registry, scenario_dir):
    scenario = load_scenario("multi_site_prevalence", scenario_dir)
    cells = plan_cells([scenario], ["plaintext"], registry, size=500, seeds=2)
    store = ResultStore(tmp_path)
    options = RunOptions(progress=False)
    execute_plan(cells[:1], store, options)
    with pytest.raises(FileExistsError, match="--resume"):
        execute_plan(cells, store, options)
    # A crash mid-write leaves a torn last line: it is ignored, finished records are kept.
    with open(store.jsonl_path, "a") as fh:
        fh.write('{"scenario": "multi_site_prev')
    seen = []
    records = execute_plan(cells, store, options, resume=True, on_record=seen.append)
    assert [r.seed for r in seen] == [1]
    assert sorted(r.seed for r in records) == [0, 1]


def test_sweeps_and_seeds_expand_the_plan(registry, scenario_dir):
    from pets.scenarios import Sweep

    scenario = load_scenario("multi_site_prevalence", scenario_dir)

    swept = replace(scenario, sweeps=(Sweep("sleeping", "seconds", (0.1, 0.2, 0.3)),))
    cells = plan_cells([swept], ["sleeping", "plaintext"], registry, seeds=2, repeats=2)
    assert len(cells) == 3 * 2 * 2 + 1 * 2 * 2
    fixed = plan_cells([swept], ["sleeping"], registry, params={"seconds": 1.0})
    assert [c.params for c in fixed] == [{"seconds": 1.0}]
    assert len({c.key for c in cells}) == len(cells)


def test_records_hold_no_identifiers(tmp_path, registry, scenario_dir):
    frame = pets.run(
        ["trial_recruitment_linkage"],
        ["plaintext"],
        size=3000,
        out=tmp_path,
        registry=registry,
        scenario_dir=scenario_dir,
        progress=False,
    )
    assert (frame["status"] == "ok").all()
    from pets.data import generate_cohort

    cohort = generate_cohort(3000, seed=0)
    text = "".join(
        p.read_text(errors="replace")
        for p in tmp_path.rglob("*")
        if p.is_file() and p.suffix in (".json", ".jsonl", ".md")
    )
    numbers = set(re.findall(r"(?<!\d)\d{10}(?!\d)", text))
    assert not numbers & {str(n) for n in cohort["nhs_number"]}


def test_worker_settles_unsupported_when_the_runner_cannot(scenario_dir):
    from pets.worker import execute_cell

    card = scenario_dir / "multi_site_prevalence.toml"
    record = execute_cell(
        {
            "scenario": "multi_site_prevalence",
            "card": str(card),
            "backend": "unsupporting",
            "target": "misbehaving:Unsupporting",
            "params": {},
            "size": 300,
            "seed": 0,
            "repeat": 0,
        }
    )
    assert record.status == "unsupported"
    assert "serves train, not aggregate" in record.error


def test_unsupported_cells_start_no_process(tmp_path, registry, scenario_dir, monkeypatch):
    from pets.cell_process import CellProcess

    scenario = load_scenario("tre_queries", scenario_dir)
    cells = plan_cells([scenario], ["local_only", "unsupporting"], registry, size=300)
    started = []
    original = CellProcess.start
    monkeypatch.setattr(
        CellProcess,
        "start",
        classmethod(lambda cls, *a, **k: started.append(a) or original(*a, **k)),
    )
    records = execute_plan(cells, ResultStore(tmp_path), RunOptions(progress=False))
    assert [r.status for r in records] == ["unsupported", "unsupported"]
    assert started == []


def _cell_processes(scratch: str) -> dict[int, str]:
    """Live processes of runs under the folder ``scratch`` (their ``TMPDIR``), with the
    token each carries: the warm cell server's (``.../server``) or a cell's."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = dict(
                item.split(b"=", 1)
                for item in (entry / "environ").read_bytes().split(b"\0")
                if b"=" in item
            )
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        token = env.get(CELL_VARIABLE.encode())
        if token and env.get(b"TMPDIR", b"").startswith(scratch.encode()) and state != "Z":
            found[int(entry.name)] = token.decode()
    return found


def _cells_running(scratch: str) -> list[int]:
    """Processes a cell started (not the cell server)."""
    return [
        p for p, t in _cell_processes(scratch).items() if not t.endswith(("/server", "-server"))
    ]


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_a_stopped_runner_leaves_no_cell_running(tmp_path, scenario_dir, how):
    script = (
        "import pets\n"
        "from pets.registry import Registry\n"
        "registry = Registry.from_entry_points()\n"
        "registry.add('sleeping', 'misbehaving:Sleeping')\n"
        f"pets.run(['tre_queries'], ['plaintext', 'sleeping'], size=300,"
        f" out={str(tmp_path / 'run')!r}, registry=registry,"
        f" scenario_dir={str(scenario_dir)!r}, progress=False)\n"
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(scratch),
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path]),
    }
    runner = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        journal = tmp_path / "run" / "records.jsonl"
        deadline = time.monotonic() + 60
        # wait for the plaintext record, then for the sleeping cell's worker
        while time.monotonic() < deadline and not (
            journal.exists()
            and journal.read_text().count("\n") == 1
            and _cells_running(str(scratch))
        ):
            assert runner.poll() is None, "the runner ended before its sleeping cell started"
            time.sleep(0.1)
        assert _cells_running(str(scratch)), "the sleeping cell never started"
        runner.send_signal(how)
        runner.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _cell_processes(str(scratch)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _cell_processes(str(scratch)) == {}  # no cell's process, nor the server
    finally:
        runner.kill()
    records = ResultStore(tmp_path / "run").read()
    assert [r.backend for r in records] == ["plaintext"]  # what was written stays
    if how == signal.SIGTERM:
        assert not list(scratch.glob("pets-cells-*"))  # cleanup ran
