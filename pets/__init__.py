"""PETs Sandbox: compare privacy-enhancing technologies on health data-sharing scenarios.

The harness, never the backend, measures accuracy (against the plaintext answer),
cost (time by phase, memory, bytes and rounds between parties) and leakage (the
backend's claim plus attacks on what each attacker observes).

>>> import pets
>>> frame = pets.run(["multi_site_prevalence"], ["plaintext"], quick=True)  # doctest: +SKIP
"""

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
