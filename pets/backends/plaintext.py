"""Today's baselines without any PET.

``plaintext``: every data holder sends its rows to one party (the recipient, acting as
a trusted third party), which computes the answer in the clear. ``local_only``: one
trust trains on its own rows alone and shares only the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pets.api import (
    AggregateOutput,
    Backend,
    Capabilities,
    Claim,
    InferenceOutput,
    LinkageOutput,
    LogisticModel,
    PartyContext,
    PetClass,
    QueryOutput,
    ReleaseOutput,
    SecurityModel,
    UnsupportedTask,
)
from pets.tasks import (
    answer_query,
    answers_from_wire,
    answers_to_wire,
    design_matrix,
    eligible,
    finish_means,
    fit_logistic,
    labels,
    link_statistics,
    local_aggregate,
)
from pets.wire import pack, unpack

__all__ = ["LocalOnly", "Plaintext", "pool_rows", "serve_workload"]


class Plaintext(Backend):
    """Pool everything at a trusted third party (the recipient) and compute in the clear.

    It has no parameters. Its claim is that it protects nothing: the recipient sees
    every other party's input.
    """

    def __init__(self) -> None:
        pass

    @property
    def capabilities(self) -> Capabilities:
        """Serves every task kind; declares that inputs are revealed."""
        return Capabilities(
            deterministic=True,
            task_kinds=frozenset(
                {"aggregate", "linkage", "train", "inference", "release", "query"}
            ),
            pet_class=PetClass.BASELINE,
            claim=Claim(
                security_model=SecurityModel.TRUSTED_THIRD_PARTY,
                declared_leakage=("inputs", "identifiers", "output"),
                formal=False,
                notes="The party that computes sees every input in the clear, "
                "identifiers included.",
            ),
        )

    def run_party(self, context: PartyContext) -> Any:
        """Answer the task by shipping raw inputs to the party that computes."""
        handler = getattr(self, f"_{context.task.kind}", None)
        if handler is None:
            raise UnsupportedTask(f"plaintext does not serve task kind {context.task.kind!r}")
        return handler(context)

    def _aggregate(self, context: PartyContext) -> AggregateOutput | None:
        task = context.task
        pooled = pool_rows(context, task.parties_with_role("data_holder"), task.recipient)
        if pooled is None:
            return None
        with context.phase("compute"):
            out = AggregateOutput(finish_means(local_aggregate(pooled, task), task))
        context.reveal("table", out)
        return out

    def _linkage(self, context: PartyContext) -> LinkageOutput | None:
        task = context.task
        other = next(n for n in task.party_names if n != task.recipient)
        theirs = pool_rows(context, [other], task.recipient)
        if theirs is None:
            return None
        mine = context.data
        with context.phase("compute"):
            id_column = task.params["id_column"]
            matches = np.intersect1d(
                eligible(mine, task, task.recipient)[id_column].to_numpy(),
                eligible(theirs, task, other)[id_column].to_numpy(),
            )
            stats = link_statistics({task.recipient: mine, other: theirs}, matches, task)
            ids = (
                frozenset(int(x) for x in matches)
                if task.params["reveal"] == "intersection"
                else None
            )
            out = LinkageOutput(matches=ids, cardinality=int(matches.size), statistics=stats)
        context.reveal("linkage", out)
        return out

    def _train(self, context: PartyContext) -> LogisticModel | None:
        task = context.task
        pooled = pool_rows(context, task.parties_with_role("data_holder"), task.recipient)
        if pooled is None:
            return None
        with context.phase("train"):
            model = fit_logistic(
                design_matrix(pooled, task.params["features"]), labels(pooled, task), task
            )
        context.reveal("model", model)
        return model

    def _inference(self, context: PartyContext) -> InferenceOutput | None:
        task = context.task
        supplier, provider = task.params["supplier"], task.recipient
        patients = pool_rows(context, [provider], supplier)
        if context.name == supplier:
            with context.phase("compute"):
                scores = context.data.predict_proba(
                    design_matrix(patients, task.params["features"])
                )
            context.send(provider, pack(scores), tag="scores")
            return None
        if context.name != provider:
            return None
        out = InferenceOutput(unpack(context.receive(supplier, tag="scores")))
        context.reveal("scores", out)
        return out

    def _release(self, context: PartyContext) -> ReleaseOutput | None:
        task = context.task
        (custodian,) = [n for n in task.party_names if n != task.recipient]
        pooled = pool_rows(context, [custodian], task.recipient)
        if pooled is None:
            return None
        out = ReleaseOutput(pooled)
        context.reveal("release", out)
        return out

    def _query(self, context: PartyContext) -> QueryOutput | None:
        return serve_workload(
            context, lambda data, workload: [answer_query(data, q) for q in workload]
        )


def serve_workload(
    context: PartyContext,
    answer: Callable[[Any, list[Any]], list[Any]],
) -> QueryOutput | None:
    """The query protocol as one party's program: the researcher (the recipient) sends
    its workload to the custodian, which answers it with ``answer(data, workload)``
    (phase ``compute``) and sends the answers back; the researcher returns them.

    Every party but the researcher returns None.
    """
    task = context.task
    (custodian,) = [n for n in task.party_names if n != task.recipient]
    if context.name == custodian:
        workload = unpack(context.receive(task.recipient, tag="workload"))
        with context.phase("compute"):
            answers = answer(context.data, workload)
        context.send(task.recipient, pack(answers_to_wire(answers)), tag="answers")
        return None
    if context.name != task.recipient:
        return None
    context.send(custodian, pack(list(task.params["queries"])), tag="workload")
    out = QueryOutput(answers_from_wire(unpack(context.receive(custodian, tag="answers"))))
    context.reveal("answers", out)
    return out


def pool_rows(context: PartyContext, holders: Sequence[str], at: str) -> pd.DataFrame | None:
    """Each of ``holders`` sends its rows to ``at``, which returns them pooled in
    ``holders`` order (its own rows, if it holds some, in their place); every other
    party returns None."""
    if context.name != at:
        if context.name in holders:
            with context.phase("encode"):
                payload = pack(context.data)
            context.send(at, payload, tag="rows")
        return None
    frames = []
    with context.phase("encode"):
        for holder in holders:
            if holder == at:
                frames.append(context.data)
            else:
                frames.append(unpack(context.receive(holder, tag="rows")))
    return pd.concat(frames, ignore_index=True)


class LocalOnly(Backend):
    """One trust trains on its own rows only; the recipient gets that model.

    Parameters
    ----------
    party : str or None
        The trust that trains. None means the last data holder named in the card (cards
        list trusts from largest to smallest, so this is the smallest).
    """

    def __init__(self, *, party: str | None = None) -> None:
        self.party = party

    @property
    def capabilities(self) -> Capabilities:
        """Serves ``train``; nothing but the model leaves the trust."""
        return Capabilities(
            deterministic=True,
            task_kinds=frozenset({"train"}),
            pet_class=PetClass.BASELINE,
            claim=Claim(
                declared_leakage=("output",),
                formal=False,
                notes="No data leaves the trust; the model itself may still leak its rows.",
            ),
        )

    def run_party(self, context: PartyContext) -> LogisticModel | None:
        """Fit at one trust and send the model's weights to the recipient."""
        task = context.task
        if task.kind != "train":
            raise UnsupportedTask(f"local_only serves train, not {task.kind}")
        holders = list(task.parties_with_role("data_holder"))
        trust = self.party if self.party is not None else holders[-1]
        if trust not in holders:
            raise UnsupportedTask(
                f"local_only: party {trust!r} holds no data; data holders: {', '.join(holders)}"
            )
        if context.name == trust:
            with context.phase("train"):
                model = fit_logistic(
                    design_matrix(context.data, task.params["features"]),
                    labels(context.data, task),
                    task,
                )
            weights = np.append(model.coef, model.intercept)
            context.send(task.recipient, pack(weights), tag="model")
            return None
        if context.name != task.recipient:
            return None
        weights = unpack(context.receive(trust, tag="model"))
        out = LogisticModel(
            coef=weights[:-1], intercept=float(weights[-1]), features=tuple(task.params["features"])
        )
        context.reveal("model", out)
        return out
