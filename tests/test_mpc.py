"""MPyC backends: each party its own process on harness-relayed sockets, exact against
plaintext, traffic counted at every party, sensible rounds, and failures that end
``party_failed`` and leave no process behind."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import pets
from pets.api import AggregateOutput, PartyContext, PartyRole
from pets.backends.federated import FedAvg, FedAvgSecAgg
from pets.backends.mpc import Mpyc
from pets.backends.mpc.party import MpcParty, _mpyc_options
from pets.containment import CELL_VARIABLE, owner_id
from pets.leakage import evaluate_leakage
from pets.report import scorecard, scorecard_text
from pets.runtime.context import PartyNetwork
from pets.runtime.harness import PartyProgramError, runner_for
from pets.runtime.relay import causal_depths
from pets.scenarios import build_problem, load_scenario

from conftest import solve_card, solve_problem

pytest.importorskip("mpyc")


class KilledMidway(Mpyc):
    """``wales`` dies (SIGKILL) once every party's MPyC runtime is connected, before it
    inputs its shares: the other parties are mid-protocol, waiting for them."""

    def _aggregate(self, context: PartyContext, mpc: MpcParty) -> AggregateOutput | None:
        if context.name == "wales":
            os.kill(os.getpid(), signal.SIGKILL)
        return super()._aggregate(context, mpc)


class Stalled(Mpyc):
    """``wales`` stops answering without dying: before it connects (``where="start"``)
    or once connected, before it inputs its shares (``where="step"``)."""

    def __init__(
        self, *, where: str = "step", start_timeout_s: float = 4, step_timeout_s: float = 4
    ) -> None:
        super().__init__(start_timeout_s=start_timeout_s, step_timeout_s=step_timeout_s)
        self.where = where

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        if context.name == "wales" and self.where == "start":
            time.sleep(60)
        return super().run_party(context)

    def _aggregate(self, context: PartyContext, mpc: MpcParty) -> AggregateOutput | None:
        if context.name == "wales":
            time.sleep(60)
        return super()._aggregate(context, mpc)


def _party_processes(marker: str) -> list[int]:
    """Live processes started for this test's cells: their environment names the test's
    own temporary folder ``marker`` (the cell worker, its fork server and the parties
    forked from it), so processes of anything else on the machine are not counted. The
    cell server this process keeps between runs (token ``<runner>-server``) belongs to no
    cell, and is not counted either."""
    kept = f"\0{CELL_VARIABLE}={owner_id()}-server\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker.encode() in environ and state != "Z" and kept not in b"\0" + environ:
            found.append(int(entry.name))
    return found


@pytest.fixture
def party_folder(monkeypatch) -> Iterator[str]:
    """Make the cells run by ``pets.run`` keep their files (and so name, in their
    environment) a folder of this test's own; a short one, as the fork server's socket
    lives there and a Unix socket's path has at most 107 bytes."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="pets-mpc-", dir="/tmp")
    monkeypatch.setenv("TMPDIR", folder)
    monkeypatch.setattr(tempfile, "tempdir", folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _wait_until_gone(marker: str, seconds: float = 10) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _party_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.parametrize("vectorised", [True, False], ids=["vectorised", "per-element"])
def test_aggregate_is_exact_and_counted_at_every_party(vectorised, scenario_dir):
    out, ref, acc, problem, session = solve_card(
        Mpyc(vectorised=vectorised), "multi_site_prevalence", scenario_dir, 5000
    )
    np.testing.assert_array_equal(out.table["n"], ref.table["n"])
    assert acc.metrics["max_relative_error"] < 1e-9
    meter = session.meter()
    # every party is a process whose sockets the harness relayed and metered
    assert set(session.party_names) == set(problem.task.party_names)  # six: no helper
    for name in session.party_names:
        assert meter.bytes_by_party[name]["sent"] > 0
        assert meter.bytes_by_party[name]["received"] > 0
        assert (
            sum(map(len, session.received_bytes(name))) == (meter.bytes_by_party[name]["received"])
        )
    assert meter.rounds >= 4  # connect, input, output, shutdown
    assert [p for p, *_ in session.reveals] == [problem.task.recipient]
    leakage = evaluate_leakage(problem, session, Mpyc().capabilities)
    exposure = [a for a in leakage["attacks"] if a["attack"] == "transcript_exposure"]
    assert any(a["applicable"] for a in exposure)  # the relayed socket bytes were searched
    assert leakage["headline"]["worst_residual_risk"] < 0.05
    assert leakage["flags"] == []


def test_a_three_party_secure_sum_takes_a_few_rounds(scenario_dir):
    card = load_scenario("multi_site_prevalence", scenario_dir)
    problem = build_problem(card, 3000, seed=0)
    keep = ("england", "scotland", "analyst")
    task = dataclasses.replace(
        problem.task, parties=tuple(p for p in problem.task.parties if p.name in keep)
    )
    run = runner_for(Mpyc(), AggregateOutput).run(
        task, {k: v for k, v in problem.party_data.items() if k in keep}
    )
    # one round to connect, two for the sum (shares in, the total's shares out to the
    # analyst), one for MPyC's shutdown; a message that merely arrived before a send
    # counts as its cause, so a loaded machine may add one or two
    assert 4 <= run.session.meter().rounds <= 7


def test_linkage_finds_exactly_the_matches(scenario_dir):
    _out, ref, acc, _problem, session = solve_card(
        Mpyc(), "trial_recruitment_linkage", scenario_dir, 20_000
    )
    assert ref.cardinality > 0
    assert acc.metrics["precision"] == 1.0
    assert acc.metrics["recall"] == 1.0
    assert acc.metrics["relative_error.hba1c_mean"] < 1e-9
    # two card parties need a third server for an honest majority
    assert session.party_names[-1] == "mpc_server_1"
    assert session.meter().bytes_by_party["mpc_server_1"]["received"] > 0


def test_a_linkage_over_max_pairs_is_refused(scenario_dir):
    problem = build_problem(load_scenario("trial_recruitment_linkage", scenario_dir), 4000, 0)
    with pytest.raises(PartyProgramError, match="exceeds max_pairs=10") as caught:
        solve_problem(Mpyc(max_pairs=10), problem)
    assert caught.value.status == "unsupported"


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
    secure, _, _, _, session = solve_card(
        Mpyc(**settings), "federated_risk_model", scenario_dir, 20_000
    )
    plain, *_ = solve_card(FedAvg(**settings), "federated_risk_model", scenario_dir, 20_000)
    via, *_ = solve_card(
        FedAvgSecAgg(via="mpyc", **settings), "federated_risk_model", scenario_dir, 20_000
    )
    for model in (secure, via):
        np.testing.assert_allclose(model.coef, plain.coef, atol=1e-6)
        assert model.intercept == pytest.approx(plain.intercept, abs=1e-6)
    # each round chains the weights (a harness message) with the secure sum (sockets)
    assert session.meter().rounds >= 3 * settings["rounds"]
    updates = [m for m in session.transcript if m.tag == "update"]
    assert updates == []  # no update crossed in the clear


def test_threshold_without_honest_majority_is_refused():
    with pytest.raises(ValueError, match="more than 4 parties"):
        Mpyc(parties=4, threshold=2).capabilities  # noqa: B018


def test_mpyc_options_name_the_relays_and_the_own_port():
    network = PartyNetwork(
        order=("a", "b", "c"),
        listen=("127.0.0.1", 5001),
        peers={"a": ("127.0.0.1", 6001), "c": ("127.0.0.1", 6003)},
    )
    assert _mpyc_options(network, "b", 1) == [
        *["-P", "127.0.0.1:6001", "-P", ":5001", "-P", "127.0.0.1:6003"],
        *["-T", "1", "--no-log", "--no-barrier"],
    ]
    task = build_problem(load_scenario("trial_recruitment_linkage"), 1000, 0).task
    assert Mpyc(parties=5).helpers(task) == tuple(
        PartyRole(f"mpc_server_{i}", "compute") for i in (1, 2, 3)
    )
    assert Mpyc().helpers(task) == (PartyRole("mpc_server_1", "compute"),)


def test_causal_depths_follow_happened_before():
    # a -> b -> c is a chain of two; c's message to a, sent before anything reached c,
    # is one deep
    assert causal_depths([(0.0, "a", "b", 0.1), (0.2, "b", "c", 0.3), (0.05, "c", "a", 0.06)]) == {
        ("a", "b"): 1,
        ("b", "c"): 2,
        ("c", "a"): 1,
    }
    # a message sent before the other's arrived does not depend on it
    assert causal_depths([(0.0, "a", "b", 0.2), (0.1, "b", "a", 0.3)]) == {
        ("a", "b"): 1,
        ("b", "a"): 1,
    }


def test_a_party_killed_mid_protocol_gives_party_failed(
    tmp_path, registry, scenario_dir, party_folder
):
    registry.add("mpyc-killed", "test_mpc:KilledMidway")
    frame = pets.run(
        ["multi_site_prevalence"],
        ["mpyc-killed"],
        size=2000,
        out=tmp_path,
        registry=registry,
        scenario_dir=scenario_dir,
        progress=False,
        timeout=120,
    )
    record = frame.iloc[0]
    assert record["status"] == "party_failed", record["error"]
    assert "'wales'" in record["error"] and "signal 9" in record["error"]
    assert not _wait_until_gone(party_folder)


@pytest.mark.parametrize(
    ("where", "what"),
    [
        # the others connect to wales through the relay; on a loaded machine one may get
        # that far before the start deadline, and then the step deadline fires instead
        ("start", "(connecting to every party|the secure sum)"),
        ("step", "the secure sum"),
    ],
)
def test_a_party_that_stops_answering_runs_out_the_deadline(where, what, scenario_dir):
    problem = build_problem(load_scenario("multi_site_prevalence", scenario_dir), 2000, 0)
    backend = Stalled(where=where)
    start = time.monotonic()
    with pytest.raises(PartyProgramError, match=f"did not finish {what} within 4 s") as caught:
        solve_problem(backend, problem)
    assert caught.value.status == "party_failed"
    assert caught.value.party != "wales"
    assert time.monotonic() - start < 40


def test_a_cell_timeout_kills_the_party_processes(tmp_path, registry, scenario_dir, party_folder):
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:  # the check sees the live parties, so "none left" means something
        while not done.is_set():
            seen.append(len(_party_processes(party_folder)))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.monotonic()
    try:
        frame = pets.run(
            ["federated_risk_model"],
            ["mpyc"],
            params={"rounds": 100_000},
            size=3000,
            out=tmp_path,
            registry=registry,
            scenario_dir=scenario_dir,
            timeout=12,
            progress=False,
        )
    finally:
        done.set()
        watcher.join()
    assert frame.iloc[0]["status"] == "timeout"
    assert time.monotonic() - start < 60
    assert max(seen) >= 6  # the worker, its fork server and six parties at some point
    assert not _wait_until_gone(party_folder)
    assert not list(Path(party_folder).rglob("party-*"))  # scratch went with the cell


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
    assert record["isolation"] == "process"
    cost = record["cost"]
    assert set(cost["bytes_by_party"]) >= {"england", "aggregator", "analyst"}
    assert cost["rounds"] >= 4
    net = cost["network"]
    assert net["loopback"]["modelled_s"] == pytest.approx(cost["wall_s"])
    assert net["wan"]["modelled_s"] > net["lan"]["modelled_s"] > net["loopback"]["modelled_s"]
    assert net["hscn"]["latency_ms"] == 8.0
    assert frame.iloc[0]["status"] == "ok"
    card = scorecard(frame)["multi_site_prevalence"].iloc[0]
    assert card["wan_s"] == pytest.approx(net["wan"]["modelled_s"])
    assert "WAN time" in scorecard_text(frame)
