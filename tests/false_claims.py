"""Backends whose formal claim their own output contradicts, written as an outside
supplier would write them and installed the same way (by import target, run by the cell
worker with each party in its own process).

Each does its task honestly in the sense that matters to a supplier (the answer is
right) and claims more than it delivers: formal anonymisation with nothing declared, or
epsilon = 1, while the release, the table or the answers are exact. No attack is told
about them; the harness must find every one from what the attackers observe.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pets.api import (
    AggregateOutput,
    Backend,
    Capabilities,
    Claim,
    PartyContext,
    PetClass,
    SecurityModel,
    Task,
)
from pets.backends.hashing import HashSha256
from pets.backends.plaintext import Plaintext
from pets.backends.release import TableRelease, deidentify
from pets.tasks import finish_means, local_aggregate, sums_from_vector
from pets.wire import pack, unpack

#: Formal anonymisation that admits no leakage at all.
ANONYMOUS = Claim(
    security_model=SecurityModel.SEMI_HONEST,
    security_bits=128,
    declared_leakage=(),
    formal=True,
    notes="Formally anonymous: nothing about any patient can be learned.",
)

#: Epsilon = 1 differential privacy for the whole run, admitting only the output.
EPSILON_ONE = Claim(
    epsilon=1.0,
    delta=1e-6,
    neighbouring="add-remove",
    accountant="basic sequential composition",
    declared_leakage=("output",),
    formal=True,
)


class _Release(TableRelease):
    """A table release with a stated claim; subclasses say how the rows are changed."""

    CLAIM = ANONYMOUS
    PET = PetClass.SYNTHETIC

    def __init__(self) -> None:
        pass

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(task_kinds=frozenset({"release"}), pet_class=self.PET, claim=self.CLAIM)


class AnonymousExtract(_Release):
    """Calls a de-identified extract (identifiers dropped, rows real and shuffled)
    formally anonymous."""

    def publish(self, frame: pd.DataFrame, columns: list[str], task: Task) -> pd.DataFrame:
        del task
        rows = deidentify(frame)[columns]
        return rows.sample(frac=1.0, random_state=1).reset_index(drop=True)


class AnonymousJitter(_Release):
    """Calls a "synthetic" table formally anonymous that is nine in ten real rows with
    every measurement rounded to a whole number and the age moved by a year at random:
    near-exact copies of real patients."""

    def publish(self, frame: pd.DataFrame, columns: list[str], task: Task) -> pd.DataFrame:
        del task
        rng = np.random.default_rng(2)
        rows = frame[columns].sample(frac=0.9, random_state=2).reset_index(drop=True)
        for column in rows.columns:
            if pd.api.types.is_float_dtype(rows[column]):
                rows[column] = rows[column].round(0)
        rows["age"] = (rows["age"] + rng.integers(-1, 2, len(rows))).clip(lower=0)
        return rows


class EpsilonExtract(AnonymousExtract):
    """Claims epsilon = 1 for the same real rows."""

    CLAIM = EPSILON_ONE
    PET = PetClass.DP


class EpsilonJitter(AnonymousJitter):
    """Claims epsilon = 1 for the same near-exact rows."""

    CLAIM = EPSILON_ONE
    PET = PetClass.DP


class AnonymousTokens(HashSha256):
    """Links by unsalted SHA-256 of NHS numbers and calls it formally anonymous."""

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            task_kinds=frozenset({"linkage"}), pet_class=PetClass.PSI, claim=ANONYMOUS
        )


class EpsilonExactSums(Backend):
    """Claims epsilon = 1 for an aggregate whose holders send exact per-cell sums (no
    rows, so no party sees another's values): the published table is exact."""

    def __init__(self) -> None:
        pass

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            task_kinds=frozenset({"aggregate"}), pet_class=PetClass.DP, claim=EPSILON_ONE
        )

    def run_party(self, context: PartyContext) -> AggregateOutput | None:
        task = context.task
        holders = task.parties_with_role("data_holder")
        if context.name in holders:
            sums = local_aggregate(context.data, task)
            context.send(task.recipient, pack(sums.to_numpy()), tag="sums")
            return None
        if context.name != task.recipient:
            return None
        total = sum(unpack(context.receive(h, tag="sums")) for h in holders)
        sums = sums_from_vector(np.asarray(total).ravel(), task)
        out = AggregateOutput(finish_means(sums, task))
        context.reveal("table", out)
        return out


class EpsilonExactAnswers(Plaintext):
    """Claims epsilon = 1 for a query service that answers every query exactly."""

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            task_kinds=frozenset({"query"}), pet_class=PetClass.DP, claim=EPSILON_ONE
        )


#: Registry name to import target, for ``Registry.add``.
FALSE_CLAIMS = {
    "anonymous_extract": "false_claims:AnonymousExtract",
    "anonymous_jitter": "false_claims:AnonymousJitter",
    "anonymous_tokens": "false_claims:AnonymousTokens",
    "epsilon_extract": "false_claims:EpsilonExtract",
    "epsilon_jitter": "false_claims:EpsilonJitter",
    "epsilon_exact_sums": "false_claims:EpsilonExactSums",
    "epsilon_exact_answers": "false_claims:EpsilonExactAnswers",
}
