"""PETs Sandbox: compare privacy-enhancing technologies on health data-sharing scenarios.

The harness, never the backend, measures accuracy (against the plaintext answer),
cost (time by phase, memory, bytes and rounds between parties) and leakage (the
backend's claim plus attacks on what each attacker observes).

Importing ``pets`` is light: the runner, the scenario cards and the backend registry
(and with them pandas, pyarrow and scikit-learn) are imported on first use of
:func:`run`, :func:`load_scenario`, :class:`Scenario` or :class:`Registry`.

>>> import pets
>>> frame = pets.run(["multi_site_prevalence"], ["plaintext"], quick=True)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pets.api import Backend, Capabilities, Claim, PetClass, SecurityModel, UnsupportedTask

if TYPE_CHECKING:
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
    "Registry": "pets.registry",
    "Scenario": "pets.scenarios",
    "load_scenario": "pets.scenarios",
    "run": "pets.runner",
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
