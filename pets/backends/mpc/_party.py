"""One MPyC party as its own process: ``python _party.py CONFIG.json``.

It imports only numpy and MPyC (not the harness), so parties start fast.

The process starts an MPyC runtime (Shamir secret sharing, MPyC's own asyncio sockets
on loopback), then obeys commands, one JSON object per line on standard input, and
answers one line each on its original standard output. Every party runs the same
command with its own input file (SPMD). A command's input is a file only this party's
side wrote; an output is written only by the parties MPyC revealed it to.

A socket meter wraps MPyC's connection objects: bytes and messages sent and received
per peer, and the order of this party's sends and received messages (MPyC frames),
which each answer hands back so the harness can compute the causal depth of every
message across all parties (see ``_pool.causal_rounds``). With ``capture`` the raw
received bytes are kept in a file per peer for the harness's transcript checks.
``stop`` shuts MPyC down and writes the meter to the stats file.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main"]


class _SocketMeter:
    """Traffic of this party's MPyC connections, per peer."""

    def __init__(self, capture_dir: Path | None) -> None:
        self.sent: dict[int, int] = {}
        self.received: dict[int, int] = {}
        self.messages: dict[int, int] = {}
        self.events: list[tuple[str, int]] = []
        self._capture_dir = capture_dir
        self._files: dict[int, Any] = {}

    def on_send(self, peer: int, n_bytes: int) -> None:
        self.events.append(("s", peer))
        self.sent[peer] = self.sent.get(peer, 0) + n_bytes
        self.messages[peer] = self.messages.get(peer, 0) + 1

    def take_events(self) -> list[tuple[str, int]]:
        """Return and forget the sends and receives since the last call."""
        events, self.events = self.events, []
        return events

    def on_receive(self, peer: int | None, data: bytes, frames: int) -> None:
        key = -1 if peer is None else peer
        self.events.extend([("r", key)] * frames)
        self.received[key] = self.received.get(key, 0) + len(data)
        if self._capture_dir is not None:
            handle = self._files.get(key)
            if handle is None:
                handle = self._files[key] = open(self._capture_dir / f"from_{key}.bin", "ab")
            handle.write(data)

    def close(self) -> dict[str, Any]:
        for handle in self._files.values():
            handle.close()
        return {
            "sent": {str(k): v for k, v in self.sent.items()},
            "received": {str(k): v for k, v in self.received.items()},
            "messages": {str(k): v for k, v in self.messages.items()},
        }


def _install_meter(meter: _SocketMeter) -> None:
    from mpyc import asyncoro

    exchanger = asyncoro.MessageExchanger
    send, data_received, made = (
        exchanger.send,
        exchanger.data_received,
        exchanger.connection_made,
    )

    def metered_send(self: Any, pc: int, payload: bytes) -> None:
        meter.on_send(self.peer_pid, 12 + len(payload))
        send(self, pc, payload)

    def metered_received(self: Any, data: bytes) -> None:
        data = bytes(data)
        known = self.peer_pid
        pending = bytes(self.bytes) + data
        data_received(self, data)  # a server learns its client's id from the first bytes
        consumed = len(pending) - len(self.bytes)
        offset = 0
        if known is None and self.peer_pid is not None:  # the client's id and keys
            runtime = self.runtime
            keys = 0 if runtime.options.no_prss else runtime._prss_keys_from_peer(self.peer_pid)
            offset = 2 + keys
        frames = 0
        while offset + 12 <= consumed:
            _, size = struct.unpack_from("<qI", pending, offset)
            offset += 12 + size
            frames += 1
        meter.on_receive(self.peer_pid, data, frames)

    def metered_made(self: Any, transport: Any) -> None:
        # the client's first bytes (its id and pseudorandom-sharing keys) bypass send()
        write = transport.write
        writelines = transport.writelines
        peer = self.peer_pid

        class _Counting:
            def __getattr__(self, name: str) -> Any:
                return getattr(transport, name)

            def writelines(self, chunks: Any) -> None:
                chunks = list(chunks)
                if peer is not None:
                    meter.sent[peer] = meter.sent.get(peer, 0) + sum(map(len, chunks))
                writelines(chunks)

            def write(self, data: bytes) -> None:
                write(data)

        made(self, _Counting())
        self.transport = transport

    exchanger.send = metered_send
    exchanger.data_received = metered_received
    exchanger.connection_made = metered_made


