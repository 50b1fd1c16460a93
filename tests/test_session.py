"""The session: role-scoped data, the metered channel, rounds, phases, reveals."""

from __future__ import annotations

import time

import pytest

from pets.session import ChannelError, PartyAccessError, Session, SessionError
from pets.tasks import PartyRole


def _session(names=("a", "b", "c", "d")) -> Session:
    parties = [PartyRole(n, "data_holder") for n in names]
    return Session(parties, {n: f"rows of {n}" for n in names})


def test_own_data_only_inside_own_scope():
    s = _session()
    with s.as_party("a") as a:
        assert a.data == "rows of a"
        assert s.current_party == "a"
        with s.as_party("b") as b:
            assert b.data == "rows of b"
            with pytest.raises(PartyAccessError, match=r"'b'.*'a'"):
                _ = a.data  # b is innermost: a's view may not be used
        assert a.data == "rows of a"
    with pytest.raises(PartyAccessError, match="after its scope ended"):
        _ = a.data
    with s.as_party("c"), pytest.raises(PartyAccessError):
        a.send("b", b"x")
    with pytest.raises(SessionError, match="parties: a, b, c, d"):
        with s.as_party("zz"):
            pass


def test_channel_fifo_tags_and_errors():
    s = _session()
    with s.as_party("a") as a:
        a.send("b", b"one", tag="x")
        a.send("b", bytearray(b"two"), tag="y")
        a.send("b", b"three", tag="x")
        with pytest.raises(ChannelError, match="serialise"):
            a.send("b", "text")
        with pytest.raises(ChannelError, match="itself"):
            a.send("a", b"x")
    with s.as_party("b") as b:
        assert b.receive("a", tag="y") == b"two"
        assert b.receive("a") == b"one"
        assert b.receive("a") == b"three"
        with pytest.raises(ChannelError, match="from 'a' to 'b'"):
            b.receive("a")


def test_meter_counts_bytes_messages_per_party():
    s = _session()
    for holder in ("a", "b", "c"):
        with s.as_party(holder) as p:
            p.send("d", b"x" * 100)
    with s.as_party("d") as d:
        for holder in ("a", "b", "c"):
            d.receive(holder)
    m = s.meter()
    assert m.bytes_total == 300 and m.messages == 3
    assert m.bytes_by_party["d"] == {"sent": 0, "received": 300}
    assert m.bytes_by_party["a"] == {"sent": 100, "received": 0}
    assert m.messages_by_party["d"]["received"] == 3
    assert m.rounds == 1  # all holders send at once


def test_rounds_are_the_longest_causal_chain():
    s = _session()
    with s.as_party("a") as a:
        a.send("b", b"q")
    with s.as_party("b") as b:
        b.receive("a")
        b.send("a", b"r")
    assert s.meter().rounds == 2
    with s.as_party("a") as a:
        a.receive("b")
        a.send("c", b"s")
    with s.as_party("c") as c:
        c.receive("a")
        c.send("d", b"t")
    assert s.meter().rounds == 4
    assert s.meter().rounds_by_party == {"a": 3, "b": 2, "c": 4, "d": 0}


def test_received_bytes_include_undelivered_messages():
    s = _session()
    with s.as_party("a") as a:
        a.send("b", b"read")
        a.send("b", b"never read")
    with s.as_party("b") as b:
        b.receive("a")
    assert s.received_bytes("b") == [b"read", b"never read"]
    assert len(s.transcript) == 2 and s.transcript[1].depth == 1


def test_phases_time_wall_and_cpu_without_double_counting():
    s = _session()
    start = time.perf_counter()
    with s.phase("compute"):
        t = time.process_time()
        while time.process_time() - t < 0.05:
            pass
        with s.phase("communicate"):
            time.sleep(0.1)
    with s.phase("compute"):
        pass
    elapsed = time.perf_counter() - start
    times = s.phase_times()
    assert times["compute"]["count"] == 2
    assert times["compute"]["cpu_s"] >= 0.04
    # the inner phase's time is not counted again in the outer one
    assert times["compute"]["wall_s"] + times["communicate"]["wall_s"] <= elapsed + 1e-6
    assert times["communicate"]["wall_s"] >= 0.09
    # process CPU while sleeping is other threads only: less than the wall time
    assert times["communicate"]["cpu_s"] < times["communicate"]["wall_s"]
    with pytest.raises(ValueError, match="allowed: setup, encode"):
        with s.phase("thinking"):
            pass


def test_reveals_and_external_traffic():
    s = _session()
    with s.as_party("d") as d:
        d.reveal("total", 42)
        s.reveal("d", "mean", 1.5)
    with pytest.raises(PartyAccessError):
        s.reveal("a", "x", 1)
    assert s.reveals == (("d", "total", 42), ("d", "mean", 1.5))
    s.add_external_traffic("a", "b", 1000, messages=4, rounds=3)
    m = s.meter()
    assert m.bytes_total == 1000 and m.messages == 4 and m.rounds == 3
    assert m.bytes_by_party["b"]["received"] == 1000


def test_external_traffic_payload_is_what_the_receiver_could_read():
    s = _session()
    s.add_external_traffic("a", "b", 7, payload=b"\x01secret")
    assert s.received_bytes("b") == [b"\x01secret"]
    assert s.received_bytes("a") == []


def test_helper_parties_are_metered_and_unique():
    s = _session()
    s.add_helper("server", role="compute")
    assert s.party_names[-1] == "server"
    with s.as_party("a") as a:
        a.send("server", b"share")
    with s.as_party("server") as server:
        assert server.data is None
        assert server.receive("a") == b"share"
    assert s.meter().bytes_by_party["server"]["received"] == 5
    with pytest.raises(SessionError, match="already exists"):
        s.add_helper("a")
