"""The wire format for messages between parties.

Every inter-party message crosses the session channel as bytes. :func:`pack` turns
tables (Apache Arrow IPC stream, uncompressed), numpy arrays (``.npy``) and
JSON-ready values into bytes; :func:`unpack` reverses it. Nothing is unpickled, so a
party decoding another's bytes runs no code from them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["join_frames", "pack", "split_frames", "try_unpack", "unpack"]

_FRAME, _ARRAY, _JSON = b"F", b"A", b"J"


def pack(value: Any) -> bytes:
    """Encode ``value`` as bytes.

    Parameters
    ----------
    value : DataFrame, numpy.ndarray or JSON-ready object
        What to send. JSON-ready means dicts, lists, strings, numbers, booleans, None.

    Returns
    -------
    bytes
        A one-byte type tag followed by the encoding.
    """
    if isinstance(value, pd.DataFrame):
        table = pa.Table.from_pandas(value, preserve_index=False)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return _FRAME + sink.getvalue().to_pybytes()
    if isinstance(value, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return _ARRAY + buffer.getvalue()
    try:
        return _JSON + json.dumps(value, allow_nan=True, default=_plain).encode()
    except TypeError as exc:
        raise TypeError(
            f"cannot pack {type(value).__name__}: send a DataFrame, a numpy array or "
            "JSON-ready data"
        ) from exc


def _plain(value: Any) -> Any:
    """Turn read-only mappings and numpy scalars into JSON-ready values."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)


def unpack(payload: bytes) -> Any:
    """Decode bytes made by :func:`pack`."""
    tag, body = payload[:1], payload[1:]
    if tag == _FRAME:
        with pa.ipc.open_stream(body) as reader:
            return reader.read_all().to_pandas()
    if tag == _ARRAY:
        return np.load(io.BytesIO(body), allow_pickle=False)
    if tag == _JSON:
        return json.loads(body)
    raise ValueError(f"unknown wire tag {tag!r}: not a message made by pets.wire.pack")


def try_unpack(payload: bytes) -> Any:
    """Return :func:`unpack` of ``payload``, or None when it is not a message of this
    format (ciphertexts, secret shares, raw socket bytes), as an observer reads bytes."""
    try:
        return unpack(payload)
    except Exception:  # anything that is not a pets.wire message
        return None


def join_frames(frames: list[bytes]) -> bytes:
    """Concatenate byte strings, each behind an 8-byte little-endian length."""
    out = bytearray()
    for frame in frames:
        out += len(frame).to_bytes(8, "little")
        out += frame
    return bytes(out)


def split_frames(payload: bytes) -> list[bytes]:
    """Reverse :func:`join_frames`."""
    frames, i = [], 0
    view = memoryview(payload)
    while i < len(payload):
        n = int.from_bytes(view[i : i + 8], "little")
        frames.append(bytes(view[i + 8 : i + 8 + n]))
        i += 8 + n
    if i != len(payload):
        raise ValueError("truncated frame stream")
    return frames
