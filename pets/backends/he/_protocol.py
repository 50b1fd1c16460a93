"""The secure-sum protocol shared by the HE backends.

The key holder makes a key pair and sends the public part to the aggregator and the
data holders; each holder encrypts its own vector and sends it to the aggregator,
which adds the ciphertexts it cannot read and sends the total to the key holder, which
decrypts it. Every key and ciphertext crosses the session channel as bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pets.session import PartyView, Session

__all__ = ["secure_sum"]


def secure_sum(
    session: Session,
    scheme: Any,
    *,
    key_holder: str,
    aggregator: str,
    holders: Sequence[str],
    contribution: Callable[[PartyView], np.ndarray],
    state: dict[str, Any] | None = None,
) -> np.ndarray:
    """Return, as the key holder learns it, the sum of each holder's contribution.

    Parameters
    ----------
    session : Session
        The run's session.
    scheme : CkksScheme, BfvScheme or PaillierScheme
        The additive scheme.
    key_holder, aggregator : str
        Who decrypts, and who adds without the key (must differ).
    holders : sequence of str
        Parties that contribute.
    contribution : callable
        Called inside each holder's scope with its view; returns its vector (its own
        data, pre-aggregated in the clear).
    state : dict, optional
        Keys reused across calls (federated rounds): the key pair is made once.
    """
    if key_holder == aggregator:
        raise ValueError("the aggregator must not hold the decryption key")
    state = {} if state is None else state
    receivers = [p for p in dict.fromkeys([aggregator, *holders]) if p != key_holder]
    if "secret" not in state:
        with session.as_party(key_holder) as party, session.phase("setup"):
            state["secret"], public = scheme.keygen()
            for receiver in receivers:
                party.send(receiver, public, tag="public-key")
        state["public"] = {}
        for receiver in receivers:
            with session.as_party(receiver) as party, session.phase("setup"):
                state["public"][receiver] = scheme.load_public(
                    party.receive(key_holder, tag="public-key")
                )
        state["public"][key_holder] = scheme.public_of(state["secret"])
    length = None
    for holder in holders:
        with session.as_party(holder) as party:
            with session.phase("encode"):
                vector = np.asarray(contribution(party), dtype=np.float64)
            length = len(vector)
            with session.phase("encrypt"):
                ciphertext = scheme.encrypt(state["public"][holder], vector)
            party.send(aggregator, ciphertext, tag="share")
    with session.as_party(aggregator) as party:
        shares = [party.receive(h, tag="share") for h in holders]
        with session.phase("compute"):
            total = scheme.add(state["public"][aggregator], shares)
        party.send(key_holder, total, tag="sum")
    with session.as_party(key_holder) as party:
        received = party.receive(aggregator, tag="sum")
        with session.phase("decrypt"):
            return scheme.decrypt(state["secret"], received, length or 0, len(holders))
