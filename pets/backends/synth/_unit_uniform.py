"""A marginal for coded columns of the Gaussian copula (imports ``copulas``)."""

from __future__ import annotations

from typing import Any

from copulas.univariate import UniformUnivariate

__all__ = ["UnitUniform"]


class UnitUniform(UniformUnivariate):
    """The uniform distribution on [0, 1), whatever values it is fitted to."""

    def _fit(self, X: Any) -> None:
        del X
        self._params = {"loc": 0.0, "scale": 1.0}

    def _fit_constant(self, X: Any) -> None:
        self._fit(X)
