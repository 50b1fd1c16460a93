"""Run every conformance check on one backend and collect the results.

:func:`check_backend` is the notebook entry point, in the style of scikit-learn's
``check_estimator``: it never raises for a backend's fault, and returns one
:class:`CheckResult` per check (passed, failed with what to fix, skipped with why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pets.api import Backend
from pets.registry import Registry
from pets.testing.checks import CHECKS, Check, SkipCheck
from pets.testing.runs import Toybox

__all__ = ["CheckResult", "check_backend", "format_results", "resolve_backend", "run_check"]

Status = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one backend.

    Attributes
    ----------
    check : str
        The check's name (``check_declared_kinds_run``).
    status : {"passed", "failed", "skipped"}
        The outcome.
    message : str
        For a failure, what to fix; for a skip, why; empty when passed.
    """

    check: str
    status: Status
    message: str = ""


def resolve_backend(backend_or_name: Any, *, registry: Registry | None = None) -> Backend:
    """Return a backend instance from an instance, a Backend class (built with its
    defaults), or a name registered in ``registry`` (default: the installed backends).

    Raises
    ------
    TypeError
        ``backend_or_name`` is none of these.
    pets.registry.UnknownBackend
        The name is not registered.
    """
    if isinstance(backend_or_name, Backend):
        return backend_or_name
    if isinstance(backend_or_name, type) and issubclass(backend_or_name, Backend):
        return backend_or_name()
    if isinstance(backend_or_name, str):
        registry = Registry.from_entry_points() if registry is None else registry
        return registry.load(backend_or_name)()
    raise TypeError(
        f"check_backend takes a Backend instance, a Backend class or a registered name, "
        f"not {type(backend_or_name).__name__}"
    )


def run_check(check: Check, backend: Backend, toys: Toybox) -> CheckResult:
    """Run one check and turn its outcome into a :class:`CheckResult`; an unexpected
    exception is a failure naming it."""
    name = check.__name__
    try:
        check(backend, toys)
    except SkipCheck as exc:
        return CheckResult(name, "skipped", str(exc))
    except AssertionError as exc:
        return CheckResult(name, "failed", str(exc))
    except Exception as exc:  # the backend's fault, reported like a failed check
        return CheckResult(name, "failed", f"{type(exc).__name__}: {exc} (raised while checking)")
    return CheckResult(name, "passed")


def check_backend(
    backend_or_name: Any,
    *,
    registry: Registry | None = None,
    toys: Toybox | None = None,
    env_name: str | None = None,
) -> list[CheckResult]:
    """Run every conformance check on a backend.

    Parameters
    ----------
    backend_or_name : Backend, Backend class or str
        The backend: an instance (checked with its parameters), a class (built with its
        defaults) or a registered name.
    registry : Registry, optional
        Where names are looked up (default: the installed backends).
    toys : Toybox, optional
        The toy runs to share (default: fresh ones, preloading the backend's module).
    env_name : str, optional
        The registered name of a backend that runs in its own environment (default: the
        name given as ``backend_or_name``); see docs/environments.md.

    Returns
    -------
    list of CheckResult
        One per check in :data:`pets.testing.checks.CHECKS`, in order.

    Examples
    --------
    >>> from pets.testing import check_backend
    >>> results = check_backend("plaintext")  # doctest: +SKIP
    >>> [r.check for r in results if r.status == "failed"]  # doctest: +SKIP
    []
    """
    backend = resolve_backend(backend_or_name, registry=registry)
    if toys is None:
        name = env_name if env_name is not None else backend_or_name
        toys = Toybox(
            preload=(type(backend).__module__,),
            env_name=name if isinstance(name, str) else None,
        )
    return [run_check(check, backend, toys) for check in CHECKS]


def format_results(results: list[CheckResult], width: int = 100) -> str:
    """The results as a plain-text table: check, status, and the message wrapped under
    it."""
    import textwrap

    name_width = max((len(r.check) for r in results), default=5)
    lines = [f"{'check':{name_width}}  status   message", "-" * min(width, name_width + 40)]
    for r in results:
        wrapped = textwrap.wrap(r.message, max(30, width - name_width - 11)) or [""]
        lines.append(f"{r.check:{name_width}}  {r.status:7}  {wrapped[0]}")
        lines += [" " * (name_width + 11) + more for more in wrapped[1:]]
    return "\n".join(lines)
