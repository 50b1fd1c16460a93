"""Backends with planted leaks the transcript and dictionary checks must catch, each
claiming a formal guarantee with nothing but the output declared. Registered for the
tests the way a supplier's plugin is: by import target, run in their own processes.

Aggregate (``multi_site_prevalence``): no row crosses the channel, but what the ideal
functionality withholds does:

- :class:`TotalsJson`: each holder sends its per-cell counts and sums to the aggregator
  as JSON text;
- :class:`TotalsPackedBE`: the same as raw big-endian float64 bytes;
- :class:`SharesAndTotals`: an additive-sharing sum whose holders also hand the
  aggregator their totals over all cells (a float32 array);
- :class:`TotalsXored`: per-cell counts and sums as float64 bytes XORed with a fixed
  pad, which no value search decodes (the distinguishing test's case).

Train (``federated_risk_model``): :class:`LocalModelsJson`, a one-shot model average
whose trusts send the aggregator their local models (the task's own fit on their rows)
as JSON text.

Linkage (``trial_recruitment_linkage``): unsalted digests of the NHS number, written or
encoded otherwise than the dictionary attack's plain hex of the decimal number:

- :class:`UpperHexDashed`: SHA-256 of ``"485-777-3456"``, upper-case hex;
- :class:`Base64Sha256`: standard base64 of the raw SHA-256 of the decimal number;
- :class:`TruncatedSha1`: the first 16 hex characters of SHA-1 of the number spaced
  ``"485 777 3456"``;
- :class:`RawBlake2`: raw BLAKE2b-256 bytes of the int64 (little-endian) number;
- :class:`SaltInClear`: MD5 of the number followed by a salt that the other holder
  sends the recipient in the clear, urlsafe base64 without padding.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import replace

import numpy as np
import pandas as pd

from pets.api import (
    AggregateOutput,
    Backend,
    Capabilities,
    Claim,
    LinkageOutput,
    LogisticModel,
    PartyContext,
    PetClass,
    SecurityModel,
)
from pets.tasks import (
    design_matrix,
    eligible,
    finish_means,
    fit_logistic,
    labels,
    link_statistics,
    local_aggregate,
    sums_from_vector,
)
from pets.wire import pack, unpack

__all__ = [
    "Base64Sha256",
    "LocalModelsJson",
    "RawBlake2",
    "SaltInClear",
    "SharesAndTotals",
    "TotalsJson",
    "TotalsJsonWordplay",
    "TotalsPackedBE",
    "TotalsXored",
    "TruncatedSha1",
    "UpperHexDashed",
]


def _claim() -> Claim:
    return Claim(
        security_bits=128,
        security_model=SecurityModel.SEMI_HONEST,
        declared_leakage=("output",),
        formal=True,
    )


# -- aggregate ---------------------------------------------------------------------------
class _PlantedAggregate(Backend):
    """Holders send something to the aggregator, which sends the pooled sums to the
    recipient; subclasses choose what a holder sends and how the aggregator reads it."""

    def __init__(self) -> None:
        pass

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            task_kinds=frozenset({"aggregate"}), pet_class=PetClass.MPC, claim=_claim()
        )

    def _send(self, context: PartyContext, sums: pd.DataFrame, aggregator: str) -> None:
        raise NotImplementedError

    def _read(self, context: PartyContext, holder: str) -> np.ndarray:
        raise NotImplementedError

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        task = context.task
        holders = task.parties_with_role("data_holder")
        (aggregator,) = task.parties_with_role("aggregator")
        if context.name in holders:
            self._send(context, local_aggregate(context.data, task), aggregator)
            return None
        if context.name == aggregator:
            total = sum(self._read(context, h) for h in holders)
            context.send(task.recipient, pack(np.asarray(total)), tag="pooled")
            return None
        if context.name != task.recipient:
            return None
        pooled = unpack(context.receive(aggregator, tag="pooled"))
        out = AggregateOutput(finish_means(sums_from_vector(pooled, task), task))
        context.reveal("table", out)
        return out


class TotalsJson(_PlantedAggregate):
    """Per-cell counts and sums as JSON text."""

    def _send(self, context: PartyContext, sums: pd.DataFrame, aggregator: str) -> None:
        context.send(aggregator, pack({"sums": sums.to_numpy().ravel().tolist()}), tag="sums")

    def _read(self, context: PartyContext, holder: str) -> np.ndarray:
        return np.asarray(unpack(context.receive(holder, tag="sums"))["sums"])


class TotalsJsonWordplay(TotalsJson):
    """Per-cell sums as JSON text under a claim whose declared words contain "table" and
    "model updates" without declaring either (the summary search must not take them as
    declarations)."""

    @property
    def capabilities(self) -> Capabilities:
        claim = replace(
            _claim(),
            declared_leakage=("output", "notable: no tables leave a holder", "no model updates"),
        )
        return Capabilities(
            task_kinds=frozenset({"aggregate"}), pet_class=PetClass.MPC, claim=claim
        )


class TotalsPackedBE(_PlantedAggregate):
    """Per-cell counts and sums as raw big-endian float64."""

    def _send(self, context: PartyContext, sums: pd.DataFrame, aggregator: str) -> None:
        context.send(aggregator, sums.to_numpy().ravel().astype(">f8").tobytes(), tag="sums")

    def _read(self, context: PartyContext, holder: str) -> np.ndarray:
        return np.frombuffer(context.receive(holder, tag="sums"), ">f8").astype(np.float64)


class TotalsXored(_PlantedAggregate):
    """Per-cell counts and sums as float64 bytes XORed with a pad fixed in the code."""

    PAD = np.frombuffer(hashlib.sha256(b"pad").digest() * 4, np.uint8)

    def _mask(self, data: bytes) -> bytes:
        raw = np.frombuffer(data, np.uint8)
        return (raw ^ np.resize(self.PAD, raw.size)).tobytes()

    def _send(self, context: PartyContext, sums: pd.DataFrame, aggregator: str) -> None:
        context.send(aggregator, self._mask(sums.to_numpy().ravel().tobytes()), tag="sums")

    def _read(self, context: PartyContext, holder: str) -> np.ndarray:
        return np.frombuffer(self._mask(context.receive(holder, tag="sums")), np.float64)


class SharesAndTotals(_PlantedAggregate):
    """Additive shares of the per-cell sums: a random mask to the aggregator, the
    masked vector to the recipient; plus each holder's totals to the aggregator."""

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        task = context.task
        holders = task.parties_with_role("data_holder")
        (aggregator,) = task.parties_with_role("aggregator")
        if context.name in holders:
            sums = local_aggregate(context.data, task)
            vector = sums.to_numpy().ravel()
            rng = np.random.default_rng()
            mask = rng.uniform(-1e9, 1e9, size=vector.size)
            context.send(aggregator, pack(mask), tag="share")
            context.send(task.recipient, pack(vector - mask), tag="share")
            totals = sums.sum().to_numpy(np.float32)  # the planted leak
            context.send(aggregator, pack(totals), tag="totals")
            return None
        if context.name == aggregator:
            total = sum(unpack(context.receive(h, tag="share")) for h in holders)
            for h in holders:
                context.receive(h, tag="totals")
            context.send(task.recipient, pack(total), tag="masks")
            return None
        if context.name != task.recipient:
            return None
        masked = sum(unpack(context.receive(h, tag="share")) for h in holders)
        pooled = masked + unpack(context.receive(aggregator, tag="masks"))
        out = AggregateOutput(finish_means(sums_from_vector(np.round(pooled, 6), task), task))
        context.reveal("table", out)
        return out


