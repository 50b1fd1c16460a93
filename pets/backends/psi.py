"""``psi-ecdh``: private set intersection by elliptic-curve Diffie-Hellman (openmined-psi).

The recipient is the PSI client, the other holder the server. The client sends its
eligible identifiers, each blinded with its secret exponent; the server returns them
blinded again with its own, plus its own identifiers blinded once (a raw list, a Golomb
compressed set or a Bloom filter). The client removes its blinding and compares: it
learns which of its identifiers are in both sets (``intersection``) or only how many
(``cardinality``). Both sides learn the other's set size. When the card asks for
statistics over the other holder's columns, the client sends the matched identifiers
to that holder, which computes and returns them: the holder then learns the
intersection too, and the claim says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pets.api import (
    Backend,
    Capabilities,
    Claim,
    LinkageOutput,
    PartyContext,
    PetClass,
    SecurityModel,
    Task,
    UnsupportedTask,
)
from pets.tasks import eligible, link_statistics
from pets.wire import pack, unpack

__all__ = ["PsiEcdh"]

_STRUCTURES = ("raw", "gcs", "bloom")


class PsiEcdh(Backend):
    """ECDH private set intersection with openmined-psi.

    Parameters
    ----------
    data_structure : {"raw", "gcs", "bloom"}
        How the server's blinded set is sent: a raw list (exact), a Golomb-compressed
        set or a Bloom filter (smaller, with false positives).
    fpr : float
        False-positive rate asked of the compressed set structures, for the whole
        request. openmined-psi 2.0.6's Bloom filter does not keep it: with 1,000
        client items and 22 true matches, 40 of 2,000 runs at ``fpr=1e-9`` counted
        one extra match, so ``"bloom"`` can over-count by one now and then.
    """

    def __init__(self, *, data_structure: str = "raw", fpr: float = 1e-9) -> None:
        self.data_structure = data_structure
        self.fpr = fpr

    @property
    def capabilities(self) -> Capabilities:
        """Serves ``linkage``; set sizes and the intersection size always leak."""
        if self.data_structure not in _STRUCTURES:
            raise ValueError(
                f"data_structure {self.data_structure!r}; allowed: {', '.join(_STRUCTURES)}"
            )
        if not 0 < self.fpr < 1:
            raise ValueError(f"fpr must be in (0, 1), got {self.fpr!r}")
        return Capabilities(
            deterministic=True,
            task_kinds=frozenset({"linkage"}),
            pet_class=PetClass.PSI,
            claim=Claim(
                security_bits=128,
                security_model=SecurityModel.SEMI_HONEST,
                collusion_threshold=1,
                declared_leakage=(
                    "set sizes",
                    "intersection cardinality",
                    "output",
                    "intersection to the statistics holder",
                ),
                formal=True,
                notes="ECDH on P-256 (128-bit) under the decisional Diffie-Hellman "
                "assumption; each side learns the other's set size, and the cardinality "
                "leaks even in cardinality mode. Statistics over the other holder's "
                "columns are computed by that holder on the matched identifiers, so it "
                "learns the intersection as well.",
            ),
            extra="mpc",
        )

    def run_party(self, context: PartyContext) -> LinkageOutput | None:
        """Link the two holders' eligible identifiers by PSI: the recipient runs the
        client, the other holder the server."""
        import private_set_intersection.python as psi

        task = context.task
        if task.kind != "linkage":
            raise UnsupportedTask(f"psi-ecdh serves linkage, not {task.kind}")
        self.capabilities  # noqa: B018  (validates the parameters)
        client_name = task.recipient
        (server_name,) = [n for n in task.party_names if n != client_name]
        reveal = task.params["reveal"] == "intersection"
        stats_there = [s for s in task.params["statistics"] if s["party"] == server_name]
        if stats_there and not reveal:
            raise UnsupportedTask(
                "psi-ecdh in cardinality mode cannot give statistics over the other "
                "holder's columns without revealing the matches to it"
            )
        if context.name == server_name:
            self._server(context, psi, client_name, reveal=reveal, stats=bool(stats_there))
            return None
        if context.name != client_name:
            return None
        return self._client(context, psi, server_name, reveal=reveal, stats=bool(stats_there))

    def _server(
        self, context: PartyContext, psi: Any, client_name: str, *, reveal: bool, stats: bool
    ) -> None:
        """Blind the client's request again, send the own set blinded once and, when the
        card asks for statistics over this holder's columns, compute them on the matched
        identifiers the client sends back."""
        task = context.task
        structure = {
            "raw": psi.DataStructure.RAW,
            "gcs": psi.DataStructure.GCS,
            "bloom": psi.DataStructure.BLOOM_FILTER,
        }[self.data_structure]
        theirs = eligible(context.data, task, context.name)
        their_items = [str(v) for v in theirs[task.params["id_column"]].to_numpy()]
        with context.phase("setup"):
            server = psi.server.CreateWithNewKey(reveal)
        received = psi.Request()
        received.ParseFromString(context.receive(client_name, tag="psi-request"))
        with context.phase("encrypt"):
            setup = server.CreateSetupMessage(
                self.fpr, len(received.encrypted_elements), their_items, structure
            ).SerializeToString()
        with context.phase("compute"):
            response = server.ProcessRequest(received).SerializeToString()
        context.send(client_name, setup, tag="psi-setup")
        context.send(client_name, response, tag="psi-response")
        if stats:
            asked = unpack(context.receive(client_name, tag="matched-ids"))
            with context.phase("compute"):
                answer = link_statistics({context.name: theirs}, asked, task, party=context.name)
            context.send(client_name, pack(answer), tag="statistics")

    def _client(
        self, context: PartyContext, psi: Any, server_name: str, *, reveal: bool, stats: bool
    ) -> LinkageOutput:
        """Send the blinded request, finish the intersection (or its size) and, when
        asked, fetch the statistics over the server's columns."""
        task = context.task
        id_column = task.params["id_column"]
        mine = eligible(context.data, task, context.name)
        items = [str(v) for v in mine[id_column].to_numpy()]
        with context.phase("setup"):
            client = psi.client.CreateWithNewKey(reveal)
        with context.phase("encrypt"):
            request = client.CreateRequest(items).SerializeToString()
        context.send(server_name, request, tag="psi-request")
        server_setup, server_response = psi.ServerSetup(), psi.Response()
        server_setup.ParseFromString(context.receive(server_name, tag="psi-setup"))
        server_response.ParseFromString(context.receive(server_name, tag="psi-response"))
        with context.phase("decrypt"):
            if reveal:
                rows = np.asarray(
                    sorted(client.GetIntersection(server_setup, server_response)), dtype=int
                )
                matches = mine[id_column].to_numpy()[rows]
                cardinality = len(matches)
            else:
                matches = np.zeros(0, dtype=np.int64)
                cardinality = int(client.GetIntersectionSize(server_setup, server_response))
        statistics = link_statistics({context.name: mine}, matches, task, party=context.name)
        if stats:
            context.send(server_name, pack(matches.astype(np.int64)), tag="matched-ids")
            statistics.update(unpack(context.receive(server_name, tag="statistics")))
        out = LinkageOutput(
            matches=frozenset(int(v) for v in matches) if reveal else None,
            cardinality=cardinality,
            statistics={s: statistics[s] for s in _ordered(task, statistics)},
        )
        context.reveal("linkage", out)
        return out


def _ordered(task: Task, statistics: dict[str, float]) -> list[str]:
    names = [f"{s['column']}_{s['stat']}" for s in task.params["statistics"]]
    return [n for n in names if n in statistics]
