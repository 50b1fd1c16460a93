"""Network model: what a measured run would cost between real sites.

Every cell runs on one machine, where parties talk over loopback. From what the harness
measured (wall time, rounds, bytes per party) each record also gets a modelled time on
named network profiles::

    modelled_s = wall_s + rounds * latency_s + 8 * busiest_link_bytes / bandwidth_bit_s

where ``rounds`` is the run's longest chain of dependent messages, and
``busiest_link_bytes`` is the largest number of bytes one party sent or received
(each site has its own full-duplex link, so the busiest site's link is the bottleneck).
The measured ``wall_s`` already contains the compute and the loopback transfers, so
the ``loopback`` profile (no added latency, unbounded bandwidth) is the run as measured.
The model ignores TCP slow start, congestion and overlap of transfers with compute, so
it is an estimate, not a promise; its inputs are in the record for anyone who prefers
another formula.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_PROFILES",
    "NetworkProfile",
    "NetworkProfiles",
    "busiest_link_bytes",
    "modelled_costs",
    "parse_profile",
]

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class NetworkProfile:
    """A named network between the parties' sites.

    Parameters
    ----------
    name : str
        Lower-case name (``lan``, ``wan``, ``hscn``).
    latency_ms : float
        One-way latency added per round, in milliseconds.
    bandwidth_mbit_s : float
        Link bandwidth of each site in megabits per second; ``inf`` for unbounded.
    """

    name: str
    latency_ms: float
    bandwidth_mbit_s: float

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"network profile name {self.name!r}: use lower-case letters, digits, '_' or '-'"
            )
        if not (math.isfinite(self.latency_ms) and self.latency_ms >= 0):
            raise ValueError(
                f"network profile {self.name!r}: latency_ms must be a number >= 0, "
                f"got {self.latency_ms!r}"
            )
        if not self.bandwidth_mbit_s > 0:
            raise ValueError(
                f"network profile {self.name!r}: bandwidth_mbit_s must be > 0, "
                f"got {self.bandwidth_mbit_s!r}"
            )

    def modelled_s(self, wall_s: float, rounds: int, busiest_bytes: int) -> float:
        """Return the modelled time of a run measured at ``wall_s`` on loopback."""
        transfer = 8.0 * busiest_bytes / (self.bandwidth_mbit_s * 1e6)
        return wall_s + rounds * self.latency_ms / 1000.0 + transfer

    def to_dict(self) -> dict[str, Any]:
        """Return the profile as JSON-ready data (unbounded bandwidth as None)."""
        bandwidth = None if math.isinf(self.bandwidth_mbit_s) else self.bandwidth_mbit_s
        return {"latency_ms": self.latency_ms, "bandwidth_mbit_s": bandwidth}


class NetworkProfiles:
    """An ordered set of profiles; later additions replace earlier ones of that name."""

    def __init__(self, profiles: tuple[NetworkProfile, ...] = ()) -> None:
        self._profiles: dict[str, NetworkProfile] = {}
        for profile in profiles:
            self.add(profile)

    def add(self, profile: NetworkProfile) -> None:
        """Add ``profile``, replacing one of the same name."""
        self._profiles[profile.name] = profile

    def merged(self, more: Mapping[str, NetworkProfile]) -> NetworkProfiles:
        """Return a copy with ``more`` added."""
        out = NetworkProfiles(tuple(self._profiles.values()))
        for profile in more.values():
            out.add(profile)
        return out

    def __iter__(self) -> Iterator[NetworkProfile]:
        return iter(self._profiles.values())

    def __len__(self) -> int:
        return len(self._profiles)

    def names(self) -> tuple[str, ...]:
        """Profile names in order."""
        return tuple(self._profiles)


#: The profiles every record is modelled on.
DEFAULT_PROFILES = NetworkProfiles(
    (
        NetworkProfile("loopback", latency_ms=0.0, bandwidth_mbit_s=math.inf),
        NetworkProfile("lan", latency_ms=1.0, bandwidth_mbit_s=1000.0),
        NetworkProfile("wan", latency_ms=50.0, bandwidth_mbit_s=100.0),
    )
)


def parse_profile(text: str) -> NetworkProfile:
    """Parse ``NAME=LATENCY_MS,BANDWIDTH_MBIT_S`` (the CLI's ``--network`` form).

    Examples
    --------
    >>> parse_profile("hscn=8,500")
    NetworkProfile(name='hscn', latency_ms=8.0, bandwidth_mbit_s=500.0)
    """
    name, sep, rest = text.partition("=")
    parts = rest.split(",")
    if not sep or len(parts) != 2:
        raise ValueError(
            f"network profile {text!r}: expected NAME=LATENCY_MS,BANDWIDTH_MBIT_S, e.g. hscn=8,500"
        )
    try:
        latency, bandwidth = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(
            f"network profile {text!r}: latency and bandwidth must be numbers"
        ) from None
    return NetworkProfile(name.strip(), latency_ms=latency, bandwidth_mbit_s=bandwidth)


def busiest_link_bytes(bytes_by_party: Mapping[str, Mapping[str, int]]) -> int:
    """Return the most bytes one party sent or received."""
    return max(
        (max(v.get("sent", 0), v.get("received", 0)) for v in bytes_by_party.values()),
        default=0,
    )


def modelled_costs(
    wall_s: float,
    rounds: int,
    bytes_by_party: Mapping[str, Mapping[str, int]],
    profiles: NetworkProfiles = DEFAULT_PROFILES,
) -> dict[str, dict[str, Any]]:
    """Return, per profile, its parameters and the modelled time of the run."""
    busiest = busiest_link_bytes(bytes_by_party)
    return {
        p.name: {**p.to_dict(), "modelled_s": p.modelled_s(wall_s, rounds, busiest)}
        for p in profiles
    }