# -- train -------------------------------------------------------------------------------
class LocalModelsJson(Backend):
    """Each trust fits the task's model on its rows and sends it to the recipient as
    JSON; the recipient averages them, weighted by nothing."""

    def __init__(self) -> None:
        pass

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(task_kinds=frozenset({"train"}), pet_class=PetClass.MPC, claim=_claim())

    def run_party(self, context: PartyContext) -> LogisticModel | None:
        task = context.task
        holders = [h for h in task.parties_with_role("data_holder") if h != task.recipient]
        if context.name in holders:
            x = design_matrix(context.data, task.params["features"])
            model = fit_logistic(x, labels(context.data, task), task)
            update = {"coef": model.coef.tolist(), "intercept": model.intercept}
            context.send(task.recipient, pack(update), tag="model")
            return None
        if context.name != task.recipient:
            return None
        updates = [unpack(context.receive(h, tag="model")) for h in holders]
        out = LogisticModel(
            coef=np.mean([u["coef"] for u in updates], axis=0),
            intercept=float(np.mean([u["intercept"] for u in updates])),
            features=tuple(task.params["features"]),
        )
        context.reveal("model", out)
        return out


# -- linkage -----------------------------------------------------------------------------
def _written(number: int, sep: str) -> bytes:
    text = f"{number:010d}"
    return f"{text[:3]}{sep}{text[3:6]}{sep}{text[6:]}".encode()


