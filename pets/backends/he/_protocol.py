"""The secure-sum protocol shared by the HE backends, as a party program.

The key holder makes a key pair and sends the public part to the aggregator and the
data holders; each holder encrypts its own vector and sends it to the aggregator,
which adds the ciphertexts it cannot read and sends the total to the key holder, which
decrypts it. Every party runs :func:`secure_sum` in its own process; keys and
ciphertexts cross between them only as bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pets.api import PartyContext

__all__ = ["make_keys", "secure_sum"]


def make_keys(
    context: PartyContext,
    scheme: Any,
    *,
    aggregator: str,
    holders: Sequence[str],
    keys: dict[str, Any],
) -> None:
    """At the key holder: make the key pair into ``keys`` and send the public part to
    the aggregator and the holders (who load it when they first need it).

    Parameters
    ----------
    context : PartyContext
        The key holder's context.
    scheme : CkksScheme, BfvScheme or PaillierScheme
        The additive scheme.
    aggregator : str
        Who adds ciphertexts.
    holders : sequence of str
        Parties that contribute (the key holder among them receives nothing).
    keys : dict
        Filled with ``secret`` and ``public`` (what the key holder encrypts with).
    """
    receivers = [p for p in dict.fromkeys([aggregator, *holders]) if p != context.name]
    with context.phase("setup"):
        keys["secret"], public = scheme.keygen()
        for receiver in receivers:
            context.send(receiver, public, tag="public-key")
        keys["public"] = scheme.public_of(keys["secret"])


def secure_sum(
    context: PartyContext,
    scheme: Any,
    *,
    key_holder: str,
    aggregator: str,
    holders: Sequence[str],
    contribution: np.ndarray | None,
    length: int,
    keys: dict[str, Any] | None = None,
) -> np.ndarray | None:
    """Run this party's part of a secure sum; return the sum at the key holder.

    Parameters
    ----------
    context : PartyContext
        This party's context.
    scheme : CkksScheme, BfvScheme or PaillierScheme
        The additive scheme (the same parameters at every party).
    key_holder, aggregator : str
        Who decrypts, and who adds without the key (must differ).
    holders : sequence of str
        Parties that contribute.
    contribution : ndarray or None
        This party's vector if it is one of ``holders`` (its own data, pre-aggregated
        in the clear); None otherwise.
    length : int
        The public length of every contribution.
    keys : dict, optional
        This party's keys, kept across calls (federated rounds): the key pair is made,
        and the public key sent and loaded, on the first call only (or beforehand, by
        :func:`make_keys` at the key holder).

    Returns
    -------
    ndarray or None
        The decrypted sum at the key holder; None at every other party.
    """
    if key_holder == aggregator:
        raise ValueError("the aggregator must not hold the decryption key")
    me = context.name
    involved = {key_holder, aggregator, *holders}
    if me not in involved:
        return None
    keys = {} if keys is None else keys
    if "public" not in keys:
        if me == key_holder:
            make_keys(context, scheme, aggregator=aggregator, holders=holders, keys=keys)
        else:
            with context.phase("setup"):
                keys["public"] = scheme.load_public(context.receive(key_holder, tag="public-key"))
    if me in holders:
        if contribution is None:
            raise ValueError(f"{me!r} is a data holder of the secure sum but gave no vector")
        vector = np.asarray(contribution, dtype=np.float64)
        if len(vector) != length:
            raise ValueError(f"{me!r}: contribution of length {len(vector)}, expected {length}")
        with context.phase("encrypt"):
            ciphertext = scheme.encrypt(keys["public"], vector)
        if me != aggregator:
            context.send(aggregator, ciphertext, tag="share")
    if me == aggregator:
        shares = [ciphertext if h == me else context.receive(h, tag="share") for h in holders]
        with context.phase("compute"):
            total = scheme.add(keys["public"], shares)
        context.send(key_holder, total, tag="sum")
    if me != key_holder:
        return None
    received = context.receive(aggregator, tag="sum")
    with context.phase("decrypt"):
        return scheme.decrypt(keys["secret"], received, length, len(holders))
