"""A backend that runs in an environment of its own, for the environment tests.

It declares a requirement the harness's environment does not hold (``tomli-w``) and
imports it only inside its party program, as the harness requires of such backends, so
it can be described here and run only there. Each party reveals the interpreter it ran
under, which the tests compare with the environment ``pets env sync`` built.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

from pets.api import Capabilities, PartyContext
from pets.backends.plaintext import Plaintext

#: Absent from the harness's environment (the tests check it).
REQUIREMENT = "tomli-w==1.2.0"


class OwnEnvProbe(Plaintext):
    """Plaintext, run by party processes that need ``tomli-w``."""

    requirements: tuple[str, ...] = (REQUIREMENT,)

    @property
    def capabilities(self) -> Capabilities:
        """Plaintext's, with the requirement."""
        return replace(super().capabilities, requirements=self.requirements)

    def run_party(self, context: PartyContext) -> Any:
        """Import the requirement, reveal where this party ran, then run plaintext."""
        import numpy
        import tomli_w

        context.reveal(
            "interpreter",
            {
                "prefix": sys.prefix,
                "numpy": numpy.__version__,
                "toml": tomli_w.dumps({"ran": True}).strip(),
            },
        )
        return super().run_party(context)


class OwnEnvProbeUpgraded(OwnEnvProbe):
    """The same backend after its requirements changed."""

    requirements = ("tomli-w==1.1.0",)


class OwnEnvOldNumpy(OwnEnvProbe):
    """The same backend pinned to numpy 1.24, as PySyft 0.9.5 pins it."""

    requirements = ("numpy==1.24.4", REQUIREMENT)
