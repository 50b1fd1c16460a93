"""The conformance checks in a supplier's own pytest suite.

:func:`parametrize_with_checks` is scikit-learn's pattern: one test per (backend,
check) pair, each with a readable id::

    from pets.testing import parametrize_with_checks
    from my_package.backend import MySecureSum

    @parametrize_with_checks([MySecureSum(), MySecureSum(modulus_bits=31)])
    def test_conforms(backend, check):
        check(backend)

A failing check raises AssertionError with what to fix; a check that does not apply
calls ``pytest.skip`` with why. The checks of one backend share its toy runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pets.api import Backend
from pets.testing.checks import CHECKS, Check, SkipCheck
from pets.testing.kit import resolve_backend
from pets.testing.runs import Toybox

__all__ = ["BoundCheck", "parametrize_with_checks"]


class BoundCheck:
    """A check bound to the toy runs it shares: call it with the backend.

    Parameters
    ----------
    check : Check
        The check function.
    toys : Toybox
        The shared toy runs.
    """

    def __init__(self, check: Check, toys: Toybox) -> None:
        self.check = check
        self.toys = toys
        self.__name__ = check.__name__

    def __call__(self, backend: Backend) -> None:
        import pytest

        try:
            self.check(backend, self.toys)
        except SkipCheck as exc:
            pytest.skip(str(exc))

    def __repr__(self) -> str:
        return self.__name__


def _backend_id(backend: Backend) -> str:
    params = ",".join(f"{k}={v!r}" for k, v in backend.get_params().items())
    return f"{type(backend).__name__}({params})"


def parametrize_with_checks(backends: Iterable[Any]) -> Callable[[Any], Any]:
    """Return a ``pytest.mark.parametrize`` decorator over every (backend, check) pair.

    Parameters
    ----------
    backends : iterable
        Backend instances, Backend classes (built with their defaults) or registered
        names. A backend given by name that declares requirements is run under the
        environment ``pets env sync <name>`` built (docs/environments.md).

    Returns
    -------
    decorator
        Parametrizes the test's ``backend`` and ``check`` arguments; ids read
        ``Class(params)-check_name``.
    """
    import pytest

    items = list(backends)
    resolved = [resolve_backend(item) for item in items]
    toys = Toybox(preload=tuple(dict.fromkeys(type(b).__module__ for b in resolved)))
    pairs, ids = [], []
    for item, backend in zip(items, resolved, strict=True):
        # a registered name that runs in its own environment gets toy runs there
        own = isinstance(item, str) and bool(backend.capabilities.requirements)
        shared = Toybox(preload=(type(backend).__module__,), env_name=item) if own else toys
        for check in CHECKS:
            pairs.append((backend, BoundCheck(check, shared)))
            ids.append(f"{_backend_id(backend)}-{check.__name__}")
    return pytest.mark.parametrize(("backend", "check"), pairs, ids=ids)
