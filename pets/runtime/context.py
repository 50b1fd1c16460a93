"""What a party program sees: :class:`PartyContext`.

A backend's :meth:`~pets.api.Backend.run_party` runs once in every party's own
operating-system process (SPMD style, as MPyC programs are written). The context holds
that party's name, role and private input, the public task, and the only ways to reach
the other parties: :meth:`~PartyContext.send` and :meth:`~PartyContext.receive`, carried
and metered by the harness; and, for backends that bring their own network stack,
harness-relayed sockets (:attr:`~PartyContext.network`). Nothing of another party is in
this process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pets.runtime import _link
from pets.runtime.codec import encode_value
from pets.session import PHASES, ChannelError, PhaseClock
from pets.tasks import PartyRole, Task

__all__ = ["PHASES", "ChannelError", "PartyContext", "PartyNetwork"]


@dataclass(frozen=True)
class PartyNetwork:
    """Loopback addresses for a backend's own sockets (``Capabilities.sockets``).

    Parameters
    ----------
    order : tuple of str
        The socket parties in a fixed order (an MPyC party id is a position here).
    listen : tuple of (str, int)
        Where this party listens.
    peers : dict of str to (str, int)
        Where this party connects to reach each other party: a harness relay that
        meters the bytes and keeps what each party received.
    """

    order: tuple[str, ...]
    listen: tuple[str, int]
    peers: dict[str, tuple[str, int]]


class PartyContext:
    """One party's view of a run, inside that party's own process.

    Parameters
    ----------
    conn : multiprocessing connection
        The link to the harness.
    name, role : str
        This party.
    task : Task
        The public task.
    parties : tuple of PartyRole
        Every party of the run, helpers the backend brings included.
    data : object
        This party's private input (None for a party that holds none).
    network : PartyNetwork or None
        Socket addresses, for backends that declare ``sockets``.
    scratch : Path
        A folder of this party's own, removed when the cell ends.
    """

    def __init__(
        self,
        conn: Any,
        *,
        name: str,
        role: str,
        task: Task,
        parties: tuple[PartyRole, ...],
        data: Any,
        network: PartyNetwork | None,
        scratch: Path,
    ) -> None:
        self._conn = conn
        self.name = name
        self.role = role
        self.task = task
        self.parties = parties
        self._data = data
        self.network = network
        self.scratch = scratch
        self._clock = PhaseClock()

    @property
    def data(self) -> Any:
        """This party's private input (a table, a model, or None)."""
        return self._data

    @property
    def party_names(self) -> tuple[str, ...]:
        """Every party's name, card parties first, then helpers."""
        return tuple(p.name for p in self.parties)

    def peers(self, role: str | None = None) -> tuple[str, ...]:
        """The other parties, optionally only those with ``role``, in card order."""
        return tuple(p.name for p in self.parties if p.name != self.name and role in (None, p.role))

    def _known(self, name: str) -> None:
        if name not in self.party_names:
            raise ChannelError(f"no party named {name!r}; parties: {', '.join(self.party_names)}")

    def send(self, to: str, payload: bytes | bytearray | memoryview, *, tag: str = "") -> None:
        """Send ``payload`` to party ``to`` through the harness's metered channel."""
        self._known(to)
        if to == self.name:
            raise ChannelError(f"{self.name!r} tried to send a message to itself")
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise ChannelError(
                f"{self.name!r} -> {to!r}: payload must be bytes, got {type(payload).__name__}; "
                "serialise it first (pets.api.pack)"
            )
        _link.write(self._conn, {"op": "send", "to": to, "tag": str(tag)}, bytes(payload))

    def receive(self, frm: str, *, tag: str | None = None) -> bytes:
        """Wait for the first message from ``frm`` (with ``tag``, if given) and return it."""
        self._known(frm)
        _link.write(self._conn, {"op": "receive", "frm": frm, "tag": tag})
        header, frames = _link.read(self._conn)
        if header["op"] == "deliver":
            return frames[0]
        raise ChannelError(str(header.get("message", "the harness stopped the run")))

    def reveal(self, label: str, value: Any) -> None:
        """Record that this party learns ``value`` in the clear (an output type, a table,
        an array or JSON-ready data)."""
        _link.write(self._conn, {"op": "reveal", "label": str(label)}, encode_value(value))

    def phase(self, name: str) -> Any:
        """Time a named phase in this party (wall and CPU); an inner phase pauses the
        outer one."""
        return self._clock.phase(name)

    def phase_times(self) -> dict[str, dict[str, float]]:
        """Phase name to ``wall_s``, ``cpu_s`` and ``count``, in this party."""
        return self._clock.times()
