"""The one contract between the runner and a cell's worker: :class:`CellSpec`.

The runner builds a spec from a planned cell and its options, writes it as JSON in the
cell's scratch folder, and the worker reads it back into the same type, checked once:
what the worker runs is exactly what the runner planned, with no key read by hand on
either side.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pets.network import DEFAULT_PROFILES, NetworkProfile, NetworkProfiles
from pets.options import check_leakage

__all__ = ["CellSpec", "ForgedResult", "open_result", "seal_result"]


@dataclass(frozen=True)
class CellSpec:
    """What a cell's worker runs.

    Parameters
    ----------
    scenario : str
        The card's id.
    card : str
        The card's path (named in messages; the text below is what runs).
    card_text : str
        The card as read once by the runner, so an edit during a run changes no cell.
    card_hash : str
        SHA-256 of ``card_text`` (checked by the worker).
    backend, target : str
        The backend's name and its ``module:Class``.
    params : Mapping
        The backend's parameters.
    size, seed, repeat : int
        Patients, data seed and repeat number.
    key : str
        The cell's identity (see :func:`pets.records.cell_key`).
    leakage : str
        ``fast``, ``full`` or ``off`` (checked when the spec is made).
    network : NetworkProfiles
        Profiles the record's cost is modelled on.
    """

    scenario: str
    card: str
    backend: str
    target: str
    params: Mapping[str, Any]
    size: int
    seed: int
    repeat: int = 0
    card_text: str = ""
    card_hash: str = ""
    key: str = ""
    leakage: str = "fast"
    network: NetworkProfiles = field(default=DEFAULT_PROFILES)

    def __post_init__(self) -> None:
        check_leakage(self.leakage)
        for name in ("size", "seed", "repeat"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"cell spec field {name!r} must be an int, got {value!r}")
        if not isinstance(self.params, Mapping):
            raise TypeError(f"cell spec field 'params' must be a mapping, got {self.params!r}")

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready data."""
        return {
            "scenario": self.scenario,
            "card": self.card,
            "card_text": self.card_text,
            "card_hash": self.card_hash,
            "backend": self.backend,
            "target": self.target,
            "params": dict(self.params),
            "size": self.size,
            "seed": self.seed,
            "repeat": self.repeat,
            "key": self.key,
            "leakage": self.leakage,
            "network": {p.name: p.to_dict() for p in self.network},
        }

    def to_json(self) -> str:
        """The spec as a JSON document."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellSpec:
        """Read a spec written by :meth:`to_dict`.

        Raises
        ------
        TypeError, ValueError
            A field is missing, unknown or of the wrong type.
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"cell spec has unknown fields {unknown}")
        fields = dict(data)
        network = fields.pop("network", None)
        if network is not None:
            fields["network"] = NetworkProfiles(
                tuple(
                    NetworkProfile(
                        name,
                        latency_ms=float(v["latency_ms"]),
                        bandwidth_mbit_s=math.inf
                        if v["bandwidth_mbit_s"] is None
                        else float(v["bandwidth_mbit_s"]),
                    )
                    for name, v in network.items()
                )
            )
        return cls(**fields)

    @classmethod
    def from_json(cls, text: str) -> CellSpec:
        """Read a spec written by :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


class ForgedResult(ValueError):
    """A cell's result file that its worker did not write (or that was altered)."""


def seal_result(record: Mapping[str, Any], key: bytes) -> bytes:
    """The worker's result file: the record and its HMAC-SHA256 under the cell's key.

    The key reaches the worker only through its standard input (a cold start) or the
    cell server's request (a warm one), never a file, so a party process, which can
    write in the cell's scratch folder, cannot write a result the runner accepts.
    """
    body = json.dumps(dict(record), sort_keys=True)
    mac = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"record": body, "mac": mac}).encode()


def open_result(blob: bytes, key: bytes) -> dict[str, Any]:
    """The record of a result file written by :func:`seal_result` under ``key``.

    Raises
    ------
    ForgedResult
        The file is not a sealed result, or its code does not match the key.
    """
    try:
        sealed = json.loads(blob)
        body, mac = sealed["record"], sealed["mac"]
        expected = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ForgedResult("the cell's result file is not a sealed result") from None
    if not hmac.compare_digest(expected, str(mac)):
        raise ForgedResult("the cell's result file does not carry its worker's code")
    return dict(json.loads(body))
