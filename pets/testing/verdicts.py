"""Verdicts of the conformance kit, kept so that benchmark records can say ``verified``.

``pets check NAME`` writes one verdict file per checked configuration under
``$PETS_CACHE/verdicts/`` (default ``~/.cache/pets-sandbox/verdicts/``). A verdict is
keyed by the backend's import target, its full parameters (``get_params``), a hash of
its source (:func:`source_hash`), :data:`pets.api.API_VERSION` and :data:`KIT_VERSION`:
changing the backend's code, its parameters, the API or the checks makes the verdict
stale. The cell worker marks a record ``verified: true`` only when a passing verdict for
its exact key exists. Computing the key imports nothing: the harness never runs backend
code in its own process.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

from pets.api import API_VERSION
from pets.cache import CACHE_ENV, cache_dir

__all__ = [
    "CACHE_ENV",
    "KIT_VERSION",
    "cache_dir",
    "has_passing_verdict",
    "record_verdict",
    "source_hash",
    "verdict_key",
]

#: Version of the checks; a verdict from another version is stale.
KIT_VERSION = 1


def _module_file(module: str) -> Path | None:
    """Find a module's source file without importing it or its packages."""
    path: list[str] | None = None
    spec = None
    parts = module.split(".")
    for i in range(len(parts)):
        spec = PathFinder.find_spec(".".join(parts[: i + 1]), path)
        if spec is None:
            return None
        path = list(spec.submodule_search_locations or [])
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        return None
    return Path(spec.origin)


def source_hash(target: str) -> str:
    """SHA-256 of the source of the module behind ``target`` (``"module:Class"``) and
    of every ``.py`` file beside it (the helpers a backend module imports from its own
    package); ``"unknown"`` when the module's file cannot be found."""
    found = _module_file(target.partition(":")[0])
    if found is None:
        return "unknown"
    digest = hashlib.sha256()
    for path in sorted({found, *found.parent.glob("*.py")}):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _canonical(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True, default=repr)


def verdict_key(target: str, params: Mapping[str, Any]) -> str:
    """The key of a configuration's verdict (hex SHA-256)."""
    blob = json.dumps(
        {
            "target": target,
            "params": _canonical(params),
            "source": source_hash(target),
            "api_version": API_VERSION,
            "kit_version": KIT_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _path(key: str) -> Path:
    return cache_dir() / "verdicts" / f"{key}.json"


def record_verdict(
    name: str, target: str, params: Mapping[str, Any], results: Sequence[Any]
) -> Path:
    """Write the verdict of one ``pets check`` run and return its file.

    ``results`` are :class:`~pets.testing.CheckResult`; the verdict passes when none
    failed.
    """
    path = _path(verdict_key(target, params))
    path.parent.mkdir(parents=True, exist_ok=True)
    verdict = {
        "backend": name,
        "target": target,
        "params": json.loads(_canonical(params)),
        "source_hash": source_hash(target),
        "api_version": API_VERSION,
        "kit_version": KIT_VERSION,
        "passed": all(r.status != "failed" for r in results),
        "checks": {r.check: r.status for r in results},
        "checked_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    scratch = path.with_suffix(f".{os.getpid()}.tmp")
    scratch.write_text(json.dumps(verdict, indent=1))
    scratch.replace(path)
    return path


def has_passing_verdict(target: str, params: Mapping[str, Any]) -> bool:
    """Whether ``pets check`` passed this exact configuration (target, parameters,
    source, API and kit versions)."""
    path = _path(verdict_key(target, params))
    try:
        return bool(json.loads(path.read_text()).get("passed"))
    except (OSError, ValueError, AttributeError):
        return False
