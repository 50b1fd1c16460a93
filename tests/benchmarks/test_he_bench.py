"""HE benchmarks: ratios measured in the same run, reported, never asserted.

Run: ``python -m pytest tests/benchmarks/test_he_bench.py -m slow --benchmark-enable -s -n 0``.
Each test prints one ``RATIO`` line and stores the figures in pytest-benchmark's
``extra_info`` (``--benchmark-json FILE`` keeps them).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from pets.backends.he.ckks import TensealCKKS
from pets.backends.he.paillier import Paillier
from pets.runtime.harness import PartyLauncher, ProtocolRun, runner_for
from pets.scenarios import build_problem, load_scenario
from pets.tasks import TASK_KINDS, AggregateOutput, finish_means, local_aggregate, sums_from_vector

pytestmark = pytest.mark.slow


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _problem(size: int):
    return build_problem(load_scenario("multi_site_prevalence"), size, seed=0)


def _run(backend, problem) -> ProtocolRun:
    """Run the backend's party programs, each party in its own process (``wall_s`` is
    what the harness times as the cell's cost: from handing each party its input to the
    last party's end, process start-up excluded)."""
    launcher = PartyLauncher(preload=[type(backend).__module__])
    return runner_for(backend, AggregateOutput, launcher=launcher).run(
        problem.task, problem.party_data
    )


def _best_wall(backend, problem, repeat: int = 3) -> float:
    return min(_run(backend, problem).wall_s for _ in range(repeat))


def _check(backend, problem) -> None:
    out = _run(backend, problem).output
    kind = TASK_KINDS["aggregate"]
    assert kind.score(out, kind.reference(problem), problem).metrics["max_relative_error"] < 1e-6


def _report(benchmark, name: str, **figures: float) -> None:
    benchmark.extra_info.update(figures)
    print(f"\nRATIO {name}: " + ", ".join(f"{k}={v:.4g}" for k, v in figures.items()))


def test_ckks_packed_vs_one_value_per_ciphertext(benchmark):
    problem = _problem(20_000)
    _check(TensealCKKS(), problem)
    _check(TensealCKKS(pack=False), problem)
    naive = _best_wall(TensealCKKS(pack=False), problem, repeat=1)
    packed = benchmark.pedantic(lambda: _run(TensealCKKS(), problem), rounds=3, iterations=1)
    packed_s = _best_wall(TensealCKKS(), problem)
    _report(
        benchmark,
        "ckks packed vs naive",
        packed_s=packed_s,
        naive_s=naive,
        speedup=naive / packed_s,
        bytes_ratio=_run(TensealCKKS(pack=False), problem).session.meter().bytes_total
        / packed.session.meter().bytes_total,
    )


def test_paillier_packed_gmpy2_vs_per_value_phe(benchmark):
    problem = _problem(20_000)
    _check(Paillier(), problem)
    naive = _best_wall(Paillier(pack=False), problem, repeat=1)
    benchmark.pedantic(lambda: _run(Paillier(), problem), rounds=3, iterations=1)
    packed_s = _best_wall(Paillier(), problem)
    _report(
        benchmark,
        "paillier packed+gmpy2 vs per-value phe",
        packed_s=packed_s,
        naive_s=naive,
        speedup=naive / packed_s,
    )


@pytest.mark.parametrize("backend", [TensealCKKS(), Paillier()], ids=["ckks", "paillier"])
def test_secure_aggregate_of_a_million_vs_pandas_groupby(benchmark, backend):
    problem = _problem(1_000_000)
    task = problem.task
    pooled = pd.concat(list(problem.party_data.values()), ignore_index=True)
    _check(backend, problem)
    plain_s = _best(lambda: finish_means(local_aggregate(pooled, task), task))
    benchmark.pedantic(lambda: _run(backend, problem), rounds=3, iterations=1)
    secure_s = _best_wall(backend, problem)
    _report(
        benchmark,
        f"{type(backend).__name__} secure aggregate 1M / pandas groupby",
        secure_s=secure_s,
        groupby_s=plain_s,
        ratio=secure_s / plain_s,
    )


def test_harness_overhead_vs_direct_library_calls(benchmark):
    """The CKKS aggregate through the party runtime (one process per party, each handed
    its own rows, messages carried and metered by the harness) against the same TenSEAL
    calls scripted in one process with no channel, no phases and no metering: each party
    still loads the public context it is sent, as separate machines must."""
    import tenseal as ts

    problem = _problem(1_000_000)
    task = problem.task
    holders = task.parties_with_role("data_holder")
    backend = TensealCKKS()
    scheme = backend.scheme("aggregate")

    def direct() -> pd.DataFrame:
        context = ts.context(ts.SCHEME_TYPE.CKKS, scheme.degree, coeff_mod_bit_sizes=scheme.chain)
        context.global_scale = 2.0**scheme.scale_bits
        public = context.serialize(save_secret_key=False)
        shares = []
        for holder in holders:
            own = ts.context_from(public)
            vector = local_aggregate(problem.party_data[holder], task).to_numpy().ravel()
            shares.append(ts.ckks_vector(own, vector.tolist()).serialize())
        aggregator = ts.context_from(public)
        total = ts.ckks_vector_from(aggregator, shares[0])
        for share in shares[1:]:
            total += ts.ckks_vector_from(aggregator, share)
        sums = np.array(ts.ckks_vector_from(context, total.serialize()).decrypt())
        return finish_means(sums_from_vector(sums, task), task)

    _check(backend, problem)
    benchmark.pedantic(lambda: _run(backend, problem), rounds=5, iterations=1)
    direct_times, harness_times = [], []
    for _ in range(9):  # interleaved, so drift of the machine hits both alike
        direct_times.append(_best(direct, repeat=1))
        harness_times.append(_run(backend, problem).wall_s)
    direct_s, harness_s = float(np.median(direct_times)), float(np.median(harness_times))
    _report(
        benchmark,
        "harness overhead",
        harness_s=harness_s,
        direct_s=direct_s,
        overhead=harness_s / direct_s - 1,
    )
