"""``synth-dp``: differentially private synthetic data by the MST method.

MST (McKenna, Miklau and Sheldon, 2021) measures marginals with Gaussian noise, picks
which pairs of columns to measure by a private maximum spanning tree, fits a graphical
model to the noisy measurements and samples rows from it. Here:

1. Every column is coded from public facts only (declared categories, public bounds;
   :mod:`pets.backends.synth.coding`).
2. One third of the budget measures all 1-way marginals together (L2 sensitivity
   ``sqrt(d)`` for ``d`` columns: a patient sits in one cell of each).
3. Codes whose noisy count is below three noise standard deviations are merged into one
   code per column (post-processing of step 2).
4. One third selects ``d - 1`` pairs, a spanning tree built edge by edge: each step is
   OpenDP's report-noisy-max over the pairs that join two parts of the tree, scored by
   how far the pair's true 2-way counts are from the independent estimate made from
   step 2 (L-infinity sensitivity 1).
5. One third measures the selected 2-way marginals (L2 sensitivity ``sqrt(d - 1)``).
6. ``mbi`` (private-pgm) estimates a Markov random field from all noisy measurements by
   mirror descent, and samples the release from it; a merged code is spread back over
   its original codes in proportion to their noisy counts, and codes are decoded to
   values.

All measurements run through one OpenDP adaptive compositor under zero-concentrated DP
that holds exactly the planned rho per step and refuses anything more; the total rho is
converted to (epsilon, delta) by OpenDP for the claim. The number of rows released is
the model's estimate of the total, itself from the noisy measurements.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from pets.api import Capabilities, Claim, PetClass, Task
from pets.backends.randomness import OPENDP_NOISE
from pets.backends.release import TableRelease
from pets.backends.synth.coding import ColumnCoding, decode_table, encode_table, public_codings
from pets.backends.synth.jax_setup import import_mbi

__all__ = ["SynthDP", "mst_synthesise"]


class _Forest:
    """Union-find over column indices, for building the spanning tree."""

    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def root(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, i: int, j: int) -> None:
        self.parent[self.root(i)] = self.root(j)


def _counts(codes: pd.DataFrame, clique: tuple[str, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Exact contingency counts of ``clique`` (flattened, C order)."""
    flat = np.ravel_multi_index([codes[c].to_numpy() for c in clique], shape)
    return np.bincount(flat, minlength=int(np.prod(shape))).astype(np.float64)


