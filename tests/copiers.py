"""Synthesisers that slip a few real rows into an otherwise honest synthetic release,
each in one encoding (registered for the tests the way a supplier's plugin is: by
import target, and run by the cell worker in its own processes).

The synthetic rows are the Gaussian copula's (``synth-copula``); then ``share`` of them
are replaced by real rows of the custodian:

- :class:`CopiesVerbatim`: the real rows as they are;
- :class:`CopiesReencoded`: the whole table re-typed (whole numbers and flags as floats,
  categories as plain strings) with its columns in another order;
- :class:`CopiesPerturbed`: the real rows with every continuous value moved by up to
  0.2% and rounded to one decimal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pets.api import Task
from pets.backends.synth.copula import SynthCopula

__all__ = ["CopiesPerturbed", "CopiesReencoded", "CopiesVerbatim", "CopyingSynth"]


class CopyingSynth(SynthCopula):
    """Copula synthetic data with ``share`` of its rows replaced by real rows.

    Parameters
    ----------
    share : float
        Share of the released rows that are copies of real rows.
    """

    encoding = "verbatim"

    def __init__(self, *, share: float = 0.04, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.share = share

    def publish(self, frame: pd.DataFrame, columns: list[str], task: Task) -> pd.DataFrame:
        """Sample the copula, then slip in real rows in this class's encoding."""
        synthetic = super().publish(frame, columns, task)
        rng = np.random.default_rng([task.public.get("seed", 0), 0xC0B1])
        count = round(self.share * len(synthetic))
        real = frame[columns].iloc[rng.choice(len(frame), count, replace=False)]
        kept = synthetic.drop(index=synthetic.index[rng.choice(len(synthetic), count, False)])
        copied = self.encode(real.reset_index(drop=True), rng)
        table = pd.concat([kept.reset_index(drop=True), copied], ignore_index=True)
        return table.iloc[rng.permutation(len(table))].reset_index(drop=True)

    def encode(self, rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """The copied rows as they go into the release."""
        del rng
        return rows


class CopiesVerbatim(CopyingSynth):
    """Real rows copied as they are."""


class CopiesReencoded(CopyingSynth):
    """Real rows copied, and the whole table re-typed with its columns reordered."""

    encoding = "reencoded"

    def publish(self, frame: pd.DataFrame, columns: list[str], task: Task) -> pd.DataFrame:
        """Re-type every column and reverse the column order."""
        table = super().publish(frame, columns, task)
        out = {}
        for name in reversed(table.columns):
            column = table[name]
            if isinstance(column.dtype, pd.CategoricalDtype) or column.dtype == object:
                out[name] = column.astype(str).astype(object)
            else:
                out[name] = column.astype(np.float64)
        return pd.DataFrame(out)


class CopiesPerturbed(CopyingSynth):
    """Real rows copied with their continuous values nudged and rounded."""

    encoding = "perturbed"

    def encode(self, rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Move each float value by up to 0.2% and round it to one decimal."""
        out = rows.copy()
        for name in out.columns:
            if pd.api.types.is_float_dtype(out[name].dtype):
                nudge = 1 + rng.uniform(-0.002, 0.002, len(out))
                out[name] = (out[name] * nudge).round(1).astype(out[name].dtype)
        return out
