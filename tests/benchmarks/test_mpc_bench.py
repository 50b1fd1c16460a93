"""MPC and PSI benchmarks: ratios measured in the same run, reported, never asserted.

Run: ``python -m pytest tests/benchmarks/test_mpc_bench.py -m slow --benchmark-enable -s -n 0``.
Each test prints one ``RATIO`` line and stores the figures in pytest-benchmark's
``extra_info``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from pets.backends.mpc import Mpyc
from pets.runtime.harness import runner_for
from pets.scenarios import build_problem, load_scenario
from pets.session import Session
from pets.tasks import TASK_KINDS, AggregateOutput

pytestmark = pytest.mark.slow


def _report(benchmark, name: str, **figures: float) -> None:
    benchmark.extra_info.update(figures)
    print(f"\nRATIO {name}: " + ", ".join(f"{k}={v:.4g}" for k, v in figures.items()))


def _mpc_aggregate(backend: Mpyc, problem) -> tuple[float, float, Session]:
    """Return (secure sum seconds at the slowest party, whole run seconds, session);
    the whole run is from the parties' start to the last one's end, process start
    excluded."""
    run = runner_for(backend, AggregateOutput).run(problem.task, problem.party_data)
    kind = TASK_KINDS["aggregate"]
    score = kind.score(run.output, kind.reference(problem), problem)
    assert score.metrics["max_relative_error"] < 1e-9
    return run.session.phase_times()["compute"]["wall_s"], run.wall_s, run.session


def test_mpyc_vectorised_vs_per_element(benchmark):
    problem = build_problem(load_scenario("multi_site_prevalence"), 20_000, seed=0)
    per_element, per_element_whole, _ = _mpc_aggregate(Mpyc(vectorised=False), problem)
    runs = [_mpc_aggregate(Mpyc(), problem) for _ in range(3)]
    benchmark.pedantic(lambda: _mpc_aggregate(Mpyc(), problem), rounds=1, iterations=1)
    vectorised = min(r[0] for r in runs)
    vectorised_whole = min(r[1] for r in runs)
    _report(
        benchmark,
        "mpyc vectorised vs per-element (secure sum)",
        messages=float(runs[0][2].meter().messages),
        vectorised_s=vectorised,
        per_element_s=per_element,
        speedup=per_element / vectorised,
        whole_run_vectorised_s=vectorised_whole,
        whole_run_per_element_s=per_element_whole,
    )


@pytest.mark.parametrize("structure", ["raw", "gcs"])
def test_psi_2_16_by_2_16(benchmark, structure):
    import private_set_intersection.python as psi

    rng = np.random.default_rng(0)
    n = 2**16
    universe = rng.choice(10**10, size=2 * n, replace=False)
    client_items = [str(v) for v in universe[:n]]
    server_items = [str(v) for v in universe[n // 2 : n // 2 + n]]  # half overlap
    kind = {"raw": psi.DataStructure.RAW, "gcs": psi.DataStructure.GCS}[structure]

    def once() -> tuple[int, int]:
        client = psi.client.CreateWithNewKey(True)
        server = psi.server.CreateWithNewKey(True)
        request = client.CreateRequest(client_items)
        setup = server.CreateSetupMessage(1e-9, n, server_items, kind)
        response = server.ProcessRequest(request)
        found = client.GetIntersection(setup, response)
        sent = sum(len(m.SerializeToString()) for m in (request, setup, response))
        return len(found), sent

    start = time.perf_counter()
    found, sent = once()
    seconds = time.perf_counter() - start
    assert found == n // 2
    benchmark.pedantic(once, rounds=1, iterations=1)
    _report(
        benchmark,
        f"psi-ecdh {structure} 2^16 x 2^16",
        seconds=seconds,
        items_per_s=2 * n / seconds,
        megabytes=sent / 1e6,
    )
