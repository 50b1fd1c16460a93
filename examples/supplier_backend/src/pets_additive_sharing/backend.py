"""``additive-sharing``: secure aggregation by additive secret sharing, with one helper.

The protocol, for the ``aggregate`` task kind:

1. Each data holder computes its per-cell counts and sums (``local_aggregate``),
   flattens them and encodes them as fixed-point integers modulo ``2**64``
   (``fraction_bits`` bits after the binary point).
2. It draws a uniformly random vector ``r`` modulo ``2**64`` and splits its vector ``x``
   into two shares, ``x - r`` for the recipient and ``r`` for the helper party
   ``share_aggregator`` that this backend brings. Each share alone is uniformly random:
   it says nothing about ``x``.
3. The helper adds the shares it received and sends only their sum to the recipient.
4. The recipient adds its shares and the helper's sum. The random vectors cancel, and
   it holds the pooled counts and sums, exact to ``2**-fraction_bits`` per holder and
   cell (counts, and sums of whole numbers, exactly).

Security: semi-honest parties, and no collusion between the recipient and the helper
(collusion threshold 1). The recipient learns the output; the helper learns nothing.

The module imports nothing from ``pets`` but :mod:`pets.api`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pets.api import (
    AggregateOutput,
    Backend,
    Capabilities,
    Claim,
    PartyContext,
    PartyRole,
    PetClass,
    SecurityModel,
    Task,
    UnsupportedTask,
    finish_means,
    local_aggregate,
    pack,
    sums_from_vector,
    unpack,
)

__all__ = ["HELPER", "AdditiveSharing", "decode_fixed", "encode_fixed", "split_shares"]

#: Name of the helper party this backend brings (a suffix is added on a clash).
HELPER = "share_aggregator"

#: Largest ``fraction_bits`` accepted: leaves 23 bits for the integer part of a sum.
MAX_FRACTION_BITS = 40


def encode_fixed(values: np.ndarray, fraction_bits: int, holders: int) -> np.ndarray:
    """Encode floats as fixed-point integers modulo ``2**64`` (``uint64``).

    Parameters
    ----------
    values : numpy.ndarray
        Per-cell counts and sums of one data holder.
    fraction_bits : int
        Bits after the binary point.
    holders : int
        Number of data holders: the pooled sum of every holder must fit in 63 bits.

    Raises
    ------
    ValueError
        A value is too large for ``fraction_bits`` (the message says how to fix it).
    """
    scaled = np.rint(np.asarray(values, dtype=np.float64) * 2.0**fraction_bits)
    limit = 2.0**63 / max(holders, 1)
    if scaled.size and not np.all(np.abs(scaled) < limit):
        raise ValueError(
            f"additive-sharing: a per-cell sum is too large for fraction_bits={fraction_bits} "
            f"with {holders} data holders; lower fraction_bits"
        )
    return scaled.astype(np.int64).view(np.uint64)


def decode_fixed(values: np.ndarray, fraction_bits: int) -> np.ndarray:
    """Decode integers modulo ``2**64`` (two's complement) back to floats."""
    return np.asarray(values, dtype=np.uint64).view(np.int64).astype(np.float64) / (
        2.0**fraction_bits
    )


def split_shares(secret: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``secret`` (``uint64``) into two additive shares modulo ``2**64``.

    Each share alone is uniformly distributed; their sum modulo ``2**64`` is ``secret``.
    """
    mask = rng.integers(0, 2**64, size=secret.shape, dtype=np.uint64)
    return secret - mask, mask  # uint64 arithmetic wraps modulo 2**64


class AdditiveSharing(Backend):
    """Secure aggregation by two-out-of-two additive secret sharing with a helper party.

    Parameters
    ----------
    fraction_bits : int
        Bits after the binary point of the fixed-point encoding, 0 to 40: sums are exact
        to ``2**-fraction_bits`` per data holder and cell.
    """

    def __init__(self, *, fraction_bits: int = 24) -> None:
        self.fraction_bits = fraction_bits

    @property
    def capabilities(self) -> Capabilities:
        """Serves ``aggregate``; semi-honest, collusion threshold 1, reveals the output."""
        return Capabilities(
            task_kinds=frozenset({"aggregate"}),
            pet_class=PetClass.MPC,
            claim=Claim(
                security_model=SecurityModel.SEMI_HONEST,
                collusion_threshold=1,
                declared_leakage=("output",),
                formal=True,
                notes="Shares are information-theoretically hiding, but the recipient and "
                "the helper together can read every holder's table: they must not "
                "collude. The exact table is published: small cells are not protected.",
            ),
            deterministic=True,  # the shares are random, the reconstructed sums are not
        )

    def helpers(self, task: Task) -> tuple[PartyRole, ...]:
        """The helper ``share_aggregator``, which adds the shares it receives."""
        if task.kind != "aggregate":
            return ()
        return (PartyRole(_helper_name(task.party_names), "helper"),)

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        """Data holders share, the helper adds, the recipient reconstructs the totals."""
        task = context.task
        if task.kind != "aggregate":
            raise UnsupportedTask(f"additive-sharing serves 'aggregate' only, not {task.kind!r}")
        if not isinstance(self.fraction_bits, int) or not (
            0 <= self.fraction_bits <= MAX_FRACTION_BITS
        ):
            raise ValueError(
                f"additive-sharing: fraction_bits must be an integer from 0 to "
                f"{MAX_FRACTION_BITS}, got {self.fraction_bits!r}"
            )
        holders = task.parties_with_role("data_holder")
        sharing = tuple(h for h in holders if h != task.recipient)
        helper = _helper_name(task.party_names)
        if context.name == task.recipient:
            return self._reconstruct(context, holders, sharing, helper)
        if context.name in sharing:
            self._share(context, len(holders), helper)
        elif context.name == helper and sharing:
            self._add_shares(context, sharing)
        return None

    # -- the three roles -----------------------------------------------------------------
    def _share(self, context: PartyContext, holders: int, helper: str) -> None:
        """A data holder: split its fixed-point sums into two shares and send them."""
        task = context.task
        with context.phase("compute"):
            sums = local_aggregate(context.data, task).to_numpy().ravel()
        with context.phase("encode"):
            secret = encode_fixed(sums, self.fraction_bits, holders)
            for_recipient, for_helper = split_shares(secret, np.random.default_rng())
        with context.phase("communicate"):
            context.send(task.recipient, pack(for_recipient), tag="share")
            context.send(helper, pack(for_helper), tag="share")

    def _add_shares(self, context: PartyContext, sharing: Sequence[str]) -> None:
        """The helper: add the shares it received and send only their sum."""
        with context.phase("communicate"):
            shares = [unpack(context.receive(h, tag="share")) for h in sharing]
        with context.phase("compute"):
            total = _add(shares)
        with context.phase("communicate"):
            context.send(context.task.recipient, pack(total), tag="sum")

    def _reconstruct(
        self, context: PartyContext, holders: Sequence[str], sharing: Sequence[str], helper: str
    ) -> AggregateOutput:
        """The recipient: add its shares and the helper's sum, decode, finish the means."""
        task = context.task
        parts = []
        if context.name in holders:  # a recipient that holds data keeps its own sums
            with context.phase("compute"):
                own = local_aggregate(context.data, task).to_numpy().ravel()
                parts.append(encode_fixed(own, self.fraction_bits, len(holders)))
        if sharing:
            with context.phase("communicate"):
                parts += [unpack(context.receive(h, tag="share")) for h in sharing]
                parts.append(unpack(context.receive(helper, tag="sum")))
        with context.phase("reveal"):
            totals = decode_fixed(_add(parts), self.fraction_bits)
            out = AggregateOutput(finish_means(sums_from_vector(totals, task), task))
            context.reveal("table", out)
        return out


def _add(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """Add ``uint64`` vectors modulo ``2**64``."""
    total = np.zeros_like(np.asarray(vectors[0], dtype=np.uint64))
    for vector in vectors:
        total += np.asarray(vector, dtype=np.uint64)
    return total


def _helper_name(taken: Sequence[str]) -> str:
    """``share_aggregator``, or ``share_aggregator_2``, ... if a card party has that name."""
    name, n = HELPER, 1
    while name in taken:
        n += 1
        name = f"{HELPER}_{n}"
    return name
