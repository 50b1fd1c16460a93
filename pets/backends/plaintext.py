"""Today's baselines without any PET.

``plaintext``: every data holder sends its rows to one party (the recipient, acting as
a trusted third party), which computes the answer in the clear. ``local_only``: one
trust trains on its own rows alone and shares only the model.
"""

from __future__ import annotations

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
    PetClass,
    QueryOutput,
    ReleaseOutput,
    SecurityModel,
    Task,
    UnsupportedTask,
)
from pets.session import Session
from pets.tasks import (
    answer_query,
    design_matrix,
    eligible,
    finish_means,
    fit_logistic,
    labels,
    link_statistics,
    local_aggregate,
)
from pets.wire import pack, unpack

__all__ = ["LocalOnly", "Plaintext"]


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
            task_kinds=frozenset(
                {"aggregate", "linkage", "train", "inference", "release", "query"}
            ),
            pet_class=PetClass.BASELINE,
            claim=Claim(
                security_model=SecurityModel.TRUSTED_THIRD_PARTY,
                declared_leakage=("inputs", "output"),
                formal=False,
                notes="The party that computes sees every input in the clear.",
            ),
        )

    def run(self, task: Task, session: Session) -> Any:
        """Answer ``task`` by shipping raw inputs to the party that computes."""
        handler = getattr(self, f"_{task.kind}", None)
        if handler is None:
            raise UnsupportedTask(f"plaintext does not serve task kind {task.kind!r}")
        return handler(task, session)

    def _pool(self, session: Session, holders: list[str], at: str) -> pd.DataFrame:
        """Send each holder's rows to ``at``; return them pooled, as ``at`` sees them."""
        frames = []
        for holder in holders:
            with session.as_party(holder) as party:
                if holder == at:
                    frames.append(party.data)
                    continue
                with session.phase("encode"):
                    payload = pack(party.data)
                party.send(at, payload, tag="rows")
        with session.as_party(at) as party:
            with session.phase("encode"):
                for holder in holders:
                    if holder != at:
                        frames.append(unpack(party.receive(holder, tag="rows")))
        return pd.concat(frames, ignore_index=True)

    def _aggregate(self, task: Task, session: Session) -> AggregateOutput:
        holders = list(task.parties_with_role("data_holder"))
        pooled = self._pool(session, holders, task.recipient)
        with session.phase("compute"):
            out = AggregateOutput(finish_means(local_aggregate(pooled, task), task))
        with session.as_party(task.recipient) as party:
            party.reveal("table", out)
        return out

    def _linkage(self, task: Task, session: Session) -> LinkageOutput:
        other = next(n for n in task.party_names if n != task.recipient)
        theirs = self._pool(session, [other], task.recipient)
        with session.as_party(task.recipient) as party:
            mine = party.data
            with session.phase("compute"):
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
            party.reveal("linkage", out)
        return out

    def _train(self, task: Task, session: Session) -> LogisticModel:
        holders = list(task.parties_with_role("data_holder"))
        pooled = self._pool(session, holders, task.recipient)
        with session.phase("train"):
            model = fit_logistic(
                design_matrix(pooled, task.params["features"]), labels(pooled, task), task
            )
        with session.as_party(task.recipient) as party:
            party.reveal("model", model)
        return model

    def _inference(self, task: Task, session: Session) -> InferenceOutput:
        supplier, provider = task.params["supplier"], task.recipient
        patients = self._pool(session, [provider], supplier)
        with session.as_party(supplier) as party:
            with session.phase("compute"):
                scores = party.data.predict_proba(design_matrix(patients, task.params["features"]))
            party.send(provider, pack(scores), tag="scores")
        with session.as_party(provider) as party:
            out = InferenceOutput(unpack(party.receive(supplier, tag="scores")))
            party.reveal("scores", out)
        return out

    def _release(self, task: Task, session: Session) -> ReleaseOutput:
        (custodian,) = [n for n in task.party_names if n != task.recipient]
        out = ReleaseOutput(self._pool(session, [custodian], task.recipient))
        with session.as_party(task.recipient) as party:
            party.reveal("release", out)
        return out

    def _query(self, task: Task, session: Session) -> QueryOutput:
        (custodian,) = [n for n in task.party_names if n != task.recipient]
        with session.as_party(task.recipient) as party:
            party.send(custodian, pack(list(task.params["queries"])), tag="workload")
        with session.as_party(custodian) as party:
            workload = unpack(party.receive(task.recipient, tag="workload"))
            with session.phase("compute"):
                answers = [answer_query(party.data, q) for q in workload]
            party.send(task.recipient, pack([_jsonable(a) for a in answers]), tag="answers")
        with session.as_party(task.recipient) as party:
            received = unpack(party.receive(custodian, tag="answers"))
            out = QueryOutput(tuple(_from_json(a) for a in received))
            party.reveal("answers", out)
        return out


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
            task_kinds=frozenset({"train"}),
            pet_class=PetClass.BASELINE,
            claim=Claim(
                declared_leakage=("output",),
                formal=False,
                notes="No data leaves the trust; the model itself may still leak its rows.",
            ),
        )

    def run(self, task: Task, session: Session) -> LogisticModel:
        """Fit at one trust and send the model's weights to the recipient."""
        holders = list(task.parties_with_role("data_holder"))
        trust = self.party if self.party is not None else holders[-1]
        if trust not in holders:
            raise UnsupportedTask(
                f"local_only: party {trust!r} holds no data; data holders: {', '.join(holders)}"
            )
        with session.as_party(trust) as party:
            with session.phase("train"):
                model = fit_logistic(
                    design_matrix(party.data, task.params["features"]),
                    labels(party.data, task),
                    task,
                )
            party.send(task.recipient, pack(np.append(model.coef, model.intercept)), tag="model")
        with session.as_party(task.recipient) as party:
            weights = unpack(party.receive(trust, tag="model"))
            out = LogisticModel(
                coef=weights[:-1], intercept=float(weights[-1]), features=model.features
            )
            party.reveal("model", out)
        return out


def _jsonable(answer: float | np.ndarray) -> Any:
    return answer.tolist() if isinstance(answer, np.ndarray) else answer


def _from_json(answer: Any) -> Any:
    if answer is None:
        return None
    return np.asarray(answer, dtype=float) if isinstance(answer, list) else float(answer)
