"""The quick matrix under the process boundary: every built-in backend runs each party in
its own process, and its primary accuracy per cell equals the one-process harness's
(tests/data/quick_accuracy.json), within each backend's tolerance."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import pets
from pets.registry import Registry

REFERENCE = json.loads((Path(__file__).parent / "data" / "quick_accuracy.json").read_text())


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    frame = pets.run(
        quick=True,
        leakage="off",
        out=tmp_path_factory.mktemp("quick"),
        registry=Registry.from_entry_points(),
        jobs=2,
        progress=False,
    )
    return frame[frame["status"] != "unsupported"]


def _key(row) -> str:
    params = json.dumps(json.loads(row["params"]), sort_keys=True)
    return f"{row['scenario']}|{row['backend']}|{params}"


def test_every_built_in_cell_runs_in_processes(records):
    assert len(records) == len(REFERENCE["cells"])
    bad = records[(records["status"] != "ok") | (records["isolation"] != "process")]
    assert bad.empty, bad[["scenario", "backend", "status", "error", "isolation"]].to_string()
    silent = records[records["leakage.flags"].str.contains("no_traffic_for_inputs")]
    assert silent.empty, silent[["scenario", "backend"]].to_string()


def test_primary_accuracy_matches_the_one_process_harness(records):
    mismatched = []
    for _, row in records.iterrows():
        expected = REFERENCE["cells"][_key(row)]
        value = row[f"accuracy.{expected['primary']}"]
        assert row["accuracy.primary"] == expected["primary"]
        if expected["tolerance"] is None:
            assert math.isfinite(value) and -1.0 <= value <= 1.0 + 1e-9, (_key(row), value)
        elif abs(value - expected["value"]) > expected["tolerance"]:
            mismatched.append((_key(row), expected["value"], value))
    assert not mismatched, mismatched