def mst_synthesise(
    frame: pd.DataFrame,
    codings: list[ColumnCoding],
    *,
    rho: float,
    iters: int,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Synthesise a table from ``frame`` under ``rho``-zCDP (add/remove one row).

    Parameters
    ----------
    frame : DataFrame
        The real rows.
    codings : list of ColumnCoding
        Public codings of the columns to synthesise.
    rho : float
        Total zCDP budget.
    iters : int
        Mirror-descent iterations of the model estimate.
    rng : numpy.random.Generator
        Drives sampling from the fitted model (post-processing only; OpenDP draws the
        noise).

    Returns
    -------
    (DataFrame, dict)
        The synthetic table and facts about the run (pairs selected, codes merged,
        rows, and ``rho``, the total OpenDP's compositor accounts for). The facts hold
        no data values.
    """
    from pets.backends.dp.opendp_ops import (
        gaussian_release,
        noisy_max_release,
        statistic,
        zcdp_compositor,
    )

    mbi = import_mbi()
    names = [c.name for c in codings]
    sizes = {c.name: c.size for c in codings}
    d = len(names)
    coded = encode_table(frame, codings)
    steps = d - 1
    rho_one = rho / 3 if steps else rho
    plan = [rho_one] + ([rho / (3 * steps)] * steps + [rho / 3] if steps else [])
    composition = zcdp_compositor(plan)
    queryable = composition(coded)

    # 2. every 1-way marginal at once
    def one_way(table: pd.DataFrame) -> np.ndarray:
        return np.concatenate([_counts(table, (n,), (sizes[n],)) for n in names])

    measurement, sigma_one = gaussian_release(statistic(one_way, math.sqrt(d), "l2"), rho_one)
    noisy = np.asarray(queryable(measurement), dtype=np.float64)
    split = np.cumsum([sizes[n] for n in names])[:-1]
    noisy_one = dict(zip(names, np.split(noisy, split), strict=True))

    # 3. merge rare codes (decided from noisy counts only)
    mapping: dict[str, np.ndarray] = {}
    for n in names:
        rare = noisy_one[n] < 3 * sigma_one
        if rare.sum() >= 2:
            keep = np.cumsum(~rare) - 1
            merged_code = int((~rare).sum())
            mapping[n] = np.where(rare, merged_code, keep).astype(np.int64)
    full_domain = mbi.Domain(names, [sizes[n] for n in names])
    small = {n: int(mapping[n].max()) + 1 if n in mapping else sizes[n] for n in names}
    domain = mbi.Domain(names, [small[n] for n in names])

    def compress(table: pd.DataFrame) -> pd.DataFrame:
        return table.assign(**{n: mapping[n][table[n].to_numpy()] for n in mapping})

    measurements = [
        mbi.LinearMeasurement(noisy_one[n], (n,), stddev=sigma_one).compress(mapping, full_domain)
        for n in names
    ]

    # 4. a spanning tree of pairs, one private selection per edge
    total = max(float(noisy_one[names[0]].sum()), 1.0)
    probability = {}
    for n, counts in _compressed_one_way(noisy_one, mapping, small).items():
        positive = np.clip(counts, 0.0, None)
        probability[n] = positive / max(positive.sum(), 1e-12)
    forest = _Forest(d)
    chosen: list[tuple[str, str]] = []
    pairs = list(itertools.combinations(range(d), 2))
    for _ in range(steps):
        candidates = [(i, j) for i, j in pairs if forest.root(i) != forest.root(j)]
        estimates = [
            np.outer(probability[names[i]], probability[names[j]]).ravel() * total
            for i, j in candidates
        ]

        def scores(
            table: pd.DataFrame,
            candidates: list[tuple[int, int]] = candidates,
            estimates: list[np.ndarray] = estimates,
        ) -> np.ndarray:
            table = compress(table)
            out = np.empty(len(candidates))
            for k, (i, j) in enumerate(candidates):
                a, b = names[i], names[j]
                true = _counts(table, (a, b), (small[a], small[b]))
                out[k] = np.abs(true - estimates[k]).sum()
            return out

        pick = queryable(noisy_max_release(statistic(scores, 1.0, "linf"), plan[1]))
        i, j = candidates[int(pick)]
        forest.join(i, j)
        chosen.append((names[i], names[j]))

    # 5. the chosen 2-way marginals at once
    if chosen:
        shapes = [(small[a], small[b]) for a, b in chosen]

        def two_way(table: pd.DataFrame) -> np.ndarray:
            table = compress(table)
            return np.concatenate(
                [_counts(table, pair, shape) for pair, shape in zip(chosen, shapes, strict=True)]
            )

        measurement, sigma_two = gaussian_release(
            statistic(two_way, math.sqrt(len(chosen)), "l2"), plan[-1]
        )
        noisy_two = np.asarray(queryable(measurement), dtype=np.float64)
        split = np.cumsum([a * b for a, b in shapes])[:-1]
        for pair, y in zip(chosen, np.split(noisy_two, split), strict=True):
            measurements.append(mbi.LinearMeasurement(y, pair, stddev=sigma_two))

    # 6. fit and sample (post-processing)
    model = mbi.estimation.MirrorDescent().estimate(domain, measurements, iters=iters)
    # mbi samples with numpy's global generator
    np.random.seed(int(rng.integers(2**31)))  # noqa: NPY002
    synthetic = model.synthetic_data()
    codes = {}
    for n in names:
        small_codes = np.asarray(synthetic.data[n], dtype=np.int64)
        if n in mapping:
            codes[n] = _spread(small_codes, mapping[n], noisy_one[n], rng)
        else:
            codes[n] = small_codes
    table = decode_table(codes, codings, rng)
    facts = {
        "pairs": [list(p) for p in chosen],
        "merged_codes": {n: int((mapping[n] == mapping[n].max()).sum()) for n in mapping},
        "rows": len(table),
        "rho": float(composition.map(1)),
    }
    return table, facts


def _compressed_one_way(
    noisy: dict[str, np.ndarray], mapping: dict[str, np.ndarray], small: dict[str, int]
) -> dict[str, np.ndarray]:
    """Noisy 1-way counts summed over merged codes."""
    return {
        n: np.bincount(mapping[n], weights=v, minlength=small[n]) if n in mapping else v
        for n, v in noisy.items()
    }


def _spread(
    small_codes: np.ndarray, mapping: np.ndarray, noisy: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Undo a merge: each merged code becomes one of its original codes, drawn in
    proportion to their noisy counts clipped at zero (uniformly if all are zero)."""
    out = np.empty_like(small_codes)
    for code in np.unique(small_codes):
        members = np.flatnonzero(mapping == code)
        weights = np.clip(noisy[members], 0.0, None)
        p = weights / weights.sum() if weights.sum() > 0 else None
        where = small_codes == code
        out[where] = rng.choice(members, size=int(where.sum()), p=p)
    return out


class SynthDP(TableRelease):
    """Differentially private synthetic data (MST on private-pgm, noise by OpenDP).

    Parameters
    ----------
    epsilon, delta : float
        The (epsilon, delta)-DP guarantee of the whole release, per patient added or
        removed.
    bins : int
        Bins of each continuous column (public, equal width within public bounds).
    iters : int
        Mirror-descent iterations fitting the model.
    seed : int or None
        Seeds the sampling of rows from the fitted model; None takes the cell's seed
        (``task.public["seed"]``). The measurements' noise is OpenDP's, drawn from its
        own secure generator, which no seed fixes: the capabilities say so.
    """

    def __init__(
        self,
        *,
        epsilon: float = 1.0,
        delta: float = 1e-6,
        bins: int = 20,
        iters: int = 1000,
        seed: int | None = None,
    ) -> None:
        self.epsilon = epsilon
        self.delta = delta
        self.bins = bins
        self.iters = iters
        self.seed = seed

    @property
    def capabilities(self) -> Capabilities:
        """Serves release and query; states the (epsilon, delta) claim."""
        if not (isinstance(self.epsilon, int | float) and self.epsilon > 0):
            raise ValueError(f"epsilon must be a number > 0, got {self.epsilon!r}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta!r}")
        if not (isinstance(self.bins, int) and self.bins >= 2):
            raise ValueError(f"bins must be a whole number >= 2, got {self.bins!r}")
        if not (isinstance(self.iters, int) and self.iters >= 1):
            raise ValueError(f"iters must be a whole number >= 1, got {self.iters!r}")
        return Capabilities(
            task_kinds=self.TASK_KINDS,
            pet_class=PetClass.DP,
            claim=Claim(
                epsilon=float(self.epsilon),
                delta=float(self.delta),
                privacy_unit="patient",
                neighbouring="add-remove",
                accountant="zCDP (OpenDP adaptive composition), converted to (epsilon, delta)",
                declared_leakage=("output",),
                formal=True,
                notes=(
                    "Covers the released table; the column list, public codings and "
                    "parameters are public. Relationships beyond the selected pairs are "
                    "not kept."
                ),
            ),
            extra="synth-dp",
            unseeded_randomness=(OPENDP_NOISE,),
        )

    def publish(self, frame: pd.DataFrame, columns: list[str], task: Task) -> pd.DataFrame:
        """Return a synthetic table of ``columns`` under the claimed guarantee."""
        from pets.backends.dp.opendp_ops import zcdp_budget

        codings = public_codings(frame, columns, bins=self.bins)
        rho = zcdp_budget(float(self.epsilon), float(self.delta))
        seed = self.seed if self.seed is not None else task.public.get("seed")
        table, _ = mst_synthesise(
            frame, codings, rho=rho, iters=self.iters, rng=np.random.default_rng(seed)
        )
        return table
