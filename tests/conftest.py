"""Shared fixtures: fresh registries (never a module-level one) and the cards folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from pets.registry import Registry

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
CARD_IDS = (
    "multi_site_prevalence",
    "trial_recruitment_linkage",
    "federated_risk_model",
    "encrypted_supplier_inference",
    "research_data_release",
    "tre_queries",
)


@pytest.fixture
def registry() -> Registry:
    """Installed backends plus the misbehaving test backends, in a fresh registry."""
    reg = Registry.from_entry_points()
    for name, cls in (
        ("raising", "Raising"),
        ("sleeping", "Sleeping"),
        ("crashing", "Crashing"),
        ("hog", "Hog"),
        ("peeking", "Peeking"),
        ("wrong_output", "WrongOutput"),
        ("unsupporting", "Unsupporting"),
        ("secretly_plain", "SecretlyPlain"),
        ("local_sums", "LocalSums"),
    ):
        reg.add(name, f"misbehaving:{cls}")
    return reg


@pytest.fixture
def scenario_dir() -> Path:
    """The repository's scenario cards."""
    return SCENARIOS
