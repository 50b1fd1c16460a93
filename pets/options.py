"""Checking the options of a run, in one place for ``pets run`` and :func:`pets.run`.

Every check raises :class:`OptionError` with one line naming the option (its command
line flag and its keyword) and what is allowed, before any cell runs. Repeated names
are merged with a :class:`PlanWarning`.
"""

from __future__ import annotations

import difflib
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "EXECUTORS",
    "LEAKAGE_MODES",
    "MIN_SIZE",
    "ExecutorWarning",
    "OptionError",
    "PlanWarning",
    "available_cores",
    "check_card_backends",
    "check_cell_limits",
    "check_count",
    "check_executor",
    "check_leakage",
    "check_out",
    "check_param_keys",
    "check_positive",
    "check_run_options",
    "check_size",
    "check_size_sweep",
    "dask_installed",
    "unique_names",
]

#: Where a run's cells execute, besides a Dask scheduler's address (``tcp://HOST:PORT``).
EXECUTORS = ("local", "dask")
#: What to install for the Dask executor.
DASK_EXTRA = "pip install 'pets-sandbox[dask]'"
#: How much leakage analysis a run does.
LEAKAGE_MODES = ("fast", "full", "off")
#: Fewest patients a cell may be generated with (a card's ``size`` has the same floor).
MIN_SIZE = 100

_FLAGS = {
    "timeout": "--timeout",
    "memory_mb": "--memory-mb",
    "jobs": "--jobs",
    "seeds": "--seeds",
    "repeats": "--repeats",
    "size": "--size",
    "sizes": "--sizes",
    "out": "--out",
    "leakage": "--leakage",
    "executor": "--executor",
    "params": "--param",
}


class OptionError(ValueError):
    """An option of a run is out of range or unknown; the message is one line."""

    def __init__(self, name: str, problem: str) -> None:
        self.option = name
        flag = _FLAGS.get(name)
        label = f"{flag} ({name})" if flag else name
        super().__init__(f"{label}: {problem}")


class PlanWarning(UserWarning):
    """A plan was given something twice; it is merged and run once."""


class ExecutorWarning(UserWarning):
    """Cells run on a Dask cluster whose scheduler does not authenticate its clients."""


def check_positive(name: str, value: Any, unit: str) -> float:
    """Return ``value`` as a float if it is a finite number above 0.

    Raises
    ------
    OptionError
        Not a number, NaN, infinite, zero or negative.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OptionError(name, f"must be a number of {unit} > 0, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise OptionError(name, f"must be a finite number of {unit} > 0, got {value!r}")
    return number


def check_count(name: str, value: Any, what: str, low: int = 1) -> int:
    """Return ``value`` if it is a whole number of at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(name, f"must be a whole number of {what} >= {low}, got {value!r}")
    if value < low:
        raise OptionError(name, f"must be a whole number of {what} >= {low}, got {value}")
    return value


def check_size(value: Any) -> int | None:
    """Return the patients per cell (None: each card's own size)."""
    if value is None:
        return None
    return check_count("size", value, "patients", MIN_SIZE)


def check_size_sweep(size: Any, sizes: Any) -> tuple[int, ...] | None:
    """Return the size sweep (None: each card's own), refusing it with ``size``.

    Raises
    ------
    OptionError
        Both ``size`` and ``sizes``; a size not a whole number >= :data:`MIN_SIZE`;
        sizes repeated or out of order.
    """
    if sizes is None:
        return None
    from pets.scenarios import check_sizes

    if size is not None:
        raise OptionError("sizes", "give either --size or --sizes, not both")
    if isinstance(sizes, str | bytes) or not hasattr(sizes, "__iter__"):
        raise OptionError("sizes", f"must be a list of patients per cell, got {sizes!r}")
    try:
        return check_sizes(list(sizes))
    except ValueError as exc:
        raise OptionError("sizes", str(exc)) from None


