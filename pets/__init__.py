"""PETs Sandbox: compare privacy-enhancing technologies on health data-sharing scenarios.

The harness, never the backend, measures accuracy (against the plaintext answer),
cost (time by phase, memory, bytes and rounds between parties) and leakage (the
backend's claim plus attacks on what each attacker observes).

The names below are served on first use, so a party process imports only what its
program needs (``pets.api`` and the party runtime: numpy, pandas and pyarrow), which
lets it run in a backend's own environment beside other versions of the harness's
libraries (see docs/environments.md).

>>> import pets
>>> frame = pets.run(["multi_site_prevalence"], ["plaintext"], quick=True)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pets.api import Backend, Capabilities, Claim, PetClass, SecurityModel, UnsupportedTask
    from pets.registry import Registry
    from pets.runner import run
    from pets.scenarios import Scenario, load_scenario

__all__ = [
    "Backend",
    "Capabilities",
    "Claim",
    "PetClass",
    "Registry",
    "Scenario",
    "SecurityModel",
    "UnsupportedTask",
    "__version__",
    "load_scenario",
    "run",
]

__version__ = "0.1.0"

#: Names served on first use, with the module that defines each.
_LAZY = {
    "Backend": "pets.api",
    "Capabilities": "pets.api",
    "Claim": "pets.api",
    "PetClass": "pets.api",
    "SecurityModel": "pets.api",
    "UnsupportedTask": "pets.api",
    "Registry": "pets.registry",
    "run": "pets.runner",
    "Scenario": "pets.scenarios",
    "load_scenario": "pets.scenarios",
}


def __getattr__(name: str) -> Any:
    """Import the module behind a lazy name on first use and keep the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pets' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
