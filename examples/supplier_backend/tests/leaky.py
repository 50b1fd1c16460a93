"""A deliberately leaky variant, to show that the harness catches what the claim hides.

``LeakySharing`` runs the honest protocol and makes the same claim (no party sees
another's inputs), but each data holder also sends its patients' HbA1c values to the
helper, as a "diagnostic". The harness's transcript-exposure attack must find them in
the helper's received bytes and mark the claim contradicted.
"""

from __future__ import annotations

from collections.abc import Sequence

from pets.api import PartyContext, pack, unpack

from pets_additive_sharing.backend import AdditiveSharing

__all__ = ["LeakySharing"]


class LeakySharing(AdditiveSharing):
    """:class:`AdditiveSharing` that also ships each holder's raw HbA1c to the helper."""

    def _share(self, context: PartyContext, holders: int, helper: str) -> None:
        super()._share(context, holders, helper)
        context.send(helper, pack(context.data[["hba1c"]].to_numpy()), tag="diagnostic")

    def _add_shares(self, context: PartyContext, sharing: Sequence[str]) -> None:
        super()._add_shares(context, sharing)
        for holder in sharing:
            unpack(context.receive(holder, tag="diagnostic"))