def check_leakage(value: Any) -> str:
    """Return the leakage mode if it is one of :data:`LEAKAGE_MODES`."""
    if value not in LEAKAGE_MODES:
        close = difflib.get_close_matches(str(value), LEAKAGE_MODES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise OptionError(
            "leakage", f"{value!r} is not a mode{hint} allowed: {', '.join(LEAKAGE_MODES)}"
        )
    return str(value)


def check_executor(value: Any) -> str:
    """Return where cells execute: ``local``, ``dask`` (a ``LocalCluster`` the run
    starts) or a Dask scheduler's address, ``tcp://HOST:PORT`` (``dask://HOST:PORT`` is
    read as that) or ``tls://HOST:PORT`` (with the TLS settings of Dask's own
    configuration, ``distributed.comm.tls``).

    Raises
    ------
    OptionError
        Not one of these, an address without a host or port, or (for Dask) the
        ``distributed`` package is not installed; the message names the extra.
    """
    allowed = (
        "local, dask, or a scheduler address tcp://HOST:PORT, dask://HOST:PORT, tls://HOST:PORT"
    )
    if not isinstance(value, str):
        raise OptionError("executor", f"must be {allowed}, got {value!r}")
    if value in EXECUTORS:
        executor = value
    elif value.startswith(("dask://", "tcp://", "tls://")):
        scheme = "tls" if value.startswith("tls://") else "tcp"
        executor = f"{scheme}://{_scheduler_address(value, allowed)}"
    else:
        close = difflib.get_close_matches(value, EXECUTORS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise OptionError("executor", f"{value!r} is not an executor{hint} allowed: {allowed}")
    if executor != "local" and not dask_installed():
        raise OptionError(
            "executor",
            f"{value!r} needs Dask (dask.distributed), which is not installed here: {DASK_EXTRA}",
        )
    return executor


def _scheduler_address(value: str, allowed: str) -> str:
    """``HOST:PORT`` of a scheduler's address ``SCHEME://HOST:PORT``."""
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path not in ("", "/") or parts.query:
        raise OptionError(
            "executor", f"{value!r} is not a scheduler address HOST:PORT; allowed: {allowed}"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}"


def dask_installed() -> bool:
    """Whether ``distributed`` (the ``dask`` extra) can be imported here."""
    import importlib.util

    try:
        return importlib.util.find_spec("distributed") is not None
    except (ImportError, ValueError):
        return False


def check_out(value: str | os.PathLike[str]) -> Path:
    """Check a run folder can be used, creating it if missing.

    Raises
    ------
    OptionError
        Empty, an existing file, under a file, or not writable.
    """
    if not str(value).strip():
        raise OptionError("out", "must name a folder, got an empty path")
    out = Path(value)
    if out.exists() and not out.is_dir():
        raise OptionError("out", f"{str(out)!r} is a file; it must be a folder")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise OptionError("out", f"{str(out)!r} is under the file {str(parent)!r}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".pets-write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OptionError(
            "out", f"{str(out)!r} cannot be written ({exc.strerror or exc}); choose a folder"
        ) from None
    return out


def check_run_options(
    *,
    size: Any,
    seeds: Any,
    repeats: Any,
    timeout: Any,
    memory_mb: Any,
    jobs: Any,
    leakage: Any,
    executor: Any = "local",
) -> None:
    """Check a run's numeric options, leakage mode and executor (see :func:`pets.run`).

    Raises
    ------
    OptionError
        The first option out of range, with the allowed range.
    """
    check_size(size)
    check_count("seeds", seeds, "seeds")
    check_count("repeats", repeats, "repeats")
    check_cell_limits(timeout, memory_mb, jobs, leakage)
    check_executor(executor)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1: the default number
    of cells run at once."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_cell_limits(timeout: Any, memory_mb: Any, jobs: Any, leakage: Any) -> None:
    """Check how cells are run: the timeout and memory limit per cell (finite, > 0;
    ``memory_mb`` may be None for no limit), cells at once (>= 1) and leakage mode."""
    check_positive("timeout", timeout, "seconds")
    if memory_mb is not None:
        check_positive("memory_mb", memory_mb, "MiB")
    check_count("jobs", jobs, "cells at once")
    check_leakage(leakage)


def unique_names(what: str, names: Iterable[str]) -> list[str]:
    """Return ``names`` without repeats, in order, warning once per repeated name."""
    out: list[str] = []
    for name in names:
        if name in out:
            warnings.warn(
                f"{what} {name!r} is given more than once; it runs once",
                PlanWarning,
                stacklevel=3,
            )
            continue
        out.append(name)
    return out


def check_param_keys(overrides: Mapping[str, Any], accepted: Mapping[str, set[str] | None]) -> None:
    """Refuse a ``--param`` key that no backend of the plan takes.

    Parameters
    ----------
    overrides : Mapping
        The ``--param`` keys and values.
    accepted : Mapping
        Backend name to its parameter names (None where it could not be described
        here: then its own worker judges the keys).
    """
    if not overrides or any(names is None for names in accepted.values()):
        return
    known = sorted(set().union(*[n for n in accepted.values() if n is not None]))
    for key in overrides:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listing = "; ".join(
            f"{backend}: {', '.join(sorted(names or ())) or '(none)'}"
            for backend, names in accepted.items()
        )
        raise OptionError(
            "params", f"{key!r} is not a parameter of any backend of the run{hint} ({listing})"
        )


def check_card_backends(card: Any, known: Sequence[str]) -> None:
    """Refuse a card's ``[backends.<name>]`` section or sweep whose name is a misspelling
    of a registered backend; warn about one naming a backend not installed here.

    Raises
    ------
    pets.tasks.CardError
        A name close to a registered one ("did you mean").
    """
    from pets.tasks import CardError

    fields = [(f"backends.{name}", name) for name in card.backend_params]
    fields += [(f"sweeps[{i}].backend", s.backend) for i, s in enumerate(card.sweeps)]
    for field, name in fields:
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            raise CardError(
                str(card.path),
                field,
                f"{name!r} is not a registered backend; did you mean {close[0]!r}? "
                f"backends: {', '.join(sorted(known))}",
            )
        warnings.warn(
            f"{card.path}: field '{field}': backend {name!r} is not installed here; ignored",
            PlanWarning,
            stacklevel=3,
        )
