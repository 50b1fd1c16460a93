"""Records (one per cell) and the result store of a run folder.

A run folder holds ``records.jsonl`` (one JSON object per line, appended atomically as
cells finish), ``records.parquet`` (the same records flattened, rewritten at the end)
and ``manifest.json`` (versions, platform, seeds, card hashes). Records never hold
patient rows, identifiers or keys.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from pets.masking import redact

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STATUSES",
    "Record",
    "ResultStore",
    "SchemaError",
    "StoreError",
    "StoreWarning",
    "cell_key",
    "records_frame",
    "write_atomic",
]

#: Version of the record schema written by this code.
SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "party_failed", "timeout", "unsupported")
#: Upgrades of stored records, as asv keeps them: ``MIGRATIONS[v]`` turns a record of
#: schema ``v`` into one of ``v + 1``. Schema 1 is the first, so none is needed yet; a
#: change to the record format adds one here and raises :data:`SCHEMA_VERSION`.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}
_T = TypeVar("_T")


class StoreError(RuntimeError):
    """A run folder cannot be used as asked; the message is one line saying why and
    what to do."""


class StoreWarning(UserWarning):
    """Something in a run folder was skipped or set aside while reading it."""


class SchemaError(StoreError, ValueError):
    """A record was written with a schema version this version of pets cannot read."""


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
        """Rebuild a record; an older schema is migrated (:data:`MIGRATIONS`), a newer
        one or one without a migration is refused with the way out.

        Raises
        ------
        SchemaError
            The record's schema cannot be read by this version of pets.
        """
        version = data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise SchemaError(f"record has no valid schema_version ({version!r})")
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"record has schema_version {version}, newer than the {SCHEMA_VERSION} this "
                "version of pets reads; upgrade pets (pip install -U pets-sandbox) to read "
                "this run folder"
            )
        migrated = dict(data)
        while migrated["schema_version"] < SCHEMA_VERSION:
            step = MIGRATIONS.get(migrated["schema_version"])
            if step is None:
                raise SchemaError(
                    f"record has schema_version {migrated['schema_version']} and no "
                    f"migration to {SCHEMA_VERSION} exists; re-run the cells, or read the "
                    "folder with the pets version that wrote it (see manifest.json)"
                )
            migrated = {**step(migrated), "schema_version": migrated["schema_version"] + 1}
        return cls(**{k: v for k, v in migrated.items() if k in cls.__dataclass_fields__})


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

    Notes
    -----
    One writer at a time: :meth:`lock` holds ``.lock`` in the folder (``flock``) for a
    run, and a second writer is refused with one line. Lines of ``records.jsonl`` that
    cannot be read (bad JSON, invalid UTF-8, an unknown status, a malformed record) are
    moved to ``records.quarantine`` with a warning; the rest are read. Records of a
    newer schema are refused with the upgrade path; older ones are migrated in memory
    (see :data:`MIGRATIONS`).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._lock_fd: int | None = None

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

    @property
    def quarantine_path(self) -> Path:
        """``records.quarantine``: unreadable lines moved out of ``records.jsonl``."""
        return self.root / "records.quarantine"

    @property
    def lock_path(self) -> Path:
        """``.lock``, held by the one process writing the folder."""
        return self.root / ".lock"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's writer lock; refuse if another process holds it.

        Raises
        ------
        StoreError
            Another process is writing this folder.
        """
        if self._lock_fd is not None:  # already ours
            yield
            return

        def open_lock() -> int:
            self.root.mkdir(parents=True, exist_ok=True)
            return os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)

        fd = _store_call(self, open_lock)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreError(
                f"{self.root} is being written by another pets run (pid {holder}); wait "
                "for it to end or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd
        try:
            yield
        finally:
            self._lock_fd = None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def append(self, record: Record) -> None:
        """Append one record as a single line with one ``write`` call, then fsync, so an
        interrupted run never leaves half a line behind a finished record. A write that
        fails (a full disk) is cut back, so the records before it stay intact.

        Raises
        ------
        StoreError
            The line could not be written (the message says why, in one line).
        """
        record.error = None if record.error is None else redact(record.error)
        line = (json.dumps(record.to_dict(), sort_keys=True) + "\n").encode()

        def write() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.jsonl_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                try:
                    if os.write(fd, line) != len(line):
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    os.fsync(fd)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, size)
                    raise
            finally:
                os.close(fd)

        _store_call(self, write)

    def repair(self) -> bool:
        """Cut a torn last line (left by a crash mid-write) so appends start clean. Only
        a holder of :meth:`lock` repairs (no append can be under way then).

        Returns
        -------
        bool
            True if anything was cut.
        """
        if not self.jsonl_path.exists():
            return False
        with self.lock(), open(self.jsonl_path, "r+b") as fh:
            data = fh.read()
            if not data or data.endswith(b"\n"):
                return False
            fh.truncate(data.rfind(b"\n") + 1)
        return True

    def read(self) -> list[Record]:
        """Return every readable record.

        A torn last line (a crash mid-write) is skipped. Other unreadable lines are
        moved to :attr:`quarantine_path` when no other process is writing the folder
        (skipped otherwise), with a :class:`StoreWarning` saying how many and where.

        Raises
        ------
        SchemaError
            A record of a newer schema than this version of pets reads.
        """
        if not self.jsonl_path.exists():
            return []
        data = _store_call(self, self.jsonl_path.read_bytes)
        lines = data.split(b"\n")
        records, bad = [], []
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                records.append(_parse_line(raw))
            except _Unreadable as exc:
                if i == len(lines) - 1:  # no newline yet: torn, or being written
                    continue
                bad.append((i + 1, raw, str(exc)))
            except SchemaError as exc:
                raise SchemaError(f"{self.jsonl_path}, line {i + 1}: {exc}") from None
        if bad:
            self._quarantine(bad)
        return records

    def _quarantine(self, bad: list[tuple[int, bytes, str]]) -> None:
        where = ", ".join(f"line {n} ({why})" for n, _, why in bad[:3])
        where += f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        try:
            with self.lock():
                with open(self.jsonl_path, "rb") as fh:
                    lines = fh.read().split(b"\n")
                drop = {n for n, _, _ in bad}
                side = b"".join(lines[n - 1] + b"\n" for n in sorted(drop) if n <= len(lines))
                with open(self.quarantine_path, "ab") as fh:
                    fh.write(side)
                    fh.flush()
                    os.fsync(fh.fileno())
                kept = b"\n".join(x for n, x in enumerate(lines, 1) if n not in drop)
                write_atomic(self.jsonl_path, kept)
            moved = f"moved to {self.quarantine_path}"
        except (StoreError, OSError):
            moved = "skipped (another process is writing the folder)"
        warnings.warn(
            f"{self.jsonl_path}: {len(bad)} unreadable record line(s) {moved}: {where}",
            StoreWarning,
            stacklevel=3,
        )

    def done_keys(self) -> set[str]:
        """Return the keys of cells that already have a record."""
        return {r.key for r in self.read()}

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Write ``manifest.json`` atomically."""
        body = json.dumps(_finite(dict(manifest)), indent=2, sort_keys=True)
        _store_call(self, lambda: write_atomic(self.manifest_path, body.encode()))

    def read_manifest(self) -> dict[str, Any]:
        """Return ``manifest.json`` (an empty dict if missing).

        Raises
        ------
        StoreError
            The file is not a JSON object (one line naming it).
        """
        if not self.manifest_path.exists():
            return {}
        try:
            manifest = json.loads(self.manifest_path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else type(exc).__name__
            raise StoreError(
                f"{self.manifest_path} is not a pets manifest ({reason}); move it "
                "away (pets writes a new one) or choose another --out"
            ) from None
        if not isinstance(manifest, dict):
            raise StoreError(
                f"{self.manifest_path} is not a pets manifest (a JSON "
                f"{type(manifest).__name__}, not an object); move it away or choose "
                "another --out"
            )
        return manifest

    def write_parquet(self) -> Path:
        """Rewrite ``records.parquet`` from ``records.jsonl`` (atomically)."""
        frame = records_frame(self.read())

        def write() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".records.parquet.")
            os.close(fd)
            try:
                frame.to_parquet(tmp, index=False)
                os.replace(tmp, self.parquet_path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

        _store_call(self, write)
        return self.parquet_path

    def to_frame(self) -> pd.DataFrame:
        """Return the records as a flat DataFrame (see :func:`records_frame`)."""
        return records_frame(self.read())


class _Unreadable(ValueError):
    """A line of records.jsonl that is not a record."""


def _parse_line(raw: bytes) -> Record:
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _Unreadable("not UTF-8") from None
    except json.JSONDecodeError:
        raise _Unreadable("not JSON") from None
    if not isinstance(data, dict):
        raise _Unreadable("not a JSON object")
    if "status" in data and data["status"] not in STATUSES:
        raise _Unreadable(f"unknown status {str(data['status'])[:20]!r}")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _Unreadable("no schema_version")
    try:
        return Record.from_dict(data)
    except SchemaError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise _Unreadable(f"not a record: {type(exc).__name__}") from None


def _store_call(store: ResultStore, write: Callable[[], _T]) -> _T:
    """Run a file operation of ``store``; an OSError becomes one line naming the
    folder and what to do."""
    try:
        return write()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StoreError(
                f"{store.root}: no space left on the device; the records written before "
                "are intact. Free space, then pets run --resume continues"
            ) from None
        raise StoreError(
            f"{store.root}: cannot read or write the run folder ({exc.strerror or exc})"
        ) from None


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
            row[f"accuracy.{k}"] = json.dumps(v, sort_keys=True) if isinstance(v, dict) else v
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
