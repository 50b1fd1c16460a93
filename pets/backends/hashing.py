"""Today's pseudonymisation baselines for ``linkage``: hashed identifiers.

The other holder replaces each eligible patient's identifier by a token and sends the
tokens, with the columns the card's statistics need, to the recipient, which tokenises
its own identifiers the same way and joins. This is how much record linkage is done
today; none of it is a formal guarantee:

- ``hash-sha256``: token = SHA-256 of the decimal identifier. Anyone can recompute it,
  so a party holding a list of candidate identifiers (every valid NHS number of a
  region) reverses the tokens by a dictionary.
- ``hash-salted``: SHA-256 of a secret salt and the identifier; the two holders share
  the salt (the other holder makes it and sends it to the recipient), so the recipient
  can still run the dictionary.
- ``hmac-keyed``: HMAC-SHA256 under a key held by a trusted third party, which both
  holders send their identifiers to and which returns the tokens. The recipient cannot
  reverse the other holder's tokens without the key; the key holder sees every
  identifier; the key holder and the recipient together re-identify everything. The
  key holder is a helper party the backend brings (:meth:`HmacKeyed.helpers`): its own
  process, holding no data, whose view is attacked like the holders'.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import numpy as np
import pandas as pd

from pets.api import (
    Backend,
    Capabilities,
    Claim,
    LinkageOutput,
    PartyContext,
    PartyRole,
    PetClass,
    SecurityModel,
    Task,
    UnsupportedTask,
)
from pets.tasks import eligible, link_statistics
from pets.wire import pack, unpack

__all__ = ["KEY_HOLDER", "HashSalted", "HashSha256", "HmacKeyed"]

#: Party name of the trusted third party that holds the HMAC key (a helper party).
KEY_HOLDER = "linkage_key_holder"


def _sha256(ids: np.ndarray, salt: bytes = b"") -> np.ndarray:
    return np.array([hashlib.sha256(salt + str(int(v)).encode()).hexdigest() for v in ids])


def _hmac(ids: np.ndarray, key: bytes) -> np.ndarray:
    return np.array([hmac.new(key, str(int(v)).encode(), hashlib.sha256).hexdigest() for v in ids])


class _TokenLinkage(Backend):
    """Shared protocol: tokenise, ship the other holder's tokens and columns, join."""

    name = ""

    def __init__(self) -> None:
        pass

    def _claim(self) -> Claim:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def capabilities(self) -> Capabilities:
        """Serves ``linkage``; a heuristic with no formal guarantee."""
        return Capabilities(
            deterministic=True,
            task_kinds=frozenset({"linkage"}),
            pet_class=PetClass.BASELINE,
            claim=self._claim(),
        )

    def _tokenise(self, context: PartyContext, ids: np.ndarray) -> np.ndarray:
        """Return the tokens of this holder's identifiers ``ids`` (runs at each holder)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _serve(self, context: PartyContext) -> None:
        """The program of a helper party the backend brings (the key holder)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def run_party(self, context: PartyContext) -> LinkageOutput | None:
        """Link by tokens: the other holder sends its tokens and linked columns, the
        recipient tokenises its own identifiers the same way and joins."""
        task = context.task
        if task.kind != "linkage":
            raise UnsupportedTask(f"{self.name} serves linkage, not {task.kind}")
        recipient = task.recipient
        (other,) = [n for n in task.party_names if n != recipient]
        if context.name not in (recipient, other):
            self._serve(context)
            return None
        id_column = task.params["id_column"]
        frame = eligible(context.data, task, context.name)
        ids = frame[id_column].to_numpy()
        tokens = self._tokenise(context, ids)
        if context.name == other:
            columns = sorted(
                {s["column"] for s in task.params["statistics"] if s["party"] == other}
            )
            with context.phase("encode"):
                shipped = frame[columns].reset_index(drop=True)
                shipped.insert(0, id_column, tokens)
                payload = pack(shipped)
            context.send(recipient, payload, tag="tokens")
            return None
        received = unpack(context.receive(other, tag="tokens"))
        with context.phase("compute"):
            own = frame.reset_index(drop=True).copy()
            own[id_column] = tokens
            matched = np.intersect1d(own[id_column].to_numpy(), received[id_column].to_numpy())
            statistics = link_statistics({recipient: own, other: received}, matched, task)
            rows = np.isin(tokens, matched)
            reveal = task.params["reveal"] == "intersection"
            out = LinkageOutput(
                matches=frozenset(int(v) for v in ids[rows]) if reveal else None,
                cardinality=int(rows.sum()),
                statistics=statistics,
            )
        context.reveal("linkage", out)
        return out


