"""The network model: formula, profiles from cards and the command line, errors."""

from __future__ import annotations

import math

import pytest

from pets.network import (
    DEFAULT_PROFILES,
    NetworkProfile,
    busiest_link_bytes,
    modelled_costs,
    parse_profile,
)
from pets.scenarios import load_scenario
from pets.tasks import CardError


def test_formula_adds_latency_per_round_and_transfer_on_the_busiest_link():
    wan = NetworkProfile("wan", latency_ms=50.0, bandwidth_mbit_s=100.0)
    # 4 rounds x 50 ms + 8 * 12.5 MB / 100 Mbit/s = 0.2 s + 1 s
    assert wan.modelled_s(2.0, 4, 12_500_000) == pytest.approx(3.2)
    by_party = {"a": {"sent": 10, "received": 5}, "b": {"sent": 3, "received": 40}}
    assert busiest_link_bytes(by_party) == 40


def test_default_profiles_order_the_same_run():
    costs = modelled_costs(1.0, 6, {"a": {"sent": 10**6, "received": 10**6}})
    assert list(costs) == ["loopback", "lan", "wan"]
    assert costs["loopback"]["modelled_s"] == 1.0
    assert costs["loopback"]["bandwidth_mbit_s"] is None
    assert costs["wan"]["modelled_s"] > costs["lan"]["modelled_s"] > 1.0
    assert math.isinf(next(iter(DEFAULT_PROFILES)).bandwidth_mbit_s)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hscn", "expected NAME=LATENCY_MS,BANDWIDTH_MBIT_S"),
        ("hscn=8", "expected NAME=LATENCY_MS,BANDWIDTH_MBIT_S"),
        ("hscn=fast,500", "must be numbers"),
        ("hscn=8,0", "bandwidth_mbit_s must be > 0"),
        ("hscn=-1,10", "latency_ms must be a number >= 0"),
        ("HSCN=1,10", "lower-case"),
    ],
)
def test_bad_profiles_are_refused_with_the_reason(text, message):
    with pytest.raises(ValueError, match=message):
        parse_profile(text)


def test_cli_rejects_a_bad_profile(capsys):
    from pets.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--network", "hscn=8", "tre_queries"])
    assert "expected NAME=LATENCY_MS,BANDWIDTH_MBIT_S" in capsys.readouterr().err


def _card_with_network(tmp_path, scenario_dir, block):
    text = (scenario_dir / "tre_queries.toml").read_text() + "\n" + block
    path = tmp_path / "tre_queries.toml"
    path.write_text(text)
    return path


def test_a_card_defines_its_own_profile(tmp_path, scenario_dir):
    path = _card_with_network(
        tmp_path, scenario_dir, "[network.hscn]\nlatency_ms = 8\nbandwidth_mbit_s = 500\n"
    )
    card = load_scenario(path)
    assert card.network["hscn"] == NetworkProfile("hscn", 8.0, 500.0)


def test_a_bad_card_profile_names_the_field(tmp_path, scenario_dir):
    path = _card_with_network(
        tmp_path, scenario_dir, "[network.hscn]\nlatency_ms = 8\nbandwidth = 500\n"
    )
    with pytest.raises(CardError, match=r"network\.hscn"):
        load_scenario(path)
