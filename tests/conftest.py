"""Shared fixtures: fresh registries (never a module-level one) and the cards folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pets.registry import Registry
from pets.runtime.harness import runner_for
from pets.scenarios import build_problem, load_scenario
from pets.session import Session
from pets.tasks import TASK_KINDS

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


@pytest.fixture(scope="session", autouse=True)
def warm_party_processes() -> None:
    """Start this test process's fork server once with every built-in backend's module
    preloaded, as a cell's worker does for its one backend, so that party processes
    forked in tests start warm instead of importing their libraries each time."""
    from pets.runtime.harness import PartyLauncher, describe_backends

    registry = Registry.from_entry_points()
    modules = sorted({registry.target(n).split(":", 1)[0] for n in registry.names()})
    describe_backends(PartyLauncher(preload=modules), [])  # starts the fork server


@pytest.fixture
def registry() -> Registry:
    """Installed backends plus the misbehaving test backends, in a fresh registry."""
    return make_registry()


def make_registry() -> Registry:
    """Installed backends plus the misbehaving and intruding test backends."""
    reg = Registry.from_entry_points()
    for name, cls in (
        ("raising", "Raising"),
        ("sleeping", "Sleeping"),
        ("crashing", "Crashing"),
        ("hog", "Hog"),
        ("wrong_output", "WrongOutput"),
        ("unsupporting", "Unsupporting"),
        ("secretly_plain", "SecretlyPlain"),
        ("local_sums", "LocalSums"),
        ("global_setter", "GlobalSetter"),
    ):
        reg.add(name, f"misbehaving:{cls}")
    for name, cls in (
        ("kept_view", "KeptView"),
        ("memory_scan", "MemoryScan"),
        ("forged_view", "ForgedView"),
        ("stack_walk", "StackWalk"),
        ("harness_memory", "HarnessMemory"),
        ("verdict_patcher", "VerdictPatcher"),
        ("file_drop", "FileDrop"),
        ("forged_record", "ForgedRecord"),
    ):
        reg.add(name, f"intruders:{cls}")
    for name, cls in (
        ("copies_verbatim", "CopiesVerbatim"),
        ("copies_reencoded", "CopiesReencoded"),
        ("copies_perturbed", "CopiesPerturbed"),
    ):
        reg.add(name, f"copiers:{cls}")
    return reg


@pytest.fixture
def scenario_dir() -> Path:
    """The repository's scenario cards."""
    return SCENARIOS


def solve_problem(backend: Any, problem: Any) -> tuple:
    """Run ``backend`` on a built problem, each party in its own process (or, for a
    backend in the one-process prototyping style, in this process); return
    ``(output, session)``."""
    kind = TASK_KINDS[problem.task.kind]
    if type(backend).runs_parties():
        run = runner_for(backend, kind.output_type).run(problem.task, problem.party_data)
        return run.output, run.session
    session = Session(problem.task.parties, problem.party_data)
    return backend.run(problem.task, session), session


def solve_card(backend: Any, card_id: str, scenario_dir: Path, size: int, seed: int = 0) -> tuple:
    """Run ``backend`` on one card, each party in its own process (or, for a backend in
    the one-process prototyping style, in this process); return
    ``(output, reference, accuracy, problem, session)``."""
    card = load_scenario(card_id, scenario_dir)
    problem = build_problem(card, size, seed=seed)
    kind = TASK_KINDS[card.kind]
    output, session = solve_problem(backend, problem)
    reference = kind.reference(problem)
    return output, reference, kind.score(output, reference, problem), problem, session


ALL_ATTACKERS = ("A0", "A1", "A2", "A3")


def context_for(
    problem: Any,
    session: Session,
    output: Any,
    factory: Any,
    *,
    attackers: tuple[str, ...] = ALL_ATTACKERS,
    effort: Any = None,
) -> Any:
    """Return an ``AttackContext`` on a finished run: the claim of ``factory()``, a rerun
    oracle building fresh backends from ``factory``, fast effort unless given, seed 0."""
    import numpy as np

    from pets.leakage import EFFORT, AttackContext

    return AttackContext(
        problem=problem,
        session=session,
        output=output,
        claim=factory().capabilities.claim,
        attackers=attackers,
        effort=effort or EFFORT["fast"],
        rng=np.random.default_rng(0),
        rerun=rerun_for(factory),
    )


def rerun_for(factory: Any) -> Any:
    """The rerun oracle of the backends ``factory()`` builds: through the party runtime
    for party programs, in this process for the prototyping style."""
    from pets.leakage import make_rerun

    if type(factory()).runs_parties():
        from pets.tasks import TASK_KINDS

        def rerun(problem: Any) -> Any:
            backend = factory()  # a fresh backend each time, as the worker's oracle
            return runner_for(backend, TASK_KINDS[problem.task.kind].output_type)(problem)

        return rerun
    return make_rerun(factory)


def attack_context(
    backend_cls: Any,
    card_id: str,
    scenario_dir: Path,
    size: int,
    *,
    attackers: tuple[str, ...] = ALL_ATTACKERS,
    effort: Any = None,
    **params: Any,
) -> Any:
    """Run ``backend_cls(**params)`` on a card and return the ``AttackContext`` on it."""
    output, _, _, problem, session = solve_card(backend_cls(**params), card_id, scenario_dir, size)
    return context_for(
        problem,
        session,
        output,
        lambda: backend_cls(**params),
        attackers=attackers,
        effort=effort,
    )


_BENCHMARKS = Path(__file__).resolve().parent / "benchmarks"


#: The test files that take longest, longest first. Run on pytest-xdist workers (``-n 2
#: --dist loadfile --no-loadscope-reorder``), whole files go out in collection order:
#: starting these first leaves no worker a long file at the end.
LONGEST_FIRST = (
    "test_notebooks.py",
    "test_leakage_audit.py",
    "test_leakage_claims.py",
    "test_syft.py",
    "test_testing_kit.py",
    "test_quick_matrix.py",
    "test_report.py",
    "test_leakage_transcript_planted.py",
    "test_leakage_exposure.py",
    "test_report_browser.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/benchmarks is ``slow``: the default suite (whose ``addopts``
    deselects ``slow`` and disables pytest-benchmark) never runs it. Run them with
    ``python -m pytest tests/benchmarks -m slow --benchmark-enable -s -n 0``. The
    :data:`LONGEST_FIRST` files are moved to the front, each in its own order."""
    for item in items:
        if _BENCHMARKS in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.path)).name, len(rank)))