class _Party:
    """The command loop of one party."""

    def __init__(self, config: dict[str, Any]) -> None:
        from mpyc.runtime import mpc

        self.mpc = mpc
        self.pid = config["pid"]
        self.m = config["m"]
        self.secint = mpc.SecInt(config["bit_length"])

    # -- secure operations -----------------------------------------------------------
    async def secure_sum(self, cmd: dict[str, Any]) -> np.ndarray | None:
        """Each sender inputs an integer vector; receivers learn the sum."""
        mpc, secint = self.mpc, self.secint
        length, senders = cmd["length"], cmd["senders"]
        mine = _load(cmd.get("input")) if self.pid in senders else np.zeros(length, dtype=object)
        mine = np.asarray(mine, dtype=object).reshape(length)
        if cmd.get("vectorised", True):
            shares = mpc.input(secint.array(mine), senders=senders)
            total = shares[0]
            for share in shares[1:]:
                total = total + share
            out = await mpc.output(total, receivers=cmd["receivers"])
        else:
            shares = mpc.input([secint(int(v)) for v in mine], senders=senders)
            total = [mpc.sum(list(column)) for column in zip(*shares, strict=True)]
            out = await mpc.output(total, receivers=cmd["receivers"])
        if self.pid not in cmd["receivers"]:
            return None
        return np.array([int(v) for v in out], dtype=object)

    async def link(self, cmd: dict[str, Any]) -> np.ndarray | None:
        """Match one party's identifiers against another's; only the receiver learns
        which of its own rows match, and sums of the other's values over the matches.

        For every pair (i, j) the parties compute r_ij * (x_i - y_j) with a fresh secret
        random r_ij and open it to the receiver alone: zero exactly where the
        identifiers are equal, a uniformly random field element elsewhere. The receiver
        then inputs its secret 0/1 match indicator over the other party's (shuffled)
        rows, and learns sum(indicator * values) and the count.
        """
        mpc, secint = self.mpc, self.secint
        owner, other, receiver = cmd["owner"], cmd["other"], cmd["receiver"]
        mine = len(_load(cmd["ids"])) if "ids" in cmd else None
        n_x = await mpc.transfer(mine if self.pid == owner else None, senders=owner)
        n_y = await mpc.transfer(mine if self.pid == other else None, senders=other)
        k = cmd["n_values"]
        x = _load(cmd["ids"]) if self.pid == owner else np.zeros(n_x, dtype=object)
        # the other party's values, with a column of ones in front to count the matches
        if self.pid == other:
            y = _load(cmd["ids"])
            values = np.ones((n_y, k + 1), dtype=object)
            if k:
                values[:, 1:] = _load(cmd["values"]).reshape(n_y, k)
        else:
            y, values = np.zeros(n_y, dtype=object), np.zeros((n_y, k + 1), dtype=object)
        sx = mpc.input(secint.array(np.asarray(x, dtype=object)), senders=owner)
        sy = mpc.input(secint.array(np.asarray(y, dtype=object)), senders=other)
        if n_x == 0 or n_y == 0:
            diff_open = np.zeros((n_x, n_y), dtype=object)
        else:
            diff = (sx.reshape(n_x, 1) - sy.reshape(1, n_y)).reshape(n_x * n_y)
            mask = mpc._np_randoms(secint, n_x * n_y)
            masked = await mpc.output(diff * mask, receivers=[receiver])
            diff_open = None if masked is None else np.asarray(masked, dtype=object)
        indicator = np.zeros(n_y, dtype=object)
        matched_rows = np.zeros(0, dtype=np.int64)
        if self.pid == receiver:
            zero = np.asarray([int(v) == 0 for v in diff_open.reshape(-1)]).reshape(n_x, n_y)
            matched_rows = np.flatnonzero(zero.any(axis=1))
            indicator = zero.any(axis=0).astype(np.int64).astype(object)
        sm = mpc.input(secint.array(indicator), senders=receiver)
        sv = mpc.input(secint.array(values), senders=other)
        sums = await mpc.output(
            mpc.np_matmul(sm.reshape(1, n_y), sv).reshape(k + 1), receivers=[receiver]
        )
        if self.pid != receiver:
            return None
        return np.concatenate([np.array([int(v) for v in sums], dtype=object), matched_rows])

    async def score(self, cmd: dict[str, Any]) -> np.ndarray | None:
        """The provider inputs a patient-by-feature matrix, the supplier the weights
        (intercept last); the provider alone learns the linear scores."""
        mpc, secint = self.mpc, self.secint
        provider, supplier, n, d = cmd["provider"], cmd["supplier"], cmd["n"], cmd["d"]
        x = _load(cmd["input"]) if self.pid == provider else np.zeros(n * d, dtype=object)
        w = _load(cmd["input"]) if self.pid == supplier else np.zeros(d, dtype=object)
        sx = mpc.input(secint.array(np.asarray(x, dtype=object).reshape(n, d)), senders=provider)
        sw = mpc.input(secint.array(np.asarray(w, dtype=object).reshape(d)), senders=supplier)
        out = await mpc.output(mpc.np_matmul(sx, sw), receivers=[provider])
        return None if out is None else np.array([int(v) for v in out], dtype=object)

    # -- loop ------------------------------------------------------------------------
    def serve(self, commands: Any, answer: Any, meter: _SocketMeter) -> None:
        mpc = self.mpc
        mpc.run(mpc.start())
        answer({"ready": True, "events": meter.take_events()})
        for line in commands:
            cmd = json.loads(line)
            if cmd["op"] == "stop":
                break
            result = mpc.run(getattr(self, cmd["op"])(cmd))
            if result is not None:
                np.save(cmd["output"], result, allow_pickle=True)
            answer({"done": cmd["op"], "output": result is not None, "events": meter.take_events()})
        mpc.run(mpc.shutdown())


def _load(path: str) -> np.ndarray:
    return np.load(path, allow_pickle=True)


def main(argv: list[str] | None = None) -> int:
    """Run one party until ``stop`` or end of input."""
    args = sys.argv[1:] if argv is None else argv
    config = json.loads(Path(args[0]).read_text())
    # MPyC reads its options from the command line when it is imported
    sys.argv = [sys.argv[0], *config["mpyc_args"]]
    reply = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr
    capture = Path(config["capture_dir"]) if config.get("capture_dir") else None
    meter = _SocketMeter(capture)
    import mpyc.asyncoro  # noqa: F401  (patched before the runtime connects)

    _install_meter(meter)
    party = _Party(config)

    def answer(message: dict[str, Any]) -> None:
        reply.write(json.dumps(message) + "\n")

    try:
        party.serve(sys.stdin, answer, meter)
    finally:
        Path(config["stats"]).write_text(json.dumps(meter.close()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
