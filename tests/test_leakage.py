"""Transcript exposure and claim checks, through real runs and directly."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pets
from pets.leakage import residual_risk, transcript_exposure, wilson_interval


def test_wilson_interval_matches_the_formula():
    centre, low, high = wilson_interval(8, 10)
    z2 = 1.96**2
    assert centre == pytest.approx((8 + z2 / 2) / (10 + z2))
    assert low < 0.8 < high
    assert wilson_interval(0, 50)[1] == 0.0
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_residual_risk_nets_out_the_control():
    assert residual_risk(0.9, 0.5) == pytest.approx(0.8)
    assert residual_risk(0.1, 0.5) == 0.0
    assert residual_risk(1.0, 0.0) == 1.0


def test_exposure_finds_raw_values_and_not_unrelated_ones():
    rng = np.random.default_rng(0)
    ids = rng.integers(4_000_000_000, 4_999_999_999, size=40)
    hba1c = rng.uniform(30, 90, size=40).astype(np.float32)
    sensitive = {"hospital": {"nhs_number": ids, "hba1c": hba1c}}
    as_binary = ids.astype("<i8").tobytes() + hba1c.tobytes()
    as_text = json.dumps([int(i) for i in ids]).encode()
    unrelated = rng.bytes(200_000)
    results = transcript_exposure(
        {
            "analyst": [as_binary],
            "reader": [as_text],
            "other": [unrelated],
            "idle": [],
            "hospital": [as_binary],
        },
        sensitive,
    )
    by = {r["observer"]: r for r in results}
    assert by["analyst"]["success_rate"] == 1.0
    assert by["analyst"]["residual_risk"] == 1.0
    assert by["reader"]["by_column"]["hospital.nhs_number"] == 1.0
    assert by["other"]["residual_risk"] == 0.0
    assert by["idle"]["applicable"] is False
    assert "success_rate" not in by["idle"]  # not applicable is never a zero
    assert by["hospital"]["applicable"] is False  # it holds only its own values
    assert by["analyst"]["trials"] == 80


def _row(frame, backend):
    return frame.set_index("backend").loc[backend]


def test_plaintext_exposes_inputs_as_it_declares(tmp_path, registry, scenario_dir):
    frame = pets.run(
        ["multi_site_prevalence"],
        ["plaintext", "secretly_plain", "local_sums"],
        size=4000,
        out=tmp_path,
        registry=registry,
        scenario_dir=scenario_dir,
        progress=False,
    )
    assert (frame["status"] == "ok").all(), frame["error"].tolist()
    plain = _row(frame, "plaintext")
    assert plain["leakage.worst_residual_risk"] > 0.9
    flags = json.loads(plain["leakage.flags"])
    assert "exposes_inputs" in flags and "claim_contradicted" not in flags
    secret = _row(frame, "secretly_plain")
    assert "claim_contradicted" in json.loads(secret["leakage.flags"])
    sums = _row(frame, "local_sums")
    exposure = [
        a for a in json.loads(sums["leakage.attacks"]) if a["attack"] == "transcript_exposure"
    ]
    assert exposure and all(a.get("residual_risk", 0) < 0.3 for a in exposure)
    # no row crosses the channel, but each nation's per-cell sums reach the analyst
    summaries = [
        a for a in json.loads(sums["leakage.attacks"]) if a["attack"] == "intermediate_exposure"
    ]
    assert max(a.get("residual_risk", 0) for a in summaries) > 0.9
    assert "exposes_inputs" in json.loads(sums["leakage.flags"])
    # the published table is exact, so differencing still reads patients off it
    assert "reveals_individuals" in json.loads(sums["leakage.flags"])
    attacks = json.loads(plain["leakage.attacks"])
    senders = [
        a for a in attacks if a["observer"] == "england" and a["attack"] == "transcript_exposure"
    ]
    assert senders and senders[0]["applicable"] is False


def test_leakage_off_runs_no_attack(tmp_path, registry, scenario_dir):
    frame = pets.run(
        ["multi_site_prevalence"],
        ["plaintext"],
        size=1000,
        out=tmp_path,
        leakage="off",
        registry=registry,
        scenario_dir=scenario_dir,
        progress=False,
    )
    assert json.loads(frame.loc[0, "leakage.attacks"]) == []
    assert frame.loc[0, "leakage.attacks_run"] == 0


def test_report_lists_every_attack_with_interval_or_reason(tmp_path, registry, scenario_dir):
    from pets.report import attack_table, markdown_report

    frame = pets.run(
        ["multi_site_prevalence"],
        ["plaintext"],
        size=4000,
        out=tmp_path,
        registry=registry,
        scenario_dir=scenario_dir,
        progress=False,
    )
    # a skipped audit carries trials but no rate; it must not break the table
    attacks = json.loads(frame.loc[0, "leakage.attacks"])
    attacks.append(
        {
            "attack": "dp_audit",
            "attacker": "A3",
            "observer": "analyst",
            "applicable": True,
            "trials": 3,
            "skipped": True,
            "note": "too slow",
        }
    )
    frame.loc[0, "leakage.attacks"] = json.dumps(attacks)
    table = attack_table(frame)
    diff = table[table["attack"] == "differencing"].iloc[0]
    assert diff["rate"] == 1.0 and diff["ci_low"] < 1.0 and diff["attacker"] == "A1"
    idle = table[(table["attack"] == "transcript_exposure") & (table["observer"] == "england")]
    assert not idle.iloc[0]["applicable"]
    text = markdown_report(frame)
    assert "## Attacks" in text
    assert "| multi_site_prevalence | plaintext | differencing | A1 | analyst | 1.000 (" in text
    assert "n/a" in text and "too slow" in text
