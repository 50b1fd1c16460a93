"""The link between one party process and the harness: framed messages on a pipe.

Each message is a JSON header followed by byte frames (:func:`pets.wire.join_frames`),
sent with ``Connection.send_bytes``; nothing is pickled in either direction.

Party to harness: ``hello``, ``send`` (to, tag; payload), ``receive`` (frm, tag),
``reveal`` (label; encoded value), ``done`` (phases; encoded output or nothing),
``fail`` (status, message). Harness to party: ``start`` (name, role, target, params,
network; task, data), ``deliver`` (payload), ``abort`` (message), ``bye``.
"""

from __future__ import annotations

import json
from typing import Any

from pets.wire import join_frames, split_frames

__all__ = ["LinkError", "read", "write"]


class LinkError(ValueError):
    """A message on a party link that does not follow the protocol."""


def write(conn: Any, header: dict[str, Any], *frames: bytes) -> None:
    """Send one message: ``header`` as JSON, then ``frames``."""
    conn.send_bytes(join_frames([json.dumps(header).encode(), *frames]))


def read(conn: Any) -> tuple[dict[str, Any], list[bytes]]:
    """Receive one message; raise :class:`LinkError` if it is malformed."""
    raw = conn.recv_bytes()
    try:
        frames = split_frames(raw)
        header = json.loads(frames[0])
    except (ValueError, IndexError) as exc:
        raise LinkError(f"malformed message: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("op"), str):
        raise LinkError("message header has no 'op'")
    return header, frames[1:]
