"""MPyC backend: parties as processes, exact against plaintext, traffic per party,
and failures that leave no process behind."""

from __future__ import annotations

import json
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import pets
from pets.api import PartyFailure
from pets.backends.federated import FedAvg
from pets.backends.mpc import Mpyc, _pool
from pets.leakage import evaluate_leakage
from pets.report import scorecard, scorecard_text
from pets.scenarios import build_problem, load_scenario
from pets.session import Session

from conftest import solve_card


def _party_processes(marker: str) -> list[int]:
    """Live party processes whose files live under ``marker`` (this test's own folder,
    so parties of anything else running on the machine are not counted)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if b"mpc/_party.py" in cmdline and marker.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture
def party_folder(tmp_path, monkeypatch) -> str:
    """Make party processes, in this process and in workers, keep their files under a
    folder of this test's own."""
    folder = tmp_path / "parties"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return str(folder)


@pytest.mark.parametrize("vectorised", [True, False], ids=["vectorised", "per-element"])
def test_aggregate_is_exact(vectorised, scenario_dir, party_folder):
    out, ref, acc, problem, session = solve_card(
        Mpyc(vectorised=vectorised), "multi_site_prevalence", scenario_dir, 5000
    )
    np.testing.assert_array_equal(out.table["n"], ref.table["n"])
    assert acc.metrics["max_relative_error"] < 1e-9
    meter = session.meter()
    # every party of the card is a process with its own sockets, metered per link
    for name in problem.task.party_names:
        assert meter.bytes_by_party[name]["sent"] > 0
        assert meter.bytes_by_party[name]["received"] > 0
        assert meter.rounds_by_party[name] >= 1
    leakage = evaluate_leakage(problem, session, Mpyc().capabilities)
    exposure = [a for a in leakage["attacks"] if a["attack"] == "transcript_exposure"]
    assert any(a["applicable"] for a in exposure)  # the captured socket bytes were searched
    assert leakage["headline"]["worst_residual_risk"] < 0.05
    assert leakage["flags"] == []
    assert not _party_processes(party_folder)


def test_linkage_finds_exactly_the_matches(scenario_dir):
    _out, ref, acc, _problem, session = solve_card(
        Mpyc(), "trial_recruitment_linkage", scenario_dir, 20_000
    )
    assert ref.cardinality > 0
    assert acc.metrics["precision"] == 1.0
    assert acc.metrics["recall"] == 1.0
    assert acc.metrics["relative_error.hba1c_mean"] < 1e-9
    # two card parties need a third server for an honest majority
    assert "mpc_server_1" in session.party_names
    assert session.meter().bytes_by_party["mpc_server_1"]["received"] > 0


def test_inference_scores_reach_only_the_provider(scenario_dir):
    _out, _ref, acc, problem, session = solve_card(
        Mpyc(), "encrypted_supplier_inference", scenario_dir, 4000
    )
    assert acc.metrics["decision_agreement"] == 1.0
    assert acc.metrics["max_abs_score_error"] < 1e-6
    reveals = {(party, label) for party, label, _ in session.reveals}
    assert reveals == {(problem.task.recipient, "scores")}


def test_training_equals_plain_federated_averaging(scenario_dir):
    settings = {"rounds": 3, "local_steps": 3}
    secure, *_ = solve_card(Mpyc(**settings), "federated_risk_model", scenario_dir, 20_000)
    plain, *_ = solve_card(FedAvg(**settings), "federated_risk_model", scenario_dir, 20_000)
    np.testing.assert_allclose(secure.coef, plain.coef, atol=1e-6)
    assert secure.intercept == pytest.approx(plain.intercept, abs=1e-6)


def test_threshold_without_honest_majority_is_refused():
    with pytest.raises(ValueError, match="more than 4 parties"):
        Mpyc(parties=4, threshold=2).capabilities  # noqa: B018


