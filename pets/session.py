"""The session: parties, role-scoped data, a metered channel, phase timing, reveals.

The harness builds one :class:`Session` per run and hands it to ``backend.run``. A party's
private input is reachable only through the :class:`PartyView` yielded by
``session.as_party(name)``, and only while that party's scope is the innermost one.
Every message between parties crosses the channel as bytes; the session counts bytes,
messages and rounds per party and keeps the transcript for the leakage checks. A
backend that bypasses this API (reads the harness's private attributes, ships data some
other way) is not stopped here, but the harness's transcript-exposure check sees what
each party actually received.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pets.tasks import PartyRole

__all__ = [
    "PHASES",
    "ChannelError",
    "ChannelMeter",
    "Message",
    "PartyAccessError",
    "PartyView",
    "PhaseClock",
    "Session",
    "SessionError",
]

#: Names a backend may give its phases.
PHASES = (
    "setup",
    "encode",
    "encrypt",
    "compute",
    "communicate",
    "decrypt",
    "reveal",
    "train",
    "generate",
)


class SessionError(RuntimeError):
    """Misuse of the session."""


class PartyAccessError(SessionError):
    """Code acted as, or read the data of, a party whose scope is not the innermost one."""


class ChannelError(SessionError):
    """A message could not be sent or received."""


class PhaseClock:
    """Wall and CPU time per named phase, in this process; an inner phase pauses the
    outer one. The session and each party's context keep one."""

    def __init__(self) -> None:
        self.totals: dict[str, dict[str, float]] = {}
        self._stack: list[list[Any]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as phase ``name`` (one of :data:`PHASES`)."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; allowed: {', '.join(PHASES)}")
        now_w, now_c = time.perf_counter(), time.process_time()
        if self._stack:
            self._bank(self._stack[-1], now_w, now_c)
        entry = [name, now_w, now_c]
        self._stack.append(entry)
        totals = self.totals.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0, "count": 0})
        totals["count"] += 1
        try:
            yield
        finally:
            end_w, end_c = time.perf_counter(), time.process_time()
            self._bank(entry, end_w, end_c)
            self._stack.pop()
            if self._stack:
                self._stack[-1][1:] = [end_w, end_c]

    def _bank(self, entry: list[Any], now_w: float, now_c: float) -> None:
        totals = self.totals[entry[0]]
        totals["wall_s"] += now_w - entry[1]
        totals["cpu_s"] += now_c - entry[2]
        entry[1:] = [now_w, now_c]

    def times(self) -> dict[str, dict[str, float]]:
        """Phase name to ``wall_s``, ``cpu_s`` and ``count``."""
        return {k: dict(v) for k, v in self.totals.items()}


@dataclass(frozen=True)
class Message:
    """One message as the channel carried it."""

    index: int
    sender: str
    receiver: str
    tag: str
    depth: int
    payload: bytes = field(repr=False)
    at_s: float = 0.0


@dataclass(frozen=True)
class ChannelMeter:
    """Traffic counted by the session."""

    bytes_total: int
    bytes_by_party: dict[str, dict[str, int]]
    messages: int
    messages_by_party: dict[str, dict[str, int]]
    rounds: int
    rounds_by_party: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """Return the meter as JSON-ready data."""
        return {
            "bytes_total": self.bytes_total,
            "bytes_by_party": self.bytes_by_party,
            "messages": self.messages,
            "messages_by_party": self.messages_by_party,
            "rounds": self.rounds,
            "rounds_by_party": self.rounds_by_party,
        }


class PartyView:
    """What code acting as one party may use: its data, its channel ends, its reveals."""

    def __init__(self, session: Session, name: str, role: str) -> None:
        self._session = session
        self.name = name
        self.role = role
        self._open = True

    def _check(self, action: str) -> None:
        current = self._session.current_party
        if not self._open:
            raise PartyAccessError(
                f"code used the view of {self.name!r} to {action} after its scope ended"
                + (f", while acting as {current!r}" if current else "")
            )
        if current != self.name:
            raise PartyAccessError(
                f"{current!r} tried to {action} of {self.name!r} while acting as {current!r}; "
                f"open `session.as_party({self.name!r})` to act as that party"
            )

    @property
    def data(self) -> Any:
        """This party's private input (None if it holds none)."""
        self._check("read the data")
        return self._session._party_data.get(self.name)

    def send(self, to: str, payload: bytes | bytearray | memoryview, *, tag: str = "") -> None:
        """Send ``payload`` to party ``to`` through the metered channel."""
        self._check("send a message")
        self._session._send(self.name, to, payload, tag)

    def receive(self, frm: str, *, tag: str | None = None) -> bytes:
        """Take the first waiting message from ``frm`` (with ``tag``, if given)."""
        self._check("receive a message")
        return self._session._receive(frm, self.name, tag)

    def reveal(self, label: str, value: Any) -> None:
        """Record that this party learns ``value`` in the clear."""
        self._check("reveal a value")
        self._session._reveals.append((self.name, label, value))


