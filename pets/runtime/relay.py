"""Harness relays for backends that bring their own network stack (MPyC's sockets).

Each socket party listens on a loopback port of its own; to reach another party it
connects to a relay port the harness listens on for that ordered pair, and the harness
forwards the bytes both ways. The relay counts bytes and chunks per direction, keeps the
bytes each party received (for the transcript attacks) and the causal depth of each
chunk: a chunk a party sends is one deeper than the deepest chunk delivered to it
before (Lamport's happened-before on the relay's clock, so an upper bound on the
protocol's rounds for this run's timing).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LinkTraffic", "Relay", "free_ports"]

_HOST = "127.0.0.1"
_CHUNK = 1 << 16


def free_ports(count: int, host: str = _HOST) -> list[int]:
    """Return ``count`` distinct ports that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class LinkTraffic:
    """What crossed one direction of one link."""

    sender: str
    receiver: str
    n_bytes: int = 0
    chunks: int = 0
    rounds: int = 0
    payload: bytearray | None = None


class Relay:
    """Relays between socket parties, metered by the harness.

    Parameters
    ----------
    order : sequence of str
        The socket parties.
    keep_payloads : bool
        Keep the bytes each party received.
    connect_timeout_s : float
        How long a relay waits for the destination party to listen.
    """

    def __init__(
        self, order: Sequence[str], *, keep_payloads: bool = True, connect_timeout_s: float = 60
    ) -> None:
        self.order = tuple(order)
        self._keep = keep_payloads
        self._connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._depth = dict.fromkeys(self.order, 0)
        self._links: dict[tuple[str, str], LinkTraffic] = {}
        self._listeners: dict[tuple[str, str], socket.socket] = {}
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.listen_ports = dict(zip(self.order, free_ports(len(self.order)), strict=True))
        for src in self.order:
            for dst in self.order:
                if src != dst:
                    listener = socket.socket()
                    listener.bind((_HOST, 0))
                    listener.listen(4)
                    self._listeners[(src, dst)] = listener
                    self._spawn(self._accept, listener, src, dst)

    def network_for(self, name: str) -> dict[str, object]:
        """The addresses party ``name`` is given (JSON-ready)."""
        return {
            "order": list(self.order),
            "listen": [_HOST, self.listen_ports[name]],
            "peers": {
                dst: [_HOST, listener.getsockname()[1]]
                for (src, dst), listener in self._listeners.items()
                if src == name
            },
        }

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept(self, listener: socket.socket, src: str, dst: str) -> None:
        while not self._closed:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = self._connect(self.listen_ports[dst])
            if upstream is None:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream, src, dst)
            self._spawn(self._pump, upstream, client, dst, src)

    def _connect(self, port: int) -> socket.socket | None:
        deadline = time.monotonic() + self._connect_timeout_s
        while not self._closed and time.monotonic() < deadline:
            try:
                return socket.create_connection((_HOST, port), timeout=5)
            except OSError:
                time.sleep(0.01)
        return None

    def _pump(self, source: socket.socket, sink: socket.socket, src: str, dst: str) -> None:
        source.settimeout(None)
        while True:
            try:
                chunk = source.recv(_CHUNK)
            except OSError:
                chunk = b""
            if not chunk:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            with self._lock:
                depth = self._depth[src] + 1
                link = self._links.get((src, dst))
                if link is None:
                    link = self._links[(src, dst)] = LinkTraffic(
                        src, dst, payload=bytearray() if self._keep else None
                    )
                link.n_bytes += len(chunk)
                link.chunks += 1
                link.rounds = max(link.rounds, depth)
                if link.payload is not None:
                    link.payload += chunk
            try:
                sink.sendall(chunk)
            except OSError:
                return
            with self._lock:
                self._depth[dst] = max(self._depth[dst], depth)

    def close(self) -> list[LinkTraffic]:
        """Stop relaying; return the traffic of every link that carried bytes."""
        self._closed = True
        for listener in self._listeners.values():
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
                listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(timeout=2)
        with self._lock:
            return list(self._links.values())