def test_port_in_use_gives_a_party_failed_record(tmp_path, registry, scenario_dir, party_folder):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        frame = pets.run(
            ["multi_site_prevalence"],
            ["mpyc"],
            params={"base_port": port - 1},
            size=2000,
            out=tmp_path,
            registry=registry,
            scenario_dir=scenario_dir,
            progress=False,
        )
    record = frame.iloc[0]
    assert record["status"] == "party_failed"
    assert f"port {port}" in record["error"]
    assert "already in use" in record["error"]
    assert not _party_processes(party_folder)


def test_party_dying_at_start_stops_every_party(monkeypatch, scenario_dir, party_folder):
    # skip the pool's own port check so that a party itself fails to listen
    monkeypatch.setattr(_pool, "_check_port", lambda port, party: None)
    card = load_scenario("multi_site_prevalence", scenario_dir)
    problem = build_problem(card, 2000, seed=0)
    session = Session(problem.task.parties, problem.party_data)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        backend = Mpyc(base_port=port - 2, start_timeout_s=30)
        with pytest.raises(PartyFailure, match=r"party 2 .* exited with code 1 during start"):
            backend.run(problem.task, session)
    assert not _party_processes(party_folder)


def test_a_cell_timeout_kills_the_party_processes(tmp_path, registry, scenario_dir, party_folder):
    start = time.monotonic()
    frame = pets.run(
        ["federated_risk_model"],
        ["mpyc"],
        params={"rounds": 100_000},
        size=3000,
        out=tmp_path,
        registry=registry,
        scenario_dir=scenario_dir,
        timeout=8,
        progress=False,
    )
    assert frame.iloc[0]["status"] == "timeout"
    assert time.monotonic() - start < 60
    deadline = time.monotonic() + 10
    while _party_processes(party_folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _party_processes(party_folder)
    # the parties' input files went with the killed cell's scratch folder
    assert not list(Path(party_folder).rglob("pets-mpc-*"))


def test_records_carry_per_party_traffic_and_modelled_network_time(
    tmp_path, registry, scenario_dir
):
    from pets.network import parse_profile

    frame = pets.run(
        ["multi_site_prevalence"],
        ["mpyc"],
        size=2000,
        out=tmp_path,
        registry=registry,
        scenario_dir=scenario_dir,
        progress=False,
        network=[parse_profile("hscn=8,500")],
    )

    record = json.loads((tmp_path / "records.jsonl").read_text().splitlines()[0])
    assert record["status"] == "ok", record.get("error")
    cost = record["cost"]
    assert set(cost["bytes_by_party"]) >= {"england", "aggregator", "analyst"}
    assert cost["rounds"] >= 2
    net = cost["network"]
    assert net["loopback"]["modelled_s"] == pytest.approx(cost["wall_s"])
    assert net["wan"]["modelled_s"] > net["lan"]["modelled_s"] > net["loopback"]["modelled_s"]
    assert net["hscn"]["latency_ms"] == 8.0
    assert frame.iloc[0]["status"] == "ok"
    card = scorecard(frame)["multi_site_prevalence"].iloc[0]
    assert card["wan_s"] == pytest.approx(net["wan"]["modelled_s"])
    assert "WAN time" in scorecard_text(frame)


def test_causal_rounds_follow_happened_before():
    # 0 -> 1 -> 2 is a chain of two; a message nobody waited for adds nothing
    assert _pool.causal_rounds([[("s", 1)], [("r", 0), ("s", 2)], [("r", 1)]]) == 2
    # two independent messages in parallel are one round
    assert _pool.causal_rounds([[("s", 2)], [("s", 2)], [("r", 0), ("r", 1)]]) == 1
    # a receive reported before its send is matched once the send is known
    assert _pool.causal_rounds([[("r", 1), ("s", 1)], [("s", 0), ("r", 0)]]) == 2


def test_the_process_check_sees_live_parties(party_folder):
    from pets.tasks import PartyRole

    names = ["a", "b", "c"]
    session = Session([PartyRole(n, "data_holder") for n in names], {})
    with _pool.PartyPool(
        session,
        names,
        threshold=1,
        bit_length=64,
        base_port=None,
        start_timeout_s=30,
        step_timeout_s=30,
    ):
        assert len(_party_processes(party_folder)) == 3
    assert not _party_processes(party_folder)