class _PlantedLinkage(Backend):
    """The other holder sends its tokens and linked columns; the recipient tokenises
    its own identifiers the same way and joins (as the hashing baselines do)."""

    def __init__(self) -> None:
        pass

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            task_kinds=frozenset({"linkage"}), pet_class=PetClass.PSI, claim=_claim()
        )

    def _token(self, number: int, salt: bytes) -> object:
        raise NotImplementedError

    def run_party(self, context: PartyContext) -> LinkageOutput | None:
        task = context.task
        recipient = task.recipient
        (other,) = [n for n in task.party_names if n != recipient]
        if context.name not in (recipient, other):
            return None
        id_column = task.params["id_column"]
        frame = eligible(context.data, task, context.name)
        ids = frame[id_column].to_numpy()
        if context.name == other:
            salt = secrets.token_hex(4).encode()
            context.send(recipient, pack(salt.decode()), tag="salt")
            columns = sorted(
                {s["column"] for s in task.params["statistics"] if s["party"] == other}
            )
            shipped = frame[columns].reset_index(drop=True)
            shipped.insert(0, id_column, [self._token(int(v), salt) for v in ids])
            context.send(recipient, pack(shipped), tag="tokens")
            return None
        salt = unpack(context.receive(other, tag="salt")).encode()
        received = unpack(context.receive(other, tag="tokens"))
        own = frame.reset_index(drop=True).copy()
        tokens = [self._token(int(v), salt) for v in ids]
        own[id_column] = tokens
        matched = np.intersect1d(own[id_column].to_numpy(), received[id_column].to_numpy())
        statistics = link_statistics({recipient: own, other: received}, matched, task)
        rows = np.isin(np.asarray(tokens, dtype=object), matched)
        out = LinkageOutput(
            matches=frozenset(int(v) for v in ids[rows])
            if task.params["reveal"] == "intersection"
            else None,
            cardinality=int(rows.sum()),
            statistics=statistics,
        )
        context.reveal("linkage", out)
        return out


class UpperHexDashed(_PlantedLinkage):
    def _token(self, number: int, salt: bytes) -> object:
        return hashlib.sha256(_written(number, "-")).hexdigest().upper()


class Base64Sha256(_PlantedLinkage):
    def _token(self, number: int, salt: bytes) -> object:
        return base64.b64encode(hashlib.sha256(str(number).encode()).digest()).decode()


class TruncatedSha1(_PlantedLinkage):
    def _token(self, number: int, salt: bytes) -> object:
        return hashlib.sha1(_written(number, " ")).hexdigest()[:16]


class RawBlake2(_PlantedLinkage):
    def _token(self, number: int, salt: bytes) -> object:
        return hashlib.blake2b(number.to_bytes(8, "little"), digest_size=32).digest()


class SaltInClear(_PlantedLinkage):
    def _token(self, number: int, salt: bytes) -> object:
        digest = hashlib.md5(str(number).encode() + salt).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
