"""The result store under hostile conditions: a second writer, damaged lines, a
garbage manifest, a newer schema, a card edited between or during runs, repair racing
an append, a full disk. Each is one line (or a warning) and the records before it stay."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import pets
from pets import records as records_module
from pets.cli import main
from pets.records import Record, ResultStore, SchemaError, StoreError, StoreWarning
from pets.report.scorecard import scorecard
from pets.runner import RunOptions, execute_plan, plan_cells
from pets.scenarios import load_scenario

from conftest import make_registry


def _record(i: int, **extra) -> Record:
    return Record(
        scenario="s",
        backend="b",
        params={"i": i},
        size=100,
        seed=0,
        repeat=0,
        status="ok",
        **extra,
    )


def _hold_lock(folder: Path) -> subprocess.Popen[bytes]:
    """Another process holding the folder's writer lock (a real flock)."""
    code = (
        "import sys, time\n"
        "from pets.records import ResultStore\n"
        f"with ResultStore({str(folder)!r}).lock():\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    assert holder.stdout.readline() == b"held\n"
    return holder


def test_a_second_writer_is_refused_in_one_line_and_writes_nothing(tmp_path, scenario_dir):
    run = tmp_path / "run"
    store = ResultStore(run)
    store.append(_record(1))
    before = store.jsonl_path.read_bytes()
    holder = _hold_lock(run)
    try:
        scenario = load_scenario("tre_queries", scenario_dir)
        cells = plan_cells([scenario], ["plaintext"], make_registry(), size=300)
        with pytest.raises(StoreError) as caught:
            execute_plan(cells, store, RunOptions(progress=False), resume=True)
        message = str(caught.value)
        assert "\n" not in message and str(run) in message
        assert f"pid {holder.pid}" in message
        assert store.jsonl_path.read_bytes() == before
        # the CLI: one line, exit 2
        code = main(
            [
                "run",
                "tre_queries",
                "--backend",
                "plaintext",
                "--size",
                "300",
                "--out",
                str(run),
                "--resume",
                "--no-progress",
            ]
        )
        assert code == 2
    finally:
        holder.kill()
        holder.wait()
    with store.lock():  # free again once the holder is gone
        pass


def test_repair_never_cuts_a_line_another_writer_is_appending(tmp_path):
    run = tmp_path / "run"
    store = ResultStore(run)
    store.append(_record(1))
    holder = _hold_lock(run)
    try:
        with open(store.jsonl_path, "ab") as fh:  # the writer's append under way
            fh.write(b'{"half": ')
        before = store.jsonl_path.read_bytes()
        with pytest.raises(StoreError, match="another pets run"):
            store.repair()
        assert store.jsonl_path.read_bytes() == before
        assert [r.params for r in store.read()] == [{"i": 1}]  # the torn line is skipped
    finally:
        holder.kill()
        holder.wait()
    assert store.repair()  # with the writer gone, the torn line is cut
    assert store.jsonl_path.read_bytes().endswith(b"}\n")


def test_unreadable_lines_are_quarantined_with_a_warning(tmp_path):
    store = ResultStore(tmp_path)
    store.append(_record(1))
    good = store.jsonl_path.read_bytes()
    bad_lines = [
        b"{not json",
        b'{"status": "ok", "name": "\xff\xfe caf\xe9"}',
        json.dumps({**_record(2).to_dict(), "status": "exploded"}).encode(),
        json.dumps({"status": "ok", "schema_version": 1}).encode(),
        b"[1, 2, 3]",
    ]
    with open(store.jsonl_path, "ab") as fh:
        fh.write(b"\n".join(bad_lines) + b"\n")
    store.append(_record(3))
    with pytest.warns(StoreWarning, match="5 unreadable record line") as caught:
        records = store.read()
    assert "\n" not in str(caught[0].message)
    assert [r.params["i"] for r in records] == [1, 3]
    assert store.quarantine_path.read_bytes().split(b"\n")[:-1] == bad_lines
    assert store.jsonl_path.read_bytes().startswith(good)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(store.read()) == 2  # nothing left to warn about
    # the report reads the folder too
    assert main(["report", str(tmp_path), "--format", "md"]) == 0


def test_a_garbage_manifest_is_one_line(tmp_path, capsys):
    store = ResultStore(tmp_path)
    store.append(_record(1))
    for garbage in (b"\x00\x01garbage", b"[1, 2]", b"\xff\xfe{"):
        store.manifest_path.write_bytes(garbage)
        with pytest.raises(StoreError) as caught:
            store.read_manifest()
        assert "\n" not in str(caught.value) and "manifest.json" in str(caught.value)
        assert main(["report", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and "manifest.json" in err


def test_a_newer_schema_is_refused_with_the_upgrade_path(tmp_path, capsys):
    store = ResultStore(tmp_path)
    store.append(_record(1))
    with open(store.jsonl_path, "a") as fh:
        fh.write(json.dumps({**_record(2).to_dict(), "schema_version": 2}) + "\n")
    with pytest.raises(SchemaError, match=r"line 2: .*upgrade pets"):
        store.read()
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install -U" in err


def test_an_older_schema_is_migrated(tmp_path, monkeypatch):
    """The migration chain as asv keeps one: pretend this pets writes schema 2, whose
    migration from 1 rewrites ``isolation``; a schema-1 line is upgraded on read, and
    without the migration it is refused with the way out."""
    store = ResultStore(tmp_path)
    store.append(_record(1, isolation="process"))
    monkeypatch.setattr(records_module, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(
        records_module.MIGRATIONS, 1, lambda d: {**d, "isolation": f"v2:{d['isolation']}"}
    )
    (record,) = store.read()
    assert (record.schema_version, record.isolation) == (2, "v2:process")
    del records_module.MIGRATIONS[1]
    with pytest.raises(SchemaError, match="no migration to 2"):
        store.read()


def _copy_card(tmp_path: Path, scenario_dir: Path, sid: str = "tre_queries") -> Path:
    cards = tmp_path / "cards"
    cards.mkdir(exist_ok=True)
    for card in scenario_dir.glob("*.toml"):
        shutil.copy(card, cards / card.name)
    return cards


def test_resume_refuses_a_changed_card_unless_allowed_and_keeps_versions_apart(
    tmp_path, scenario_dir
):
    cards = _copy_card(tmp_path, scenario_dir)
    kwargs = dict(
        size=300, out=tmp_path / "run", registry=make_registry(), scenario_dir=cards, progress=False
    )
    first = pets.run(["tre_queries"], ["plaintext"], **kwargs)
    old_hash = first["card_hash"].iloc[0]
    card = cards / "tre_queries.toml"
    card.write_text(card.read_text() + "\n# edited\n")
    new_hash = load_scenario(card).card_hash
    with pytest.raises(StoreError) as caught:
        pets.run(["tre_queries"], ["plaintext"], resume=True, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert "'tre_queries'" in message and old_hash[:12] in message and new_hash[:12] in message
    assert "--allow-changed" in message
    assert len(ResultStore(tmp_path / "run").read()) == 1
    pets.run(["tre_queries"], ["plaintext"], resume=True, allow_changed=True, **kwargs)
    frame = ResultStore(tmp_path / "run").to_frame()
    assert sorted(frame["card_hash"]) == sorted([old_hash, new_hash])
    (table,) = scorecard(frame).values()
    assert len(table) == 2  # one row per card version, not one averaged row
    assert {p.split("[card ")[1][:8] for p in table["params"]} == {old_hash[:8], new_hash[:8]}


def test_a_card_edited_mid_run_is_not_read_again(tmp_path, scenario_dir):
    """Cards are read once: spoiling the file after the first cell changes nothing for
    the later cells, whose records carry the hash of what they ran."""
    cards = _copy_card(tmp_path, scenario_dir)
    card = cards / "tre_queries.toml"
    scenario = load_scenario(card)
    cells = plan_cells([scenario], ["plaintext"], make_registry(), size=300, seeds=2)

    def spoil(record: Record) -> None:
        card.write_text("this is = not [valid toml")

    records = execute_plan(
        cells, ResultStore(tmp_path / "run"), RunOptions(progress=False), on_record=spoil
    )
    assert [r.status for r in records] == ["ok", "ok"], [r.error for r in records]
    assert {r.card_hash for r in records} == {scenario.card_hash}


def _tiny_disk(folder: Path) -> bool:
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def test_a_full_disk_is_one_line_and_the_records_before_stay(tmp_path, monkeypatch):
    """On a 64 KiB tmpfs when one can be mounted (root), else with the write itself
    failing as a full disk makes it fail (ENOSPC)."""
    disk = tmp_path / "disk"
    mounted = _tiny_disk(disk)
    try:
        store = ResultStore(disk / "run")
        written = 0
        big = "x" * 1500
        with pytest.raises(StoreError) as caught:
            for i in range(1000):
                if not mounted and i == 5:

                    def full(fd, data):
                        raise OSError(28, "No space left on device")

                    monkeypatch.setattr(records_module.os, "write", full)
                store.append(_record(i, error=big))
                written += 1
        monkeypatch.undo()
        message = str(caught.value)
        assert "\n" not in message and "no space left" in message
        assert "--resume" in message
        assert written >= 5
        assert [r.params["i"] for r in store.read()] == list(range(written))
        assert store.jsonl_path.read_bytes().endswith(b"\n")  # no half line
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], check=False)
