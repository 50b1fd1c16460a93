"""``synth-copula``: synthetic data from a Gaussian copula (the ``copulas`` library).

The custodian fits a Gaussian copula to its rows and samples as many synthetic rows as
it holds. Columns are prepared from public codings (:mod:`pets.backends.synth.coding`):

- continuous columns (public bounds, many values) are clamped to their bounds and given
  a parametric marginal (``distribution``);
- categorical and small integer columns are turned into numbers the copula can model:
  each code owns an interval of [0, 1) as wide as its share of the rows and a row
  stands at the middle of its code's interval; the column's marginal is the uniform
  on [0, 1) (``UnitUniform``), so sampled values map back through the intervals
  with the codes' shares. Middles rather than uniform draws inside the intervals keep
  the column's correlations with the others (draws would add noise that washes out
  the correlation of a rare code such as a 2% outcome).

The fitted model (marginal parameters, code shares, the correlation matrix) is computed
from real rows with no noise; there is no formal guarantee and the claim says so.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from pets.api import Capabilities, Claim, PetClass, Task
from pets.backends.release import TableRelease
from pets.backends.synth.coding import ColumnCoding, public_codings
from pets.tasks import public_ranges

__all__ = ["DISTRIBUTIONS", "SynthCopula"]

#: Marginal families for continuous columns, by parameter value.
DISTRIBUTIONS = {
    "beta": "BetaUnivariate",
    "truncated_gaussian": "TruncatedGaussian",
    "gaussian": "GaussianUnivariate",
    "kde": "GaussianKDE",
}


class SynthCopula(TableRelease):
    """Gaussian-copula synthetic data.

    Parameters
    ----------
    distribution : str
        Marginal family of continuous columns: one of :data:`DISTRIBUTIONS`.
    seed : int or None
        Seeds the interval draws and the copula's sampling; None takes the cell's seed
        (``task.public["seed"]``), so one cell gives the same release on every run.
    """

    def __init__(self, *, distribution: str = "beta", seed: int | None = None) -> None:
        self.distribution = distribution
        self.seed = seed

    @property
    def capabilities(self) -> Capabilities:
        """Serves release and query; heuristic claim."""
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"distribution {self.distribution!r} is not known; allowed: "
                f"{', '.join(DISTRIBUTIONS)}"
            )
        return Capabilities(
            task_kinds=self.TASK_KINDS,
            pet_class=PetClass.SYNTHETIC,
            claim=Claim(
                declared_leakage=("output", "model fitted on real rows"),
                formal=False,
                notes=(
                    "Heuristic, no formal guarantee. Rows are sampled from a model whose "
                    "parameters are computed exactly from real rows; rare combinations can "
                    "be reproduced, and the model itself is not protected."
                ),
            ),
            extra="synth",
            deterministic=True,
        )

    def publish(self, frame: pd.DataFrame, columns: list[str], task: Task) -> pd.DataFrame:
        """Fit the copula to ``columns`` of ``frame`` and sample as many rows."""
        from copulas import univariate
        from copulas.multivariate import GaussianMultivariate

        from pets.backends.synth._unit_uniform import UnitUniform

        rng = np.random.default_rng(self.seed if self.seed is not None else task.public.get("seed"))
        # the codings only sort columns into continuous and coded ones here: continuous
        # columns stay numbers, so their bin count plays no part
        codings = public_codings(frame, columns)
        continuous = [c for c in codings if c.kind == "binned"]
        coded = [c for c in codings if c.kind != "binned"]
        ranges = public_ranges()
        prepared = {}
        intervals: dict[str, np.ndarray] = {}
        for coding in continuous:
            lo, hi = ranges[coding.name]
            prepared[coding.name] = frame[coding.name].to_numpy(dtype=np.float64).clip(lo, hi)
        for coding in coded:
            codes = coding.encode(frame[coding.name])
            shares = np.bincount(codes, minlength=coding.size) / max(len(codes), 1)
            edges = np.concatenate([[0.0], np.cumsum(shares)])
            edges[-1] = 1.0
            intervals[coding.name] = edges
            prepared[coding.name] = edges[codes] + shares[codes] / 2
        table = pd.DataFrame(prepared)[columns]
        family = getattr(univariate, DISTRIBUTIONS[self.distribution])
        distribution = {c.name: family if c.kind == "binned" else UnitUniform for c in codings}
        model = GaussianMultivariate(
            distribution=distribution, random_state=int(rng.integers(2**31))
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy fit warnings on bounded marginals
            model.fit(table)
            sampled = model.sample(len(frame))
        return _restore(sampled, continuous, coded, intervals, ranges, rng)[columns]


def _restore(
    sampled: pd.DataFrame,
    continuous: list[ColumnCoding],
    coded: list[ColumnCoding],
    intervals: dict[str, np.ndarray],
    ranges: Any,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Map sampled numbers back to column values and dtypes."""
    out = {}
    for coding in continuous:
        lo, hi = ranges[coding.name]
        x = sampled[coding.name].to_numpy(dtype=np.float64).clip(lo, hi)
        if np.issubdtype(np.dtype(coding.dtype), np.integer):
            x = np.rint(x)
        out[coding.name] = pd.Series(x).astype(coding.dtype)
    for coding in coded:
        u = sampled[coding.name].to_numpy(dtype=np.float64).clip(0.0, np.nextafter(1.0, 0.0))
        codes = np.searchsorted(intervals[coding.name], u, side="right") - 1
        codes = np.clip(codes, 0, coding.size - 1)
        out[coding.name] = coding.decode(codes, rng)
    return pd.DataFrame(out)
