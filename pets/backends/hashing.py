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
  identifier; the key holder and the recipient together re-identify everything.
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
    PetClass,
    SecurityModel,
    Task,
    UnsupportedTask,
)
from pets.session import Session
from pets.tasks import eligible, link_statistics
from pets.wire import pack, unpack

__all__ = ["KEY_HOLDER", "HashSalted", "HashSha256", "HmacKeyed"]

#: Session name of the trusted third party that holds the HMAC key.
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
            task_kinds=frozenset({"linkage"}), pet_class=PetClass.BASELINE, claim=self._claim()
        )

    def _tokenise(
        self, session: Session, task: Task, ids: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, task: Task, session: Session) -> LinkageOutput:
        """Link by tokens; the recipient joins."""
        if task.kind != "linkage":
            raise UnsupportedTask(f"{self.name} serves linkage, not {task.kind}")
        recipient = task.recipient
        (other,) = [n for n in task.party_names if n != recipient]
        id_column = task.params["id_column"]
        frames, ids = {}, {}
        for name in (recipient, other):
            with session.as_party(name) as party:
                frames[name] = eligible(party.data, task, name)
                ids[name] = frames[name][id_column].to_numpy()
        tokens = self._tokenise(session, task, ids)
        columns = sorted({s["column"] for s in task.params["statistics"] if s["party"] == other})
        with session.as_party(other) as party:
            with session.phase("encode"):
                shipped = frames[other][columns].reset_index(drop=True)
                shipped.insert(0, id_column, tokens[other])
                payload = pack(shipped)
            party.send(recipient, payload, tag="tokens")
        with session.as_party(recipient) as party:
            received = unpack(party.receive(other, tag="tokens"))
            with session.phase("compute"):
                own = frames[recipient].reset_index(drop=True).copy()
                own[id_column] = tokens[recipient]
                matched = np.intersect1d(own[id_column].to_numpy(), received[id_column].to_numpy())
                statistics = link_statistics({recipient: own, other: received}, matched, task)
                rows = np.isin(tokens[recipient], matched)
                matches = ids[recipient][rows]
                reveal = task.params["reveal"] == "intersection"
                out = LinkageOutput(
                    matches=frozenset(int(v) for v in matches) if reveal else None,
                    cardinality=int(rows.sum()),
                    statistics=statistics,
                )
            party.reveal("linkage", out)
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

    def _tokenise(
        self, session: Session, task: Task, ids: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        out = {}
        for name, values in ids.items():
            with session.as_party(name), session.phase("encode"):
                out[name] = _sha256(values)
        return out


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

    def _tokenise(
        self, session: Session, task: Task, ids: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        recipient = task.recipient
        (other,) = [n for n in ids if n != recipient]
        with session.as_party(other) as party, session.phase("setup"):
            salt = secrets.token_bytes(16)
            party.send(recipient, salt, tag="salt")
        with session.as_party(recipient) as party, session.phase("encode"):
            shared = party.receive(other, tag="salt")
            mine = _sha256(ids[recipient], shared)
        with session.as_party(other), session.phase("encode"):
            theirs = _sha256(ids[other], salt)
        return {recipient: mine, other: theirs}


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

    def _tokenise(
        self, session: Session, task: Task, ids: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        session.add_helper(KEY_HOLDER, role="key_holder")
        for name, values in ids.items():
            with session.as_party(name) as party:
                party.send(KEY_HOLDER, pack(values.astype(np.int64)), tag="identifiers")
        with session.as_party(KEY_HOLDER) as party:
            with session.phase("setup"):
                key = secrets.token_bytes(32)
            for name in ids:
                received = unpack(party.receive(name, tag="identifiers"))
                with session.phase("encode"):
                    party.send(
                        name, pack(pd.Series(_hmac(received, key)).to_frame("t")), tag="tokens"
                    )
        out = {}
        for name in ids:
            with session.as_party(name) as party:
                out[name] = unpack(party.receive(KEY_HOLDER, tag="tokens"))["t"].to_numpy()
        return out
