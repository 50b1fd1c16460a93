"""Values as bytes between a party process and the harness.

Party processes and the harness exchange data, never pickled objects: the public task,
a party's private input, the output and anything a party reveals are encoded here into
a JSON header followed by :func:`pets.wire.pack` frames (Arrow IPC for tables, ``.npy``
for arrays, JSON otherwise). :func:`decode_value` checks every shape it rebuilds, so
bytes that a party process wrote cannot make the harness run code or hold an object of
a type it did not expect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pets.tasks import (
    AggregateOutput,
    InferenceOutput,
    LinkageOutput,
    LogisticModel,
    PartyRole,
    QueryOutput,
    ReleaseOutput,
    Task,
    freeze,
)
from pets.wire import join_frames, pack, split_frames, unpack

__all__ = ["CodecError", "decode_task", "decode_value", "encode_task", "encode_value", "thaw"]


class CodecError(ValueError):
    """Bytes that do not decode to a value of an expected shape."""


def thaw(value: Any) -> Any:
    """Return plain dicts and lists for read-only mappings and tuples (JSON-ready)."""
    if isinstance(value, Mapping):
        return {str(k): thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def encode_task(task: Task) -> bytes:
    """Encode the public :class:`~pets.tasks.Task` as JSON bytes."""
    return json.dumps(
        {
            "kind": task.kind,
            "scenario": task.scenario,
            "parties": [[p.name, p.role] for p in task.parties],
            "recipient": task.recipient,
            "params": thaw(task.params),
            "public": thaw(task.public),
        }
    ).encode()


def decode_task(payload: bytes) -> Task:
    """Rebuild a :class:`~pets.tasks.Task` made by :func:`encode_task` (read-only params)."""
    try:
        raw = json.loads(payload)
        return Task(
            kind=str(raw["kind"]),
            scenario=str(raw["scenario"]),
            parties=tuple(PartyRole(str(n), str(r)) for n, r in raw["parties"]),
            recipient=str(raw["recipient"]),
            params=freeze(raw["params"]),
            public=freeze(raw["public"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CodecError(f"not an encoded task: {exc}") from None


def _frame(table: pd.DataFrame) -> tuple[dict[str, Any], bytes]:
    """A table with its index kept as columns (named in the header)."""
    names = [n for n in table.index.names if n is not None]
    flat = table.reset_index() if names else table.reset_index(drop=True)
    return {"index": names}, pack(flat)


def _unframe(header: Mapping[str, Any], body: bytes) -> pd.DataFrame:
    table = unpack(body)
    if not isinstance(table, pd.DataFrame):
        raise CodecError(f"expected a table, got {type(table).__name__}")
    names = list(header.get("index") or [])
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise CodecError(f"table lacks its index columns {missing}")
    return table.set_index(names) if names else table


def _answer_out(answer: Any) -> Any:
    if answer is None:
        return None
    if isinstance(answer, np.ndarray):
        return {"histogram": answer.astype(np.float64).tolist()}
    return float(answer)


def _answer_in(answer: Any) -> Any:
    if answer is None:
        return None
    if isinstance(answer, Mapping):
        return np.asarray(answer["histogram"], dtype=np.float64)
    if isinstance(answer, int | float):
        return float(answer)
    raise CodecError(f"a query answer must be a number, a histogram or null, not {answer!r}")


def encode_value(value: Any) -> bytes:
    """Encode an output type, a table, an array or JSON-ready data.

    Raises
    ------
    TypeError
        If ``value`` is none of these.
    """
    header: dict[str, Any]
    parts: list[bytes] = []
    if isinstance(value, AggregateOutput | ReleaseOutput):
        header, body = _frame(value.table)
        header["type"] = type(value).__name__
        parts.append(body)
    elif isinstance(value, pd.DataFrame):
        header, body = _frame(value)
        header["type"] = "table"
        parts.append(body)
    elif isinstance(value, LogisticModel):
        header = {
            "type": "LogisticModel",
            "intercept": float(value.intercept),
            "features": list(value.features),
        }
        parts.append(pack(np.asarray(value.coef, dtype=np.float64)))
    elif isinstance(value, InferenceOutput):
        header = {"type": "InferenceOutput"}
        parts.append(pack(np.asarray(value.scores, dtype=np.float64)))
    elif isinstance(value, LinkageOutput):
        header = {
            "type": "LinkageOutput",
            "matches": None if value.matches is None else sorted(int(m) for m in value.matches),
            "cardinality": int(value.cardinality),
            "statistics": {str(k): float(v) for k, v in value.statistics.items()},
        }
    elif isinstance(value, QueryOutput):
        header = {
            "type": "QueryOutput",
            "answers": [_answer_out(a) for a in value.answers],
            "refused": {str(int(k)): str(v) for k, v in value.refused.items()},
        }
    else:
        header = {"type": "plain"}
        parts.append(pack(value))
    return join_frames([json.dumps(header).encode(), *parts])


def decode_value(payload: bytes, expected: type | None = None) -> Any:
    """Decode bytes made by :func:`encode_value`.

    Parameters
    ----------
    payload : bytes
        The encoded value.
    expected : type, optional
        The type the value must have (an output type); anything else is refused.

    Raises
    ------
    CodecError
        If the bytes are not an encoded value, or not of the ``expected`` type.
    """
    try:
        value = _decode(payload)
    except CodecError:
        raise
    except Exception as exc:  # malformed bytes from a party process
        raise CodecError(f"could not decode a value: {type(exc).__name__}: {exc}") from None
    if expected is not None and not isinstance(value, expected):
        raise CodecError(f"expected {expected.__name__}, got {type(value).__name__}")
    return value


def _decode(payload: bytes) -> Any:
    frames = split_frames(payload)
    if not frames:
        raise CodecError("empty value")
    header = json.loads(frames[0])
    if not isinstance(header, dict):
        raise CodecError("value header is not an object")
    kind, parts = header.get("type"), frames[1:]
    if kind in ("AggregateOutput", "ReleaseOutput", "table"):
        table = _unframe(header, parts[0])
        if kind == "table":
            return table
        return AggregateOutput(table) if kind == "AggregateOutput" else ReleaseOutput(table)
    if kind == "LogisticModel":
        coef = _array(parts[0])
        return LogisticModel(
            coef=coef,
            intercept=float(header["intercept"]),
            features=tuple(str(f) for f in header["features"]),
        )
    if kind == "InferenceOutput":
        return InferenceOutput(_array(parts[0]))
    if kind == "LinkageOutput":
        matches = header["matches"]
        return LinkageOutput(
            matches=None if matches is None else frozenset(int(m) for m in matches),
            cardinality=int(header["cardinality"]),
            statistics={str(k): float(v) for k, v in header["statistics"].items()},
        )
    if kind == "QueryOutput":
        return QueryOutput(
            answers=tuple(_answer_in(a) for a in header["answers"]),
            refused={int(k): str(v) for k, v in header["refused"].items()},
        )
    if kind == "plain":
        return unpack(parts[0])
    raise CodecError(f"unknown value type {kind!r}")


def _array(body: bytes) -> np.ndarray:
    array = unpack(body)
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiub":
        raise CodecError("expected a numeric array")
    return array.astype(np.float64)
