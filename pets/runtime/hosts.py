"""One party of a cell on a host of its own: host lists for socket backends (MPyC's ``-P``).

``pets run`` starts every party of a cell on one machine and relays their sockets, so
it can meter every byte and attack what each party received. A workshop can also run
the parties of an MPyC backend on separate machines: each host runs
``pets party CARD --backend mpyc --party NAME --hosts HOST:PORT ...`` with the same
list of addresses, one per party in the cell's party order (the card's parties, then the
backend's helpers), and the parties connect to each other directly, as MPyC's own ``-P``
options make them.

Each host builds the cell from the card, the size and the seed, exactly as the harness
does (the cohort is synthetic and generated from the seed, so every host computes the
same partition), and hands the party program only its own table. The program is the
backend's own ``run_party``, unchanged: only the addresses differ. What the party
reveals stays in this process; the recipient's summary carries the harness's score of
its output against the cell's reference, computed on this host from the regenerated
cohort.

What a party run this way does not give: no relay, so no metered bytes and no leakage
attacks (run the cell with ``pets run`` for those), and no harness channel, so a backend
whose parties use :meth:`~pets.api.PartyContext.send` fails with a message saying so.
MPyC's links are plain TCP here: run it on a network the parties trust.
"""

from __future__ import annotations

import ipaddress
import json
import multiprocessing
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pets.options import OptionError
from pets.runtime import _link

__all__ = ["HostParty", "parse_hosts", "run_on_host", "summary"]


def parse_hosts(values: Sequence[str], order: Sequence[str]) -> dict[str, tuple[str, int]]:
    """Read ``HOST:PORT`` addresses, one per party of ``order``, in that order.

    Parameters
    ----------
    values : sequence of str
        Each ``HOST:PORT`` (an IPv6 host in brackets, ``[::1]:11365``); a value may also
        hold several, separated by commas.
    order : sequence of str
        The cell's parties (card parties, then the backend's helpers).

    Raises
    ------
    OptionError
        A malformed address, a port outside 1-65535, a repeated address, or not one
        address per party (the message names the order).
    """
    items = [part.strip() for value in values for part in str(value).split(",") if part.strip()]
    if len(items) != len(order):
        raise OptionError(
            "hosts",
            f"needs one HOST:PORT per party, in this order: {', '.join(order)} "
            f"({len(order)}); got {len(items)}",
        )
    addresses: dict[str, tuple[str, int]] = {}
    for name, item in zip(order, items, strict=True):
        host, sep, port_text = item.rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")
        host = host[1:-1] if bracketed else host
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise OptionError("hosts", f"takes HOST:PORT (port 1-65535), got {item!r}")
        if ":" in host or bracketed:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise OptionError("hosts", f"{item!r}: not an IPv6 address") from None
            if not bracketed:
                raise OptionError("hosts", f"{item!r}: write an IPv6 host in brackets, [::1]:11365")
        addresses[name] = (host, int(port_text))
    repeated = [a for a in set(addresses.values()) if list(addresses.values()).count(a) > 1]
    if repeated:
        host, port = repeated[0]
        raise OptionError("hosts", f"{host}:{port} is given to more than one party")
    return addresses


@dataclass
class HostParty:
    """What one party run on its own host gives back.

    Attributes
    ----------
    name, role : str
        The party.
    output : object
        What its program returned (the recipient's output; None for the others).
    revealed : list of str
        Labels of what it revealed (kept in this process, not shown).
    phases : dict
        Its phase times (``wall_s``, ``cpu_s``, ``count`` per phase).
    wall_s : float
        Its program's wall time.
    """

    name: str
    role: str
    output: Any
    revealed: list[str] = field(default_factory=list)
    phases: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0


def run_on_host(backend: Any, problem: Any, name: str, hosts: Sequence[str]) -> HostParty:
    """Run party ``name``'s program of ``backend`` on ``problem`` in this process,
    reaching the other parties at ``addresses`` directly.

    Parameters
    ----------
    backend : Backend
        A built backend whose capabilities declare ``sockets``.
    problem : Problem
        The cell (:func:`pets.scenarios.build_problem`); only ``name``'s table is used.
    name : str
        The party this host runs.
    hosts : sequence of str
        Every party's ``HOST:PORT`` in party order (:func:`parse_hosts`); this party
        listens on its own port on every interface.

    Raises
    ------
    OptionError
        The backend brings no sockets, ``name`` is not a party of the cell, or the
        host list is not one address per party.
    """
    from pets.runtime.context import PartyContext, PartyNetwork

    task = problem.task
    if not backend.capabilities.sockets:
        raise OptionError(
            "backend",
            f"{type(backend).__name__} talks through the harness's channel, not sockets of "
            "its own; only socket backends (MPyC) run on separate hosts",
        )
    parties = (*task.parties, *backend.helpers(task))
    roles = {p.name: p.role for p in parties}
    if name not in roles:
        raise OptionError(
            "party", f"{name!r} is not a party of this cell; parties: {', '.join(roles)}"
        )
    order = tuple(roles)
    addresses = parse_hosts(hosts, order)
    network = PartyNetwork(
        order=order,
        listen=("", addresses[name][1]),
        peers={other: addresses[other] for other in order if other != name},
    )
    ours, theirs = multiprocessing.Pipe()
    revealed: list[str] = []
    refused: list[str] = []
    drainer = threading.Thread(target=_answer_link, args=(theirs, revealed, refused), daemon=True)
    drainer.start()
    with tempfile.TemporaryDirectory(prefix="pets-party-") as scratch:
        context = PartyContext(
            ours,
            name=name,
            role=roles[name],
            task=task,
            parties=parties,
            data=problem.party_data.get(name),
            network=network,
            scratch=Path(scratch),
        )
        start = time.perf_counter()
        output = backend.run_party(context)
        wall = time.perf_counter() - start
    ours.close()
    drainer.join(timeout=5)
    if refused:
        raise RuntimeError(refused[0])
    return HostParty(name, roles[name], output, revealed, context.phase_times(), wall)


def _answer_link(conn: Any, revealed: list[str], refused: list[str]) -> None:
    """The harness's end of a lone party's link: keep reveal labels, refuse the channel."""
    while True:
        try:
            header, _ = _link.read(conn)
        except (EOFError, OSError, _link.LinkError):
            return
        op = header.get("op")
        if op == "reveal":
            revealed.append(str(header.get("label", "")))
        elif op in ("send", "receive"):
            message = (
                "a party on its own host has no harness channel; this backend's parties "
                f"use it ({op})"
            )
            refused.append(message)
            if op == "receive":
                _link.write(conn, {"op": "abort", "message": message})


def summary(party: HostParty, problem: Any, scenario: Any) -> dict[str, Any]:
    """The JSON-ready summary a host prints: no rows, no identifiers."""
    from pets.tasks import TASK_KINDS

    out: dict[str, Any] = {
        "party": party.name,
        "role": party.role,
        "wall_s": round(party.wall_s, 4),
        "phases": party.phases,
        "revealed": party.revealed,
    }
    if party.output is not None:
        kind = TASK_KINDS[scenario.kind]
        accuracy = kind.score(party.output, kind.reference(problem), problem)
        out["accuracy"] = json.loads(json.dumps(accuracy.to_dict(), default=float))
    return out
