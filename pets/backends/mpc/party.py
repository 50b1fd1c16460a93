"""MPyC inside one party process: its options, start, stop and the secure protocols.

Every party of a run is its own operating-system process (the harness forks it) and runs
the same program (SPMD). :class:`MpcParty` starts this party's MPyC runtime on the
addresses the harness gives it (``context.network``): it listens on its own loopback port
and reaches every other party through a harness relay, which counts the bytes, keeps
what each party received and measures rounds. Nothing is metered here.

MPyC reads its options from ``sys.argv`` when :mod:`mpyc.runtime` is first imported, so
it is imported here only once the options are set, in the party process: the fork server
the parties come from must never import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

import numpy as np

from pets.api import PartyFailure
from pets.runtime.context import PartyNetwork

__all__ = ["MpcParty"]


class MpcParty:
    """This party's MPyC runtime and the secure protocols it runs.

    Parameters
    ----------
    network : PartyNetwork
        The harness's addresses: ``order`` (MPyC party id = position), ``listen`` (this
        party's own port) and ``peers`` (the relay to connect to for each other party).
    name : str
        This party.
    threshold : int
        Shamir threshold t (needs more than 2t parties).
    bit_length : int
        Bit length of the secure integers.
    start_timeout_s : float
        Deadline for every party to connect.
    step_timeout_s : float
        Deadline for each secure step (a peer that stops answering without dying).
    """

    def __init__(
        self,
        network: PartyNetwork,
        name: str,
        *,
        threshold: int,
        bit_length: int,
        start_timeout_s: float,
        step_timeout_s: float,
    ) -> None:
        self.names = tuple(network.order)
        self.name = name
        self.pid = self.names.index(name)
        self.m = len(self.names)
        self.step_timeout_s = step_timeout_s
        self.mpc = _import_runtime(_mpyc_options(network, name, threshold))
        self.secint = self.mpc.SecInt(bit_length)
        self._run(self.mpc.start(), "connecting to every party", start_timeout_s)

    def pid_of(self, name: str) -> int:
        """MPyC party id of party ``name``."""
        return self.names.index(name)

    def _run(self, step: Coroutine[Any, Any, Any], what: str, timeout_s: float) -> Any:
        try:
            return self.mpc.run(asyncio.wait_for(step, timeout_s))
        except TimeoutError:
            raise PartyFailure(
                f"MPC party {self.pid} ({self.name!r}) did not finish {what} within {timeout_s:g} s"
            ) from None

    def run(self, step: Coroutine[Any, Any, Any], what: str) -> Any:
        """Run one secure step (a coroutine of this class) to its end."""
        return self._run(step, what, self.step_timeout_s)

    def stop(self) -> None:
        """Shut MPyC down with the other parties (a last synchronising exchange)."""
        self.run(self.mpc.shutdown(), "shutdown")

    def abort(self) -> None:
        """Close this party's connections without waiting for anyone."""
        for party in self.mpc.parties:
            protocol = party.protocol
            if party.pid != self.pid and hasattr(protocol, "close_connection"):
                with contextlib.suppress(Exception):  # already closed, or never opened
                    protocol.close_connection()

    # -- secure protocols ----------------------------------------------------------------
    async def exchange(self, value: int | None, sender: int) -> int:
        """Every party learns the public integer ``value`` of party ``sender``."""
        return int(await self.mpc.transfer(value if self.pid == sender else None, senders=sender))

    async def secure_sum(
        self,
        mine: np.ndarray | None,
        length: int,
        senders: Sequence[int],
        receivers: Sequence[int],
        *,
        vectorised: bool = True,
    ) -> np.ndarray | None:
        """Each sender inputs an integer vector of ``length``; receivers learn the sum."""
        mpc, secint = self.mpc, self.secint
        senders = list(senders)
        values = mine if self.pid in senders and mine is not None else np.zeros(length, object)
        values = np.asarray(values, dtype=object).reshape(length)
        if vectorised:
            shares = mpc.input(secint.array(values), senders=senders)
            total = shares[0]
            for share in shares[1:]:
                total = total + share
        else:
            shares = mpc.input([secint(int(v)) for v in values], senders=senders)
            total = [mpc.sum(list(column)) for column in zip(*shares, strict=True)]
        out = await mpc.output(total, receivers=list(receivers))
        if self.pid not in receivers:
            return None
        return np.array([int(v) for v in out], dtype=object)

    async def link(
        self,
        ids: np.ndarray | None,
        values: np.ndarray | None,
        *,
        sizes: tuple[int, int],
        owner: int,
        other: int,
        n_values: int,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Match the owner's identifiers against the other's; only the owner learns
        which of its own rows match, the count and the sums of the other's values
        over the matches.

        For every pair (i, j) the parties compute r_ij * (x_i - y_j) with a fresh secret
        random r_ij and open it to the owner alone: zero exactly where the identifiers
        are equal, a uniformly random field element elsewhere. The owner then inputs its
        secret 0/1 match indicator over the other party's (shuffled) rows, and learns
        sum(indicator * values) and the count.

        Returns
        -------
        (sums, matched_rows) or None
            At the owner: the count followed by the ``n_values`` sums (integers), and
            the positions of its own matched rows; None elsewhere.
        """
        mpc, secint = self.mpc, self.secint
        n_x, n_y = sizes
        k = n_values
        x = ids if self.pid == owner else np.zeros(n_x, dtype=object)
        # the other party's values, with a column of ones in front to count the matches
        if self.pid == other:
            y = ids
            table = np.ones((n_y, k + 1), dtype=object)
            if k:
                table[:, 1:] = np.asarray(values, dtype=object).reshape(n_y, k)
        else:
            y, table = np.zeros(n_y, dtype=object), np.zeros((n_y, k + 1), dtype=object)
        sx = mpc.input(secint.array(np.asarray(x, dtype=object)), senders=owner)
        sy = mpc.input(secint.array(np.asarray(y, dtype=object)), senders=other)
        if n_x == 0 or n_y == 0:
            diff_open = np.zeros((n_x, n_y), dtype=object)
        else:
            diff = (sx.reshape(n_x, 1) - sy.reshape(1, n_y)).reshape(n_x * n_y)
            mask = mpc._np_randoms(secint, n_x * n_y)
            masked = await mpc.output(diff * mask, receivers=[owner])
            diff_open = None if masked is None else np.asarray(masked, dtype=object)
        indicator = np.zeros(n_y, dtype=object)
        matched_rows = np.zeros(0, dtype=np.int64)
        if self.pid == owner:
            zero = np.asarray([int(v) == 0 for v in diff_open.reshape(-1)]).reshape(n_x, n_y)
            matched_rows = np.flatnonzero(zero.any(axis=1))
            indicator = zero.any(axis=0).astype(np.int64).astype(object)
        sm = mpc.input(secint.array(indicator), senders=owner)
        sv = mpc.input(secint.array(table), senders=other)
        sums = await mpc.output(
            mpc.np_matmul(sm.reshape(1, n_y), sv).reshape(k + 1), receivers=[owner]
        )
        if self.pid != owner:
            return None
        return np.array([int(v) for v in sums], dtype=object), matched_rows

    async def score(
        self,
        x: np.ndarray | None,
        w: np.ndarray | None,
        *,
        n: int,
        d: int,
        provider: int,
        supplier: int,
    ) -> np.ndarray | None:
        """The provider inputs an n-by-d matrix, the supplier d weights (intercept
        last); the provider alone learns the n linear scores."""
        mpc, secint = self.mpc, self.secint
        x = x if self.pid == provider else np.zeros((n, d), dtype=object)
        w = w if self.pid == supplier else np.zeros(d, dtype=object)
        sx = mpc.input(secint.array(np.asarray(x, dtype=object).reshape(n, d)), senders=provider)
        sw = mpc.input(secint.array(np.asarray(w, dtype=object).reshape(d)), senders=supplier)
        out = await mpc.output(mpc.np_matmul(sx, sw), receivers=[provider])
        return None if out is None else np.array([int(v) for v in out], dtype=object)


def _mpyc_options(network: PartyNetwork, name: str, threshold: int) -> list[str]:
    """MPyC's command-line options for party ``name``: its own entry (empty host) with
    the port it listens on, every other party's relay address, the threshold."""
    args = []
    for party in network.order:
        if party == name:
            args += ["-P", f":{network.listen[1]}"]
        else:
            host, port = network.peers[party]
            args += ["-P", f"{host}:{port}"]
    return [*args, "-T", str(threshold), "--no-log", "--no-barrier"]


def _import_runtime(options: list[str]) -> Any:
    """Import :mod:`mpyc.runtime` with ``options`` as the command line; return ``mpc``."""
    if "mpyc.runtime" in sys.modules:
        raise RuntimeError(
            "mpyc.runtime was imported before this party set its options; the fork "
            "server must not import it"
        )
    argv = sys.argv
    sys.argv = [argv[0] if argv else "pets-party", *options]
    try:
        from mpyc.runtime import mpc
    finally:
        sys.argv = argv
    mpc.logging(False)  # even if the mpyc package was imported before, with other options
    return mpc
