"""Party runtime benchmarks: ratios measured in the same run, reported, never asserted.

Run: ``python -m pytest tests/benchmarks/test_runtime_bench.py -m slow --benchmark-enable -s -n 0``.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from pets.backends.plaintext import Plaintext
from pets.runtime.harness import PartyLauncher, await_ready, runner_for
from pets.scenarios import build_problem, load_scenario
from pets.tasks import TASK_KINDS

pytestmark = pytest.mark.slow


def _report(benchmark, name: str, **figures: float) -> None:
    benchmark.extra_info.update(figures)
    print(f"\nRATIO {name}: " + ", ".join(f"{k}={v:.4g}" for k, v in figures.items()))


def test_warm_party_start_vs_cold_interpreter(benchmark):
    """Start-up of one party process forked from the warm fork server (fork, hello)
    against a fresh interpreter importing the same runtime."""
    launcher = PartyLauncher()

    def warm() -> float:
        start = time.perf_counter()
        party = launcher.start("p")
        await_ready([party], time.monotonic() + 60)
        elapsed = time.perf_counter() - start
        party.kill()
        return elapsed

    warm()  # the fork server itself starts once per process
    benchmark.pedantic(warm, rounds=5, iterations=1)
    warm_s = float(np.median([warm() for _ in range(20)]))
    cold = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import pets.runtime._party"], check=True)
        cold.append(time.perf_counter() - start)
    cold_s = float(np.median(cold))
    _report(
        benchmark, "party start warm / cold", warm_s=warm_s, cold_s=cold_s, ratio=warm_s / cold_s
    )


def test_plaintext_cell_startup_share(benchmark):
    """How much of a small plaintext aggregate (five parties) is party start-up."""
    problem = build_problem(load_scenario("multi_site_prevalence"), 2_000, seed=0)
    runner = runner_for(Plaintext(), TASK_KINDS["aggregate"].output_type)
    runner.run(problem.task, problem.party_data)
    benchmark.pedantic(lambda: runner.run(problem.task, problem.party_data), rounds=5, iterations=1)
    runs = [runner.run(problem.task, problem.party_data) for _ in range(10)]
    startup = float(np.median([r.startup_s for r in runs]))
    protocol = float(np.median([r.wall_s for r in runs]))
    parties = len(problem.task.parties)
    _report(
        benchmark,
        "plaintext aggregate start-up / protocol",
        startup_s=startup,
        per_party_s=startup / parties,
        protocol_s=protocol,
        ratio=startup / protocol,
    )
