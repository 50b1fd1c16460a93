"""Records (one per cell) and the result store of a run folder.

A run folder holds ``records.jsonl`` (one JSON object per line, appended atomically as
cells finish), ``records.parquet`` (the same records flattened, rewritten at the end)
and ``manifest.json`` (versions, platform, seeds, card hashes). Records never hold
patient rows, identifiers or keys.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "SCHEMA_VERSION",
    "STATUSES",
    "Record",
    "ResultStore",
    "SchemaError",
    "cell_key",
    "records_frame",
    "write_atomic",
]

#: Version of the record schema written by this code.
SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "party_failed", "timeout", "unsupported")


class SchemaError(ValueError):
    """A results file was written with another schema version."""


def cell_key(
    scenario: str,
    card_hash: str,
    backend: str,
    params: Mapping[str, Any],
    size: int,
    seed: int,
    repeat: int,
) -> str:
    """Return the identity of a cell: a hash of everything that defines it."""
    blob = json.dumps(
        [scenario, card_hash, backend, dict(sorted(params.items())), size, seed, repeat],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Record:
    """The outcome of one cell: (scenario, backend, params, size, seed, repeat).

    Field names are part of schema version 1 and are read by reports and external tools.
    """

    scenario: str
    backend: str
    params: dict[str, Any]
    size: int
    seed: int
    repeat: int
    status: str
    error: str | None = None
    kind: str = ""
    pet_class: str = ""
    card_hash: str = ""
    key: str = ""
    accuracy: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    leakage: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    isolation: str = ""
    api_version: int | None = None
    verified: bool = False
    deterministic: bool | None = None
    unseeded_randomness: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")
        if not self.key:
            self.key = cell_key(
                self.scenario,
                self.card_hash,
                self.backend,
                self.params,
                self.size,
                self.seed,
                self.repeat,
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the record as JSON-ready data (NaN and infinities become None)."""
        return _finite(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """Rebuild a record, refusing other schema versions."""
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SchemaError(
                f"record has schema_version {version!r}; this version of pets reads "
                f"{SCHEMA_VERSION}. Re-run the cells, or read the file with the pets version "
                "that wrote it (see manifest.json)."
            )
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _finite(value.item())
    return value


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultStore:
    """A run folder.

    Parameters
    ----------
    root : path-like
        The folder (created if missing).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def jsonl_path(self) -> Path:
        """``records.jsonl``."""
        return self.root / "records.jsonl"

    @property
    def parquet_path(self) -> Path:
        """``records.parquet``."""
        return self.root / "records.parquet"

    @property
    def manifest_path(self) -> Path:
        """``manifest.json``."""
        return self.root / "manifest.json"

    def append(self, record: Record) -> None:
        """Append one record as a single line with one ``write`` call, then fsync, so an
        interrupted run never leaves half a line behind a finished record."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record.to_dict(), sort_keys=True) + "\n").encode()
        fd = os.open(self.jsonl_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def repair(self) -> bool:
        """Cut a torn last line (left by a crash mid-write) so appends start clean.

        Returns
        -------
        bool
            True if anything was cut.
        """
        if not self.jsonl_path.exists():
            return False
        data = self.jsonl_path.read_bytes()
        if not data or data.endswith(b"\n"):
            return False
        keep = data.rfind(b"\n") + 1
        with open(self.jsonl_path, "r+b") as fh:
            fh.truncate(keep)
        return True

    def read(self) -> list[Record]:
        """Return every complete record; a torn last line (from a crash) is skipped."""
        if not self.jsonl_path.exists():
            return []
        records = []
        lines = self.jsonl_path.read_text().splitlines()
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                if i == len(lines) - 1:
                    continue
                raise
            records.append(Record.from_dict(data))
        return records

    def done_keys(self) -> set[str]:
        """Return the keys of cells that already have a record."""
        return {r.key for r in self.read()}

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Write ``manifest.json`` atomically."""
        body = json.dumps(_finite(dict(manifest)), indent=2, sort_keys=True)
        write_atomic(self.manifest_path, body.encode())

    def read_manifest(self) -> dict[str, Any]:
        """Return ``manifest.json`` (an empty dict if missing)."""
        if not self.manifest_path.exists():
            return {}
        return json.loads(self.manifest_path.read_text())

    def write_parquet(self) -> Path:
        """Rewrite ``records.parquet`` from ``records.jsonl`` (atomically)."""
        frame = records_frame(self.read())
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".records.parquet.")
        os.close(fd)
        try:
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, self.parquet_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.parquet_path

    def to_frame(self) -> pd.DataFrame:
        """Return the records as a flat DataFrame (see :func:`records_frame`)."""
        return records_frame(self.read())


def records_frame(records: Iterable[Record]) -> pd.DataFrame:
    """Flatten records into one row each.

    Scalar fields stay columns; ``accuracy``, ``cost`` and the leakage ``headline`` are
    spread into ``accuracy.<metric>``, ``cost.<field>`` and ``leakage.<field>`` columns;
    nested lists and dicts (phases, per-party bytes, attacks, claim, environment) are
    kept as JSON strings so the table stays rectangular.
    """
    rows = []
    for record in records:
        data = record.to_dict()
        row: dict[str, Any] = {
            k: data[k]
            for k in (
                "scenario",
                "backend",
                "size",
                "seed",
                "repeat",
                "status",
                "error",
                "kind",
                "pet_class",
                "card_hash",
                "key",
                "started_at",
                "isolation",
                "api_version",
                "verified",
                "deterministic",
                "schema_version",
            )
        }
        row["unseeded_randomness"] = json.dumps(data["unseeded_randomness"])
        row["params"] = json.dumps(data["params"], sort_keys=True)
        for k, v in data["accuracy"].items():
            row[f"accuracy.{k}"] = v
        for k, v in data["cost"].items():
            row[f"cost.{k}"] = json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v
        leakage = data["leakage"]
        for k, v in (leakage.get("headline") or {}).items():
            row[f"leakage.{k}"] = v
        row["leakage.flags"] = json.dumps(leakage.get("flags", []))
        row["leakage.claim"] = json.dumps(leakage.get("claim", {}), sort_keys=True)
        row["leakage.attacks"] = json.dumps(leakage.get("attacks", []), sort_keys=True)
        row["leakage.mode"] = leakage.get("mode")
        row["leakage.cost_s"] = leakage.get("cost_s")
        row["environment"] = json.dumps(data["environment"], sort_keys=True)
        rows.append(row)
    return pd.DataFrame(rows)
