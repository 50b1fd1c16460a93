"""Public codings of columns for synthesisers: each column mapped to a finite set of
codes from public facts only (declared categories, public bounds), never from the
values the data holds.

- ``category``: a categorical column's declared categories.
- ``integer``: an integer column whose public range holds at most ``max_levels``
  values (deprivation decile, 0/1 flags, admissions): one code per value.
- ``binned``: any other numeric column with public bounds: ``bins`` equal-width bins;
  decoding draws uniformly inside the bin (and rounds for integer columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pets.api import UnsupportedTask
from pets.tasks import public_ranges

__all__ = ["ColumnCoding", "decode_table", "encode_table", "public_codings"]


@dataclass(frozen=True)
class ColumnCoding:
    """How one column maps to codes ``0 .. size-1`` and back.

    Parameters
    ----------
    name : str
        Column name.
    kind : str
        ``"category"``, ``"integer"`` or ``"binned"``.
    labels : tuple
        The value of each code (categories or integers); for ``binned``, the bin
        edges (``size + 1`` of them).
    dtype : Any
        The column's dtype, restored on decoding.
    """

    name: str
    kind: str
    labels: tuple[Any, ...]
    dtype: Any

    @property
    def size(self) -> int:
        """Number of codes."""
        return len(self.labels) - 1 if self.kind == "binned" else len(self.labels)

    def encode(self, series: pd.Series) -> np.ndarray:
        """Return the code of every value (values outside public bounds are clamped)."""
        if self.kind == "category":
            codes = pd.Categorical(series.astype(str), categories=self.labels).codes
            if (codes < 0).any():
                raise ValueError(f"column {self.name!r} holds values outside its categories")
            return codes.astype(np.int64)
        x = series.to_numpy(dtype=np.float64)
        if self.kind == "integer":
            lo = self.labels[0]
            return np.clip(np.rint(x) - lo, 0, self.size - 1).astype(np.int64)
        edges = np.asarray(self.labels, dtype=np.float64)
        return np.clip(np.searchsorted(edges, x, side="right") - 1, 0, self.size - 1)

    def decode(self, codes: np.ndarray, rng: np.random.Generator) -> pd.Series:
        """Return column values for ``codes``."""
        if self.kind == "category":
            return pd.Series(pd.Categorical.from_codes(codes, categories=list(self.labels)))
        if self.kind == "integer":
            return pd.Series(np.asarray(self.labels)[codes]).astype(self.dtype)
        edges = np.asarray(self.labels, dtype=np.float64)
        low, high = edges[codes], edges[codes + 1]
        if np.issubdtype(np.dtype(self.dtype), np.integer):
            # the whole numbers inside the bin, the last bin closed on the right
            first = np.ceil(low)
            last = np.where(codes == self.size - 1, np.floor(high), np.ceil(high) - 1)
            last = np.maximum(last, first)
            x = first + np.floor(rng.random(codes.size) * (last - first + 1))
        else:
            margin = 1e-4 * (high - low)  # stays inside the bin after a float32 cast
            x = low + margin + rng.random(codes.size) * (high - low - 2 * margin)
        return pd.Series(x).astype(self.dtype)


def public_codings(
    frame: pd.DataFrame, columns: Sequence[str], *, bins: int = 20, max_levels: int = 32
) -> list[ColumnCoding]:
    """Return the public coding of each of ``columns``.

    Parameters
    ----------
    frame : DataFrame
        Used for dtypes only (declared categories are part of the dtype).
    columns : sequence of str
        Columns to code.
    bins : int
        Bins of a ``binned`` column.
    max_levels : int
        Largest integer range coded value by value.

    Raises
    ------
    UnsupportedTask
        A column has neither declared categories nor public bounds.
    """
    ranges = public_ranges()
    out = []
    for name in columns:
        dtype = frame[name].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            labels = tuple(str(c) for c in dtype.categories)
            out.append(ColumnCoding(name, "category", labels, dtype))
        elif name in ranges and pd.api.types.is_numeric_dtype(dtype):
            lo, hi = ranges[name]
            if np.issubdtype(dtype, np.integer) and hi - lo + 1 <= max_levels:
                values = tuple(range(int(lo), int(hi) + 1))
                out.append(ColumnCoding(name, "integer", values, dtype))
            else:
                edges = tuple(np.linspace(lo, hi, bins + 1).tolist())
                out.append(ColumnCoding(name, "binned", edges, dtype))
        else:
            raise UnsupportedTask(
                f"column {name!r} has no public domain (declared categories or public "
                "bounds in pets.data.COLUMN_RANGES); a synthesiser cannot code it without "
                "reading its values"
            )
    return out


def encode_table(frame: pd.DataFrame, codings: Sequence[ColumnCoding]) -> pd.DataFrame:
    """Return a table of codes, one integer column per coding."""
    return pd.DataFrame({c.name: c.encode(frame[c.name]) for c in codings})


def decode_table(
    codes: dict[str, np.ndarray], codings: Sequence[ColumnCoding], rng: np.random.Generator
) -> pd.DataFrame:
    """Return the table of values for a mapping of column name to codes."""
    return pd.DataFrame({c.name: c.decode(np.asarray(codes[c.name]), rng) for c in codings})
