"""Distances between rows of an attacker's view.

Distances are Gower-like: numeric columns scaled by their public ranges
(:func:`pets.tasks.public_ranges`, else the release's own range) and compared by absolute
difference, categorical columns 0 when equal and 1 otherwise, summed over columns.

"""

from __future__ import annotations

import numpy as np

__all__ = ["gower_distances", "nearest_rows"]

_CHUNK_ELEMENTS = 4_000_000


def gower_distances(queries: np.ndarray, rows: np.ndarray, numeric: np.ndarray) -> np.ndarray:
    """Return the Gower-like distances between every query and every row.

    Parameters
    ----------
    queries, rows : numpy.ndarray
        Scaled rows (numeric columns in [0, 1], categorical columns as codes).
    numeric : numpy.ndarray
        Per column, True for numeric (absolute difference), False for categorical
        (0 when equal, 1 otherwise). A missing value is at distance 1 from anything
        but another missing value.

    Returns
    -------
    numpy.ndarray
        ``len(queries)`` by ``len(rows)``, the sum over columns.
    """
    out = np.zeros((len(queries), len(rows)))
    for j in range(queries.shape[1]):
        q, r = queries[:, j, None], rows[None, :, j]
        if numeric[j]:
            d = np.abs(q - r)
            both = np.isnan(q) & np.isnan(r)
            out += np.where(both, 0.0, np.nan_to_num(d, nan=1.0))
        else:
            out += q != r
    return out


def nearest_rows(
    queries: np.ndarray,
    rows: np.ndarray,
    numeric: np.ndarray,
    *,
    k: int = 1,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``k`` nearest ``rows`` of each query and their distances.

    Parameters
    ----------
    queries, rows, numeric
        As for :func:`gower_distances`.
    k : int
        Neighbours per query.
    rng : numpy.random.Generator, optional
        Breaks ties at random; without it the first row wins.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Indices and distances, each ``len(queries)`` by ``k``, nearest first.
    """
    k = min(k, len(rows))
    chunk = max(1, _CHUNK_ELEMENTS // max(1, len(rows)))
    index = np.empty((len(queries), k), np.int64)
    dist = np.empty((len(queries), k))
    for s in range(0, len(queries), chunk):
        d = gower_distances(queries[s : s + chunk], rows, numeric)
        keyed = d if rng is None else d + rng.random(d.shape) * 1e-9
        if k == 1:
            near = np.argmin(keyed, axis=1)[:, None]
        else:
            part = np.argpartition(keyed, k - 1, axis=1)[:, :k]
            order = np.argsort(np.take_along_axis(keyed, part, axis=1), axis=1)
            near = np.take_along_axis(part, order, axis=1)
        index[s : s + chunk] = near
        dist[s : s + chunk] = np.take_along_axis(d, near, axis=1)
    return index, dist