class HashSha256(_TokenLinkage):
    """Unsalted SHA-256 of the NHS number (no parameters)."""

    name = "hash-sha256"

    def _claim(self) -> Claim:
        return Claim(
            security_model=SecurityModel.NONE,
            declared_leakage=("pseudonymised identifiers", "linked columns", "output"),
            formal=False,
            notes="Anyone with candidate NHS numbers reverses the hashes by a dictionary: "
            "the tokens are personal data.",
        )

    def _tokenise(self, context: PartyContext, ids: np.ndarray) -> np.ndarray:
        with context.phase("encode"):
            return _sha256(ids)


class HashSalted(_TokenLinkage):
    """SHA-256 with a salt the two holders share (made by the non-recipient)."""

    name = "hash-salted"

    def _claim(self) -> Claim:
        return Claim(
            security_model=SecurityModel.NONE,
            declared_leakage=("pseudonymised identifiers", "linked columns", "output"),
            formal=False,
            notes="The salt stops outsiders' dictionaries, not the recipient's: it "
            "holds the salt and can hash every candidate NHS number.",
        )

    def _tokenise(self, context: PartyContext, ids: np.ndarray) -> np.ndarray:
        recipient = context.task.recipient
        (other,) = [n for n in context.task.party_names if n != recipient]
        if context.name == other:
            with context.phase("setup"):
                salt = secrets.token_bytes(16)
                context.send(recipient, salt, tag="salt")
        else:
            salt = context.receive(other, tag="salt")
        with context.phase("encode"):
            return _sha256(ids, salt)


class HmacKeyed(_TokenLinkage):
    """HMAC-SHA256 under a key only a trusted third party holds."""

    name = "hmac-keyed"

    def _claim(self) -> Claim:
        return Claim(
            security_model=SecurityModel.TRUSTED_THIRD_PARTY,
            collusion_threshold=0,
            declared_leakage=(
                "inputs",
                "pseudonymised identifiers",
                "linked columns",
                "output",
            ),
            formal=False,
            notes="The key holder sees every identifier in the clear; if it colludes with "
            "the recipient, every token is reversed.",
        )

    def helpers(self, task: Task) -> tuple[PartyRole, ...]:
        """The key holder, a trusted third party that holds no data."""
        del task
        return (PartyRole(KEY_HOLDER, "key_holder"),)

    def _tokenise(self, context: PartyContext, ids: np.ndarray) -> np.ndarray:
        context.send(KEY_HOLDER, pack(ids.astype(np.int64)), tag="identifiers")
        return unpack(context.receive(KEY_HOLDER, tag="tokens"))["t"].to_numpy()

    def _serve(self, context: PartyContext) -> None:
        """Make the key, then return each holder's identifiers as HMAC tokens (the
        recipient's first, then the other holder's)."""
        task = context.task
        with context.phase("setup"):
            key = secrets.token_bytes(32)
        holders = [task.recipient, *(n for n in task.party_names if n != task.recipient)]
        for name in holders:
            received = unpack(context.receive(name, tag="identifiers"))
            with context.phase("encode"):
                tokens = pack(pd.Series(_hmac(received, key)).to_frame("t"))
                context.send(name, tokens, tag="tokens")
