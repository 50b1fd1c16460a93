"""OpenDP building blocks shared by the DP backends.

Every statistic is an OpenDP transformation from the party's own table (a pandas
DataFrame, under the symmetric distance: one patient added or removed) to a vector,
with a stability stated from public bounds only; a measurement chains it with
OpenDP's Laplace or Gaussian noise, calibrated by OpenDP to the privacy loss asked for.
The transformation runs the statistic on the table; OpenDP samples the noise.
"""

from __future__ import annotations

import contextlib
import functools
import math
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from pets.api import Task, UnsupportedTask
from pets.tasks import public_ranges

#: OpenDP's modules that ``opendp.prelude`` gathers, without its ``extras`` (which
#: import scikit-learn, SciPy and Polars: two seconds a process, unused here).
OPENDP_MODULES = (
    "opendp.mod",
    "opendp.domains",
    "opendp.metrics",
    "opendp.measures",
    "opendp.typing",
    "opendp.accuracy",
    "opendp.context",
)

__all__ = [
    "OPENDP_MODULES",
    "clamp_means",
    "clamped",
    "compositor",
    "gaussian_noise",
    "gaussian_release",
    "laplace_release",
    "noisy_max_release",
    "opendp",
    "public_bounds",
    "statistic",
    "zcdp_budget",
    "zcdp_compositor",
    "zcdp_epsilon",
]


@functools.cache
def opendp() -> Any:
    """Return OpenDP's names as ``opendp.prelude`` offers them (``t``, ``m``, ``c`` and
    the domains, metrics, measures, typing, accuracy and context functions), with the
    features these backends use enabled, but without the prelude's ``extras``.

    ``honest-but-curious`` is needed for the table-to-vector transformations, whose
    stability is stated here from public bounds (a filter or group-by moves one
    patient's row into at most one cell).
    """
    import importlib

    from opendp import combinators, core, measurements, transformations

    names = types.ModuleType("opendp_names", "OpenDP's prelude without its extras")
    for module in map(importlib.import_module, OPENDP_MODULES):
        public = getattr(module, "__all__", None)
        for name in public if public is not None else dir(module):
            if not name.startswith("_"):
                setattr(names, name, getattr(module, name))
    names.as_array, names.new_function = core.as_array, core.new_function
    names.new_queryable = core.new_queryable
    names.t, names.m, names.c = transformations, measurements, combinators
    names.enable_features("contrib", "honest-but-curious")
    return names


# Imported with this module when OpenDP is installed, so a fork server that preloads a
# DP backend's module starts every party process with it loaded.
with contextlib.suppress(ImportError):
    opendp()


def _frames(dp: Any) -> Any:
    return dp.user_domain("PandasDataFrame", lambda x: isinstance(x, pd.DataFrame))


def statistic(
    fn: Callable[[pd.DataFrame], np.ndarray], sensitivity: float, metric: str = "l1"
) -> Any:
    """A transformation from a table to a float vector whose distance (``metric``:
    ``"l1"``, ``"l2"`` or ``"linf"``) grows by at most ``sensitivity`` per patient added
    or removed."""
    dp = opendp()
    metrics = {
        "l1": dp.l1_distance(T=float),
        "l2": dp.l2_distance(T=float),
        "linf": dp.linf_distance(T=float),
    }
    return dp.t.make_user_transformation(
        _frames(dp),
        dp.symmetric_distance(),
        dp.vector_domain(dp.atom_domain(T=float, nan=False)),
        metrics[metric],
        lambda frame: np.array(fn(frame), dtype=np.float64),  # a writable copy
        lambda d_in: float(d_in) * float(sensitivity),
    )


def laplace_release(transformation: Any, epsilon: float) -> Any:
    """Chain ``transformation`` with Laplace noise calibrated to ``epsilon``-DP for one
    patient added or removed.

    The scale is the smallest whose OpenDP privacy map stays within ``epsilon``: the
    sensitivity over ``epsilon``, raised by a few ulps while OpenDP's map (which rounds
    up) exceeds ``epsilon``; the same scale OpenDP's ``binary_search_param`` finds, in
    one or two constructions instead of about fifty (each party process calibrates its
    own measurements, once per run).
    """
    dp = opendp()
    epsilon = float(epsilon)
    scale = float(transformation.map(1)) / epsilon
    for _ in range(16):
        measurement = transformation >> dp.m.then_laplace(scale)
        if measurement.map(1) <= epsilon:
            return measurement
        scale = math.nextafter(scale, math.inf)
    scale = dp.binary_search_param(
        lambda s: transformation >> dp.m.then_laplace(s), d_in=1, d_out=epsilon
    )
    return transformation >> dp.m.then_laplace(scale)


