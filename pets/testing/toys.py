"""Toy problems for the conformance kit: one small problem per task kind.

Each toy is built from one of the repository's scenario cards (its parties, split and
task parameters) with few patients, so that a backend's party programs run through the
real party runtime in about a second. The same (kind, seed) always gives the same toy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pets.scenarios import Scenario, build_problem, load_scenario
from pets.tasks import TASK_KINDS, Problem

__all__ = ["TOY_CARDS", "TOY_SIZES", "ToyShelf", "toy_card"]

#: The scenario card each task kind's toy is built from.
TOY_CARDS: dict[str, str] = {
    "aggregate": "multi_site_prevalence",
    "linkage": "trial_recruitment_linkage",
    "train": "federated_risk_model",
    "inference": "encrypted_supplier_inference",
    "release": "research_data_release",
    "query": "tre_queries",
}

#: Patients generated per toy (before a card's filter and holdout).
TOY_SIZES: dict[str, int] = {
    "aggregate": 1500,
    "linkage": 1500,
    "train": 2000,
    "inference": 1500,
    "release": 600,
    "query": 800,
}


def toy_card(kind: str, directory: Path | None = None) -> Scenario:
    """Return the validated scenario card the toy of ``kind`` is built from.

    Raises
    ------
    KeyError
        ``kind`` is not a task kind (the message lists the kinds).
    """
    if kind not in TOY_CARDS:
        raise KeyError(f"no toy for task kind {kind!r}; kinds: {', '.join(sorted(TOY_CARDS))}")
    return load_scenario(TOY_CARDS[kind], directory)


@dataclass
class ToyShelf:
    """Builds each toy problem once and hands out the same one again.

    Parameters
    ----------
    seed : int
        Seed of every toy's data.
    directory : Path, optional
        Where the scenario cards are (default: :func:`pets.scenarios.default_scenario_dir`).
    """

    seed: int = 0
    directory: Path | None = None
    _problems: dict[str, Problem] = field(default_factory=dict, init=False, repr=False)
    _cards: dict[str, Scenario] = field(default_factory=dict, init=False, repr=False)

    def card(self, kind: str) -> Scenario:
        """The card of the toy of ``kind``."""
        if kind not in self._cards:
            self._cards[kind] = toy_card(kind, self.directory)
        return self._cards[kind]

    def problem(self, kind: str) -> Problem:
        """The toy problem of ``kind`` (built on first use)."""
        if kind not in self._problems:
            self._problems[kind] = build_problem(self.card(kind), TOY_SIZES[kind], self.seed)
        return self._problems[kind]

    def output_type(self, kind: str) -> Any:
        """The output type a backend must return for ``kind``."""
        return TASK_KINDS[kind].output_type