class Session:
    """One run's parties, data, channel, clock and reveals (owned by the harness).

    Parameters
    ----------
    parties : sequence of PartyRole
        The parties and their roles.
    party_data : Mapping
        Each party's private input.
    keep_transcript : bool
        Keep message payloads for the leakage checks.
    """

    def __init__(
        self,
        parties: Sequence[PartyRole],
        party_data: Mapping[str, Any],
        *,
        keep_transcript: bool = True,
    ) -> None:
        self.parties = tuple(parties)
        self._roles = {p.name: p.role for p in self.parties}
        unknown = set(party_data) - set(self._roles)
        if unknown:
            raise SessionError(f"data given for unknown parties: {sorted(unknown)}")
        self._party_data = dict(party_data)
        self._keep = keep_transcript
        self._stack: list[PartyView] = []
        self._queues: dict[tuple[str, str], deque[Message]] = {}
        self._messages: list[Message] = []
        self._depth = dict.fromkeys(self._roles, 0)
        self._reveals: list[tuple[str, str, Any]] = []
        self._clock = PhaseClock()
        self._t0 = time.perf_counter()
        self._external: list[tuple[str, str, int, int, int]] = []
        self._external_payloads: list[tuple[str, bytes]] = []
        self._synced: dict[str, int] = {}

    # -- parties -----------------------------------------------------------------------
    @property
    def party_names(self) -> tuple[str, ...]:
        """Party names in card order."""
        return tuple(p.name for p in self.parties)

    @property
    def current_party(self) -> str | None:
        """The party whose scope is innermost, or None."""
        return self._stack[-1].name if self._stack else None

    def add_helper(self, name: str, role: str = "helper") -> None:
        """Add a party the PET brings that the card does not name (an extra MPC
        server, the key holder of a keyed hash). It holds no data; its traffic is
        metered and what it receives is attacked like any other party's.

        Raises
        ------
        SessionError
            If ``name`` is already a party.
        """
        if name in self._roles:
            raise SessionError(f"party {name!r} already exists; parties: {', '.join(self._roles)}")
        self.parties = (*self.parties, PartyRole(name, role))
        self._roles[name] = role
        self._depth[name] = 0

    def _known(self, name: str) -> None:
        if name not in self._roles:
            raise SessionError(f"no party named {name!r}; parties: {', '.join(self.party_names)}")

    @contextmanager
    def as_party(self, name: str) -> Iterator[PartyView]:
        """Act as party ``name`` inside the ``with`` block."""
        self._known(name)
        view = PartyView(self, name, self._roles[name])
        self._stack.append(view)
        try:
            yield view
        finally:
            view._open = False
            self._stack.remove(view)

    def reveal(self, party: str, label: str, value: Any) -> None:
        """Record that ``party`` learns ``value``; only while acting as that party."""
        self._known(party)
        if self.current_party != party:
            raise PartyAccessError(
                f"reveal to {party!r} while acting as {self.current_party!r}; "
                f"open `session.as_party({party!r})` first"
            )
        self._reveals.append((party, label, value))

    @property
    def reveals(self) -> tuple[tuple[str, str, Any], ...]:
        """(party, label, value) for everything a party learned in the clear."""
        return tuple(self._reveals)

    # -- channel -----------------------------------------------------------------------
    def _send(self, sender: str, receiver: str, payload: Any, tag: str) -> None:
        self.carry(sender, receiver, payload, tag)

    def carry(self, sender: str, receiver: str, payload: Any, tag: str = "") -> None:
        """Carry one message from ``sender`` to ``receiver``: count it, keep it in the
        transcript and queue it until the receiver takes it (the harness's side of a
        party's ``send``).

        Raises
        ------
        ChannelError
            If the receiver is the sender or the payload is not bytes.
        """
        self._known(sender)
        self._known(receiver)
        if receiver == sender:
            raise ChannelError(f"{sender!r} tried to send a message to itself")
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise ChannelError(
                f"{sender!r} -> {receiver!r}: payload must be bytes, got "
                f"{type(payload).__name__}; serialise it first (pets.wire.pack)"
            )
        depth = self._depth[sender] + 1
        message = Message(
            index=len(self._messages),
            sender=sender,
            receiver=receiver,
            tag=tag,
            depth=depth,
            payload=bytes(payload),
            at_s=time.perf_counter() - self._t0,
        )
        self._messages.append(message)
        self._queues.setdefault((sender, receiver), deque()).append(message)

    def _receive(self, sender: str, receiver: str, tag: str | None) -> bytes:
        payload = self.take(sender, receiver, tag)
        if payload is None:
            what = f" with tag {tag!r}" if tag is not None else ""
            raise ChannelError(f"no message{what} waiting from {sender!r} to {receiver!r}")
        return payload

    def take(self, sender: str, receiver: str, tag: str | None = None) -> bytes | None:
        """Hand ``receiver`` the first waiting message from ``sender`` (with ``tag``, if
        given), or None if none waits; the receiver's causal depth follows it."""
        self._known(sender)
        self._known(receiver)
        queue = self._queues.get((sender, receiver), deque())
        for i, message in enumerate(queue):
            if tag is None or message.tag == tag:
                del queue[i]
                self._depth[receiver] = max(self._depth[receiver], message.depth)
                return message.payload
        return None

    def record_reveal(self, party: str, label: str, value: Any) -> None:
        """Record that ``party`` learned ``value`` in the clear (the harness's side of a
        party's ``reveal``)."""
        self._known(party)
        self._reveals.append((party, label, value))

    def add_external_traffic(
        self,
        sender: str,
        receiver: str,
        n_bytes: int,
        *,
        messages: int = 1,
        rounds: int = 0,
        payload: bytes | None = None,
    ) -> None:
        """Count traffic measured outside the channel (parties as separate processes with
        their own sockets).

        Parameters
        ----------
        sender, receiver : str
            The two ends.
        n_bytes, messages, rounds : int
            What the socket meter counted on this link, in this direction.
        payload : bytes, optional
            The raw bytes the receiver's socket delivered, kept (if the session keeps a
            transcript) so the leakage checks can search what the receiver saw.
        """
        self._known(sender)
        self._known(receiver)
        self._external.append((sender, receiver, int(n_bytes), int(messages), int(rounds)))
        if payload and self._keep:
            self._external_payloads.append((receiver, bytes(payload)))

    def synchronise(self, parties: Sequence[str], rounds: int) -> None:
        """Record a step of ``rounds`` communication rounds among ``parties`` that ran
        outside the channel (on the parties' own sockets): it starts after everything
        each of them has received so far, and extends their causal chains."""
        for name in parties:
            self._known(name)
        depth = max((self._depth[p] for p in parties), default=0) + int(rounds)
        for name in parties:
            self._depth[name] = depth
            self._synced[name] = depth

    def received_bytes(self, party: str) -> list[bytes]:
        """Payloads sent to ``party``, delivered or not, and the raw bytes its own
        sockets received: everything it could read."""
        self._known(party)
        return [m.payload for m in self._messages if m.receiver == party] + [
            payload for receiver, payload in self._external_payloads if receiver == party
        ]

    @property
    def transcript(self) -> tuple[Message, ...]:
        """Every message carried, in order."""
        return tuple(self._messages)

    def meter(self) -> ChannelMeter:
        """Return the traffic counted so far."""
        by_bytes = {n: {"sent": 0, "received": 0} for n in self.party_names}
        by_msgs = {n: {"sent": 0, "received": 0} for n in self.party_names}
        rounds_by = dict.fromkeys(self.party_names, 0)
        total = 0
        for m in self._messages:
            size = len(m.payload)
            total += size
            by_bytes[m.sender]["sent"] += size
            by_bytes[m.receiver]["received"] += size
            by_msgs[m.sender]["sent"] += 1
            by_msgs[m.receiver]["received"] += 1
            rounds_by[m.sender] = max(rounds_by[m.sender], m.depth)
        for sender, receiver, n_bytes, n_msgs, n_rounds in self._external:
            total += n_bytes
            by_bytes[sender]["sent"] += n_bytes
            by_bytes[receiver]["received"] += n_bytes
            by_msgs[sender]["sent"] += n_msgs
            by_msgs[receiver]["received"] += n_msgs
            rounds_by[sender] = max(rounds_by[sender], n_rounds)
        for name, depth in self._synced.items():
            rounds_by[name] = max(rounds_by[name], depth)
        return ChannelMeter(
            bytes_total=total,
            bytes_by_party=by_bytes,
            messages=sum(v["sent"] for v in by_msgs.values()),
            messages_by_party=by_msgs,
            rounds=max(rounds_by.values(), default=0),
            rounds_by_party=rounds_by,
        )

    # -- phases ------------------------------------------------------------------------
    def phase(self, name: str) -> Any:
        """Time a named phase (wall and CPU); an inner phase pauses the outer one."""
        return self._clock.phase(name)

    def add_phase_times(self, phases: Mapping[str, Mapping[str, float]]) -> None:
        """Merge one party process's phase totals: CPU and counts add up, wall time is
        the longest any party spent in the phase (parties run side by side)."""
        for name, totals in phases.items():
            mine = self._clock.totals.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0, "count": 0})
            mine["wall_s"] = max(mine["wall_s"], float(totals.get("wall_s", 0.0)))
            mine["cpu_s"] += float(totals.get("cpu_s", 0.0))
            mine["count"] += int(totals.get("count", 0))

    def phase_times(self) -> dict[str, dict[str, float]]:
        """Phase name to ``wall_s``, ``cpu_s`` and ``count``."""
        return self._clock.times()
