"""The issue's must-show: ``kill -9`` of ``pets run`` during a real MPC cell, then
``pets run --resume``: no identifier anywhere on disk, no orphan process, no cell lost
or duplicated. Real CLI processes, a real signal, the real mpyc backend."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from pets.containment import SCRATCH_PREFIX, carrying
from pets.records import ResultStore
from pets.scenarios import build_problem, load_scenario

ROOT = Path(__file__).resolve().parent.parent
CARD = "trial_recruitment_linkage"
SIZE = 4000
SEEDS = 3

pytest.importorskip("mpyc", reason="the mpc extra is not installed")


def _identifiers() -> tuple[set[str], list[re.Pattern[bytes]]]:
    """Every NHS number, date of birth and postcode district the parties of the run's
    cells hold: the plain strings, and patterns for their other written forms."""
    scenario = load_scenario(ROOT / "scenarios" / f"{CARD}.toml")
    numbers, dates, districts = set(), set(), set()
    for seed in range(SEEDS):
        problem = build_problem(scenario, SIZE, seed)
        for rows in problem.party_data.values():
            numbers |= set(rows["nhs_number"].astype(str))
            dates |= set(pd.to_datetime(rows["date_of_birth"]).dt.strftime("%Y-%m-%d"))
            districts |= set(rows["postcode_district"].astype(str))
    plain = numbers | dates | {f"{d[8:]}/{d[5:7]}/{d[:4]}" for d in dates}
    spaced = {f"{n[:3]} {n[3:6]} {n[6:]}" for n in numbers}
    dashed = {f"{n[:3]}-{n[3:6]}-{n[6:]}" for n in numbers}
    district = re.compile(
        rb"(?<![A-Za-z0-9])(" + b"|".join(re.escape(d.encode()) for d in districts) + rb")"
        rb"(?![A-Za-z0-9])"
    )
    return plain | spaced | dashed, [district]


def _found(folder: Path, plain: set[str], patterns: list[re.Pattern[bytes]]) -> list[str]:
    """Identifiers in any file under ``folder`` (as bytes, and a parquet file's values as
    text); district patterns only in text, where a short label means something."""
    hits = []
    needles = [p.encode() for p in plain]
    for path in folder.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        blobs = [path.read_bytes()]
        if path.suffix == ".parquet":
            blobs.append(pd.read_parquet(path).to_csv().encode())
        for blob in blobs:
            hits += [f"{path.name}: {n.decode()}" for n in needles if n in blob]
            try:
                blob.decode("utf-8")
            except UnicodeDecodeError:
                continue
            hits += [
                f"{path.name}: {m.group(0).decode()}" for p in patterns for m in p.finditer(blob)
            ]
    return hits


def _wait_for(condition, what: str, limit_s: float = 120, details=lambda: "") -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what} {details()}"
        time.sleep(0.02)


def _describe(pids: list[int]) -> str:
    """State, parent and command of each process, to say which one outlived the run."""
    lines = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
        except OSError:
            continue
        lines.append(f"{pid} state={stat[0]} ppid={stat[1]} {command.decode(errors='replace')}")
    return "; ".join(lines)


def test_kill_9_during_an_mpc_cell_then_resume_leaves_nothing(tmp_path):
    # a short temporary folder, so everything the run puts there (the fork servers'
    # sockets included) lands under it and is scanned
    tmp = Path(tempfile.mkdtemp(prefix="pk", dir="/tmp"))
    try:
        _kill_and_resume(tmp_path / "run", tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kill_and_resume(run: Path, tmp: Path) -> None:
    env = {
        **os.environ,
        "TMPDIR": str(tmp),
        "PYTHONPATH": str(ROOT),
        "PETS_SCENARIOS": str(ROOT / "scenarios"),
    }
    argv = [
        sys.executable,
        "-m",
        "pets.cli",
        "run",
        CARD,
        "--backend",
        "mpyc",
        "--size",
        str(SIZE),
        "--seeds",
        str(SEEDS),
        "--out",
        str(run),
        "--no-progress",
    ]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        parties = lambda: list(tmp.glob(f"{SCRATCH_PREFIX}*/*/pets-run-*/party-*"))  # noqa: E731
        _wait_for(lambda: len(parties()) >= 2 or first.poll() is not None, "MPC parties")
        assert first.poll() is None, "the run ended before its MPC cell was caught"
        (scratch,) = tmp.glob(f"{SCRATCH_PREFIX}*")
        owner = scratch.name[len(SCRATCH_PREFIX) :].split("-")[0]
        in_cell = carrying(f"{owner}/")
        assert len(in_cell) >= 4  # worker, fork server, and at least two parties
        os.kill(first.pid, signal.SIGKILL)  # kill -9, mid-protocol
        first.wait()
    finally:
        first.kill()
    store = ResultStore(run)
    before = store.jsonl_path.read_bytes() if store.jsonl_path.exists() else b""
    assert before.count(b"\n") < SEEDS  # at least one cell was cut off
    # the cell's processes die with the runner (each dies with its parent)
    _wait_for(
        lambda: not carrying(f"{owner}/"),
        "the killed run's processes to end",
        details=lambda: _describe(carrying(f"{owner}/")),
    )
    plain, patterns = _identifiers()
    assert scratch.exists()  # left behind by the kill: the next start removes it
    assert _found(tmp, plain, patterns) == []  # nothing private in it even now
    assert _found(run, plain, patterns) == []

    resumed = subprocess.run([*argv, "--resume"], env=env, capture_output=True, check=False)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert b"Traceback" not in resumed.stderr
    records = store.read()
    keys = [r.key for r in records]
    assert len(keys) == SEEDS and len(set(keys)) == SEEDS  # none lost, none duplicated
    assert sorted(r.seed for r in records) == list(range(SEEDS))
    assert all(r.status == "ok" for r in records), [r.error for r in records]
    assert store.jsonl_path.read_bytes().startswith(before)  # earlier records untouched
    assert not scratch.exists()  # swept at the resumed run's start
    assert carrying(f"{owner}/") == []
    assert [p for p in tmp.iterdir() if p.name.startswith(SCRATCH_PREFIX)] == []
    assert _found(tmp, plain, patterns) == []
    assert _found(run, plain, patterns) == []
