"""The harness's socket relay: what each party received comes back in a fixed order."""

from __future__ import annotations

import socket
import time

from pets.runtime.relay import Relay


def _send(relay: Relay, servers: dict[str, socket.socket], src: str, dst: str, data: bytes):
    host, port = relay.network_for(src)["peers"][dst]
    client = socket.create_connection((host, port), timeout=5)
    accepted, _ = servers[dst].accept()
    client.sendall(data)
    got = b""
    while len(got) < len(data):
        got += accepted.recv(1 << 16)
    return client, accepted


def test_links_come_back_in_card_order_whatever_order_they_first_carried_bytes():
    order = ["holder_a", "holder_b", "aggregator"]
    relay = Relay(order)
    servers = {}
    for name in order:
        server = socket.socket()
        server.bind(("127.0.0.1", relay.listen_ports[name]))
        server.listen(4)
        servers[name] = server
    opened = []
    # the aggregator speaks first, the first holder last: timing decides the relay's
    # own record of which link came first
    for src, dst in [
        ("aggregator", "holder_a"),
        ("holder_b", "aggregator"),
        ("holder_a", "holder_b"),
    ]:
        opened += _send(relay, servers, src, dst, f"{src}>{dst}".encode())
        time.sleep(0.05)
    links = relay.close()
    for sock in opened + list(servers.values()):
        sock.close()
    assert [(link.sender, link.receiver) for link in links] == [
        ("holder_a", "holder_b"),
        ("holder_b", "aggregator"),
        ("aggregator", "holder_a"),
    ]
    assert [bytes(link.payload) for link in links] == [
        b"holder_a>holder_b",
        b"holder_b>aggregator",
        b"aggregator>holder_a",
    ]
