"""Harness relays for backends that bring their own network stack (MPyC's sockets).

Each socket party listens on a loopback port of its own; to reach another party it
connects to a relay port the harness listens on for that ordered pair, and the harness
forwards the bytes both ways. The relay counts bytes and chunks per direction, keeps the
bytes each party received (for the transcript attacks) and the causal depth of each
chunk: a chunk a party sends is one deeper than the deepest chunk (or harness-carried
message, given to :meth:`Relay.close`) delivered to it before it sent (Lamport's
happened-before, so an upper bound on the protocol's rounds for this run's timing).

A chunk's send time is the kernel's receive timestamp on the relay's socket
(``SO_TIMESTAMPNS``; loopback delivers at once), not the moment a relay thread got round
to reading it, so a relay thread that the scheduler delays does not make a chunk look
as if it waited for chunks delivered meanwhile. A delivery is timed just before the
relay writes it on, the earliest the party could read it. Depths are worked out when
the relay closes.
"""

from __future__ import annotations

import contextlib
import heapq
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["LinkTraffic", "Relay", "causal_depths", "free_ports"]

_HOST = "127.0.0.1"
_CHUNK = 1 << 16
#: Linux's SO_TIMESTAMPNS (asm-generic value; Python's socket module lacks the name).
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
_ANCILLARY = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0


def free_ports(count: int, host: str = _HOST) -> list[int]:
    """Return ``count`` distinct ports that were free a moment ago, for parties to
    listen on.

    They are drawn below the kernel's ephemeral range, so neither the relays' own
    listeners (bound to port 0) nor outgoing connections can take one of them between
    now and the moment its party binds it.
    """
    low = _ephemeral_low()
    candidates = random.SystemRandom().sample(range(max(1024, low - 12_000), low), k=count * 8)
    ports: list[int] = []
    for port in candidates:
        if len(ports) == count:
            break
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        ports.append(port)
    if len(ports) < count:
        raise OSError(f"found only {len(ports)} of {count} free ports below {low}")
    return ports


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux; 32768 elsewhere)."""
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


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
        # chunks as (sent, sender, receiver, delivered), in seconds on perf_counter
        self._events: list[tuple[float, str, str, float]] = []
        # perf_counter minus the kernel's real-time clock, to place kernel timestamps
        self._offset = time.perf_counter() - time.time_ns() / 1e9
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
                    _timestamp_receipts(listener)  # accepted sockets inherit it
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
            for sock in (client, upstream):
                _timestamp_receipts(sock)
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
                chunk, ancillary, _, _ = source.recvmsg(_CHUNK, _ANCILLARY)
            except OSError:
                chunk, ancillary = b"", []
            if not chunk:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            now = time.perf_counter()
            sent = self._kernel_time(ancillary)
            with self._lock:
                link = self._links.get((src, dst))
                if link is None:
                    link = self._links[(src, dst)] = LinkTraffic(
                        src, dst, payload=bytearray() if self._keep else None
                    )
                link.n_bytes += len(chunk)
                link.chunks += 1
                if link.payload is not None:
                    link.payload += chunk
                self._events.append((now if sent is None else min(sent, now), src, dst, now))
            try:
                sink.sendall(chunk)
            except OSError:
                return

    def _kernel_time(self, ancillary: list[tuple[int, int, bytes]]) -> float | None:
        """The kernel's receive time of a chunk, on perf_counter, if it gave one."""
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
                seconds, nanoseconds = struct.unpack_from("qq", data)
                return seconds + nanoseconds / 1e9 + self._offset
        return None

    def close(self, messages: Iterable[tuple[str, str, float]] = ()) -> list[LinkTraffic]:
        """Stop relaying; return the traffic of every link that carried bytes, in the
        order of ``order`` (by sender, then receiver).

        Parameters
        ----------
        messages : iterable of (sender, receiver, time)
            Messages the harness carried between the same parties outside the sockets,
            with the ``time.perf_counter()`` at which it took each: they join the causal
            chains, so a chunk sent after such a message arrived is deeper than it.
        """
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
            links = dict(self._links)
            events = list(self._events)
        known = set(self.order)
        events += [(t, a, b, t) for a, b, t in messages if a in known and b in known]
        for (src, dst), depth in causal_depths(events).items():
            if (src, dst) in links:
                links[(src, dst)].rounds = depth
        # card order, not the order the links first carried a byte (which timing decides)
        rank = {name: i for i, name in enumerate(self.order)}
        return [links[key] for key in sorted(links, key=lambda k: (rank[k[0]], rank[k[1]]))]


def causal_depths(events: Iterable[tuple[float, str, str, float]]) -> dict[tuple[str, str], int]:
    """The deepest chunk on each link, given ``(sent, sender, receiver, delivered)`` times.

    A chunk is one deeper than the deepest chunk delivered to its sender before it was
    sent; a party starts at depth 0.

    Examples
    --------
    >>> causal_depths([(0.0, "a", "b", 0.1), (0.2, "b", "c", 0.3), (0.05, "c", "a", 0.06)])
    {('a', 'b'): 1, ('c', 'a'): 1, ('b', 'c'): 2}
    """
    depth: dict[str, int] = {}
    deepest: dict[tuple[str, str], int] = {}
    in_flight: list[tuple[float, str, int]] = []
    for sent, src, dst, delivered in sorted(events, key=lambda e: e[0]):
        while in_flight and in_flight[0][0] < sent:
            _, to, d = heapq.heappop(in_flight)
            depth[to] = max(depth.get(to, 0), d)
        d = depth.get(src, 0) + 1
        heapq.heappush(in_flight, (delivered, dst, d))
        deepest[(src, dst)] = max(deepest.get((src, dst), 0), d)
    return deepest


def _timestamp_receipts(sock: socket.socket) -> None:
    """Ask the kernel to stamp each receipt on ``sock`` (where it can)."""
    if _SO_TIMESTAMPNS is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
