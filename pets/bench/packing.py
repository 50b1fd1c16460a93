"""Packed against naive: the same secure sum with every plaintext filled, and with one
value per ciphertext or secure object.

* ``ckks_packing``: TenSEAL CKKS through the ``tenseal-ckks`` backend's own scheme
  (:meth:`pets.backends.he.ckks.TensealCKKS.scheme`): four holders each encrypt a vector,
  an aggregator adds the ciphertexts, the key holder decrypts; one ciphertext per vector
  of ``degree / 2`` slots against one ciphertext per value (``pack=False``).
* ``paillier_packing``: the same sum through the ``paillier`` backend's scheme
  (python-paillier and gmpy2): fixed-point values packed many to a plaintext with raw
  encryption and ciphertexts multiplied mod n², against phe's ``EncryptedNumber`` per
  value (``pack=False``).
* ``mpyc_vectorised``: the ``mpyc`` backend's secure sum (its ``compute`` phase) on the
  aggregate card, parties in their own processes: secure arrays against one secure
  integer per value and ``mpc.sum`` per cell (``vectorised=False``).

Both sides' results are checked equal to the clear sum, so a faster side cannot be a
wrong one.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from pets.bench.measures import BenchSettings, Measurement, Side, Skipped, time_interleaved

__all__ = ["ckks_packing", "mpyc_vectorised", "paillier_packing"]

#: Data holders in the packed-versus-naive sums (the aggregate card's four nations).
HOLDERS = 4


def _missing(name: str, *libraries: str) -> Skipped | None:
    absent = [lib for lib in libraries if importlib.util.find_spec(lib) is None]
    return Skipped(name, f"{', '.join(absent)} not installed") if absent else None


class _SecureSum:
    """A secure sum with one of the HE backends' schemes: keys made once (untimed)."""

    def __init__(self, scheme: Any, vectors: list[np.ndarray]) -> None:
        self.scheme = scheme
        self.vectors = vectors
        self.secret, self.public_bytes = scheme.keygen()

    def __call__(self) -> np.ndarray:
        scheme = self.scheme
        public = scheme.load_public(self.public_bytes)
        ciphertexts = [scheme.encrypt(public, v) for v in self.vectors]
        total = scheme.add(public, ciphertexts)
        return scheme.decrypt(self.secret, total, len(self.vectors[0]), len(self.vectors))


def _vectors(settings: BenchSettings) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [np.round(rng.uniform(0, 100, settings.he_values), 3) for _ in range(HOLDERS)]


def _packed_vs_naive(
    name: str, packed: _SecureSum, naive: _SecureSum, settings: BenchSettings, note: str
) -> Measurement:
    expected = np.sum(packed.vectors, axis=0)
    for side in (packed, naive):
        got = np.asarray(side(), dtype=np.float64)
        if not np.allclose(got, expected, rtol=1e-4, atol=1e-3):
            raise AssertionError(f"{name}: a secure sum differs from the clear sum")
    naive_s, packed_s = time_interleaved(naive, packed, settings.repeats, warm_up=False)
    return Measurement(
        name,
        Side("one ciphertext per value", tuple(naive_s)),
        Side("packed", tuple(packed_s)),
        size=settings.he_values,
        figures={"holders": HOLDERS, "values_per_holder": settings.he_values},
        note=note,
    )


def ckks_packing(settings: BenchSettings) -> list[Measurement | Skipped]:
    """CKKS secure sum, one ciphertext per value / packed slots (>1: packing pays)."""
    missing = _missing("ckks_packing", "tenseal")
    if missing:
        return [missing]
    from pets.backends.he.ckks import TensealCKKS

    vectors = _vectors(settings)
    packed = _SecureSum(TensealCKKS().scheme("aggregate"), vectors)
    naive = _SecureSum(TensealCKKS(pack=False).scheme("aggregate"), vectors)
    return [
        _packed_vs_naive(
            "ckks_packing",
            packed,
            naive,
            settings,
            "CKKS encrypt, add, decrypt: one value per ciphertext / all values in slots",
        )
    ]


def paillier_packing(settings: BenchSettings) -> list[Measurement | Skipped]:
    """Paillier secure sum, phe per value / packed raw encryption with gmpy2."""
    missing = _missing("paillier_packing", "phe", "gmpy2")
    if missing:
        return [missing]
    from pets.backends.he.paillier import Paillier

    vectors = _vectors(settings)
    packed = _SecureSum(Paillier().scheme("aggregate"), vectors)
    naive = _SecureSum(Paillier(pack=False).scheme("aggregate"), vectors)
    return [
        _packed_vs_naive(
            "paillier_packing",
            packed,
            naive,
            settings,
            "Paillier (2048-bit n) encrypt, add, decrypt: phe EncryptedNumber per value / "
            "64-bit slots packed per plaintext",
        )
    ]


def mpyc_vectorised(settings: BenchSettings) -> list[Measurement | Skipped]:
    """MPyC secure sum on the aggregate card: per element / secure arrays."""
    missing = _missing("mpyc_vectorised", "mpyc")
    if missing:
        return [missing]
    from pets.backends.mpc import Mpyc
    from pets.runtime.harness import runner_for
    from pets.scenarios import build_problem, load_scenario
    from pets.tasks import TASK_KINDS, AggregateOutput

    problem = build_problem(load_scenario(settings.scenario), settings.cell_size, 0)
    kind = TASK_KINDS["aggregate"]
    reference = kind.reference(problem)
    whole: dict[bool, list[float]] = {True: [], False: []}

    def secure_sum(vectorised: bool) -> float:
        run = runner_for(Mpyc(vectorised=vectorised), AggregateOutput).run(
            problem.task, problem.party_data
        )
        error = kind.score(run.output, reference, problem).metrics["max_relative_error"]
        if not error < 1e-9:
            raise AssertionError("mpyc_vectorised: the secure sum differs from the clear one")
        whole[vectorised].append(run.wall_s)
        return float(run.session.phase_times()["compute"]["wall_s"])

    per_element, vectorised = [], []
    for _ in range(settings.repeats):
        per_element.append(secure_sum(False))
        vectorised.append(secure_sum(True))
    return [
        Measurement(
            "mpyc_vectorised",
            Side("one secure integer per value, mpc.sum per cell", tuple(per_element)),
            Side("secure arrays", tuple(vectorised)),
            size=settings.cell_size,
            figures={
                "whole_run_per_element_s": float(np.median(whole[False])),
                "whole_run_vectorised_s": float(np.median(whole[True])),
            },
            note="the compute phase (secure sum, slowest party) of the mpyc aggregate, "
            "per element / vectorised",
        )
    ]
