"""The process boundary: a backend installed the way a supplier's is cannot reach other
parties' data or the harness's verdict by any route an outside supplier could take.

Each intruder (tests/intruders.py) answers only from rows its route reached and fails
with ``NothingReached`` otherwise; in the one-process design every route below reached
every party's rows, so an ``ok`` record here would mean the boundary is gone.
"""

from __future__ import annotations

import pytest

import pets

from conftest import SCENARIOS, make_registry

ROUTES = {
    "kept_view": "NothingReached",
    "memory_scan": "NothingReached",
    "stack_walk": "NothingReached",
    "harness_memory": "NothingReached",
    "forged_view": "deadlocked",
}


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    return pets.run(
        ["multi_site_prevalence"],
        [*ROUTES, "verdict_patcher", "file_drop", "forged_record", "plaintext"],
        size=1500,
        out=tmp_path_factory.mktemp("isolation"),
        registry=make_registry(),
        scenario_dir=SCENARIOS,
        timeout=120,
        jobs=2,
        progress=False,
    ).set_index("backend")


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_route_to_other_parties_data_reaches_nothing(frame, route):
    row = frame.loc[route]
    assert row["status"] == "failed", f"{route} ended {row['status']}: the route reached data"
    assert ROUTES[route] in row["error"]
    assert row["isolation"] == "process"


def test_patching_the_leakage_code_in_a_party_changes_no_verdict(frame):
    row = frame.loc["verdict_patcher"]
    assert row["status"] == "ok"
    flags = row["leakage.flags"]
    assert "exposes_inputs" in flags and "claim_contradicted" in flags
    assert row["leakage.worst_residual_risk"] > 0.5


def test_every_built_in_style_record_says_process(frame):
    assert frame.loc["plaintext", "isolation"] == "process"
    assert frame.loc["plaintext", "status"] == "ok"


def test_an_output_made_without_the_holders_traffic_is_flagged(frame):
    row = frame.loc["file_drop"]
    assert row["status"] == "ok"
    assert row["accuracy.median_relative_error"] == 0  # it did reach the rows, by a file
    assert "no_traffic_for_inputs" in row["leakage.flags"]
    assert "no_traffic_for_inputs" not in frame.loc["plaintext", "leakage.flags"]


def test_a_record_written_by_a_party_is_not_taken_for_the_workers(frame):
    # the party wrote an "ok" record where the worker writes its own and killed the
    # worker; the runner accepts only a record sealed with the key the worker alone holds
    row = frame.loc["forged_record"]
    assert row["status"] == "failed"
    assert "not the worker" in row["error"]
