"""Parties of a socket backend on hosts of their own (``pets party --hosts``, MPyC's -P)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import pets
from pets.api import AggregateOutput, Backend, Capabilities, PartyContext, PetClass
from pets.cli import main
from pets.options import OptionError
from pets.runtime.context import ChannelError
from pets.runtime.hosts import parse_hosts, run_on_host
from pets.runtime.relay import free_ports
from pets.scenarios import build_problem, load_scenario

pytest.importorskip("mpyc", reason="the mpc extra is part of the test extra")

CARD, SIZE = "multi_site_prevalence", 1500
ORDER = ["england", "scotland", "wales", "northern_ireland", "aggregator", "analyst"]


def test_mpyc_parties_in_separate_processes_meet_at_their_addresses(tmp_path, scenario_dir):
    # one `pets party` process per party, each reaching the others at its own port only
    ports = free_ports(len(ORDER))
    hosts = ",".join(f"127.0.0.1:{port}" for port in ports)
    command = [sys.executable, "-m", "pets.cli", "party", CARD, "--backend", "mpyc"]
    procs = {
        name: subprocess.Popen(
            [*command, "--party", name, "--hosts", hosts, "--size", str(SIZE)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ORDER
    }
    outputs = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (name, err[-2000:])
        outputs[name] = json.loads(out)
    assert [o["party"] for o in outputs.values()] == ORDER
    # only the analyst learns the table, and its score is the harness's for the same cell
    assert [n for n, o in outputs.items() if "accuracy" in o] == ["analyst"]
    assert outputs["analyst"]["revealed"] == ["table"]
    frame = pets.run(
        [CARD],
        ["mpyc"],
        size=SIZE,
        leakage="off",
        out=tmp_path / "run",
        scenario_dir=scenario_dir,
        progress=False,
    )
    (row,) = frame.to_dict("records")
    assert row["status"] == "ok"
    remote = outputs["analyst"]["accuracy"]
    for key in ("median_relative_error", "max_absolute_error", "fraction_released"):
        assert remote[key] == pytest.approx(row[f"accuracy.{key}"], abs=1e-12), key
    assert all(o["phases"] for o in outputs.values())  # each timed its own phases


def test_host_lists_are_checked_in_one_line():
    order = ["a", "b", "c"]
    assert parse_hosts(["10.0.0.1:1", "h2:2", "[::1]:3"], order) == {
        "a": ("10.0.0.1", 1),
        "b": ("h2", 2),
        "c": ("::1", 3),
    }
    assert parse_hosts(["x:1,y:2", "z:3"], order)["c"] == ("z", 3)
    for bad, says in (
        (["x:1", "y:2"], "in this order: a, b, c (3); got 2"),
        (["x:1", "y:2", "z:0"], "port 1-65535"),
        (["x:1", "y:2", "z"], "HOST:PORT"),
        (["x:1", "y:2", "::1:3"], "IPv6"),
        (["x:1", "y:2", "x:1"], "x:1 is given to more than one party"),
    ):
        with pytest.raises(OptionError, match="hosts") as info:
            parse_hosts(bad, order)
        assert says in str(info.value)


def test_the_command_refuses_bad_input_in_one_line(capsys):
    hosts = ",".join(f"127.0.0.1:{2000 + i}" for i in range(len(ORDER)))
    for args, says in (
        (["--backend", "plaintext", "--party", "england"], "only socket backends"),
        (["--backend", "mpyc", "--party", "nobody"], "'nobody' is not a party"),
        (["--backend", "nosuch", "--party", "england"], "unknown backend 'nosuch'"),
        (["--backend", "mpyc", "--party", "england", "--size", "0"], "patients >= 100"),
        (["--backend", "mpyc", "--party", "england", "--param", "treshold=1"], "'threshold'?"),
        (["--backend", "mpyc+opendp", "--party", "england", "--param", "epsilon=nan"], "epsilon"),
    ):
        assert main(["party", CARD, *args, "--hosts", hosts]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err


class _Chatty(Backend):
    """A socket backend whose parties also use the harness's channel."""

    def __init__(self) -> None:
        pass

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            task_kinds=frozenset({"aggregate"}), pet_class=PetClass.BASELINE, sockets=True
        )

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        context.receive(context.peers()[0])
        return None


def test_a_backend_that_needs_the_harness_channel_is_told_so(scenario_dir):
    problem = build_problem(load_scenario(CARD, scenario_dir), 300, seed=0)
    hosts = [f"127.0.0.1:{port}" for port in free_ports(len(ORDER))]
    with pytest.raises(ChannelError, match="no harness channel"):
        run_on_host(_Chatty(), problem, "england", hosts)