def gaussian_release(transformation: Any, rho: float) -> tuple[Any, float]:
    """Chain an L2 ``transformation`` with Gaussian noise calibrated to ``rho``-zCDP;
    return the measurement and the noise standard deviation OpenDP chose."""
    dp = opendp()
    scale = dp.binary_search_param(
        lambda s: transformation >> dp.m.then_gaussian(s), d_in=1, d_out=float(rho)
    )
    return transformation >> dp.m.then_gaussian(scale), float(scale)


def noisy_max_release(transformation: Any, rho: float) -> Any:
    """Chain an L-infinity ``transformation`` of scores with OpenDP's report-noisy-max
    (the exponential mechanism) calibrated to ``rho``-zCDP; it returns the index of the
    selected score."""
    dp = opendp()
    measure = dp.zero_concentrated_divergence()
    scale = dp.binary_search_param(
        lambda s: transformation >> dp.m.then_noisy_max(measure, scale=s),
        d_in=1,
        d_out=float(rho),
    )
    return transformation >> dp.m.then_noisy_max(measure, scale=scale)


def zcdp_compositor(rhos: list[float]) -> Any:
    """OpenDP's adaptive sequential compositor under zCDP: it answers one measurement
    per entry of ``rhos`` (each at most that rho) and refuses any more."""
    dp = opendp()
    return dp.c.make_adaptive_composition(
        _frames(dp),
        dp.symmetric_distance(),
        dp.zero_concentrated_divergence(),
        d_in=1,
        d_mids=rhos,
    )


def compositor(epsilons: list[float]) -> Any:
    """OpenDP's adaptive sequential compositor over a table: it answers one measurement
    per entry of ``epsilons`` (each at most that loss) and refuses any more."""
    dp = opendp()
    return dp.c.make_adaptive_composition(
        _frames(dp), dp.symmetric_distance(), dp.max_divergence(), d_in=1, d_mids=epsilons
    )


def gaussian_noise(length: int, scale: float) -> np.ndarray:
    """Sample ``length`` independent Gaussian noise values of standard deviation
    ``scale`` with OpenDP's sampler (added to a zero vector)."""
    dp = opendp()
    measurement = dp.m.make_gaussian(
        dp.vector_domain(dp.atom_domain(T=float, nan=False), size=length),
        dp.l2_distance(T=float),
        float(scale),
    )
    return np.asarray(measurement(np.zeros(length).tolist()), dtype=np.float64)


def zcdp_epsilon(rho: float, delta: float) -> float:
    """Epsilon at ``delta`` of a ``rho``-zCDP guarantee, by OpenDP's conversion."""
    dp = opendp()
    scale = 1.0 / math.sqrt(2.0 * rho)
    gaussian = dp.m.make_gaussian(
        dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale
    )
    return float(dp.c.make_zCDP_to_approxDP(gaussian).map(1.0).epsilon(delta))


def zcdp_budget(epsilon: float, delta: float) -> float:
    """The largest rho whose zCDP guarantee converts to at most (epsilon, delta)."""
    low, high = 1e-12, 1e3
    for _ in range(100):
        middle = math.sqrt(low * high)
        if zcdp_epsilon(middle, delta) <= epsilon:
            low = middle
        else:
            high = middle
        if high / low < 1 + 1e-9:
            break
    return low


def public_bounds(column: str) -> tuple[float, float]:
    """Return a column's public bounds; refuse a column that has none."""
    ranges = public_ranges()
    if column not in ranges:
        raise UnsupportedTask(
            f"differential privacy needs public bounds for column {column!r}; it has none "
            "(pets.data.COLUMN_RANGES)"
        )
    lo, hi = ranges[column]
    return float(lo), float(hi)


def clamped(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Return ``frame`` with ``columns`` clamped to their public bounds (as float64)."""
    return frame.assign(**{c: frame[c].astype(np.float64).clip(*public_bounds(c)) for c in columns})


def clamp_means(table: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Clamp an aggregate's noisy means to their columns' public bounds."""
    for measure in task.params["measures"]:
        name = f"{measure['column']}_{measure['stat']}"
        if measure["stat"] == "mean" and name in table:
            table[name] = table[name].clip(*public_bounds(measure["column"]))
    return table
