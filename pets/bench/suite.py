"""The ``pets bench`` suite: which measurements exist, running them, the ratio table,
and the size-sweep slopes of ``pets bench --scaling``."""

from __future__ import annotations

import datetime as dt
import difflib
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from pets.bench.measures import BenchLog, BenchSettings, Measurement, Skipped
from pets.options import OptionError
from pets.registry import Registry

__all__ = [
    "MEASUREMENTS",
    "check_only",
    "default_bench_folder",
    "ratio_table",
    "run_bench",
    "run_scaling",
]


def _cells(kind: str) -> Callable[[Any], list[Measurement | Skipped]]:
    def measure(context: _Context) -> list[Measurement | Skipped]:
        from pets.bench import cells

        try:
            return list(getattr(cells, kind)(context.cells()))
        except cells.CellFailed as exc:
            return [Skipped(kind, str(exc))]

    return measure


def _settings_only(kind: str, module: str) -> Callable[[Any], list[Measurement | Skipped]]:
    def measure(context: _Context) -> list[Measurement | Skipped]:
        import importlib

        return list(getattr(importlib.import_module(module), kind)(context.settings))

    return measure


#: Measurement name to (what it is, how it is taken), in the order they run.
MEASUREMENTS: Mapping[str, tuple[str, Callable[[Any], list[Measurement | Skipped]]]] = {
    "cohort_rate": (
        "cohort generation / a pandas deep copy of the same rows",
        _settings_only("cohort_rate", "pets.bench.cohort"),
    ),
    "ckks_packing": (
        "CKKS secure sum: one ciphertext per value / packed slots",
        _settings_only("ckks_packing", "pets.bench.packing"),
    ),
    "paillier_packing": (
        "Paillier secure sum: phe per value / packed with gmpy2",
        _settings_only("paillier_packing", "pets.bench.packing"),
    ),
    "mpyc_vectorised": (
        "MPyC secure sum: per element / secure arrays",
        _settings_only("mpyc_vectorised", "pets.bench.packing"),
    ),
    "harness_overhead": (
        "plaintext aggregate through the harness / the same calls scripted",
        _cells("harness_overhead"),
    ),
    "per_cell_overhead": (
        "plaintext cell from plan to record / its protocol time",
        _cells("per_cell_overhead"),
    ),
    "warm_start": (
        "cell started in a fresh interpreter / forked from the warm cell server",
        _cells("warm_start"),
    ),
    "secure_vs_pandas": (
        "each secure backend's aggregate / the pandas group-by",
        _cells("secure_vs_pandas"),
    ),
}


class _Context:
    """What the measurements of one run share: settings, log, the cells run once."""

    def __init__(self, settings: BenchSettings, log: BenchLog, registry: Registry) -> None:
        self.settings = settings
        self.log = log
        self.registry = registry
        self._cells: Any = None

    def cells(self) -> Any:
        from pets.bench.cells import HarnessCells

        if self._cells is None:
            self._cells = HarnessCells(self.log.cells_root, self.settings, self.registry)
        return self._cells


def check_only(names: Sequence[str]) -> list[str]:
    """Return the measurements ``--only`` names, in suite order (all when empty).

    Raises
    ------
    OptionError
        A name that is not a measurement (with the closest one and the list).
    """
    for name in names:
        if name not in MEASUREMENTS:
            close = difflib.get_close_matches(name, list(MEASUREMENTS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise OptionError(
                "--only",
                f"{name!r} is not a measurement{hint}; measurements: {', '.join(MEASUREMENTS)}",
            )
    return [m for m in MEASUREMENTS if not names or m in names]


def default_bench_folder() -> Path:
    """``results/bench-<timestamp>``."""
    return Path("results") / f"bench-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run_bench(
    names: Sequence[str],
    settings: BenchSettings,
    out: Path,
    *,
    registry: Registry | None = None,
    stream: TextIO = sys.stdout,
) -> list[Measurement]:
    """Take the measurements ``names`` and keep each in ``out/bench.jsonl``.

    Each measurement's line is printed as it finishes; a skipped one says why.

    Returns
    -------
    list of Measurement
        The measurements taken (skipped ones left out).
    """
    log = BenchLog(out)
    log.start({**settings.to_dict(), "only": list(names)})
    context = _Context(settings, log, registry or Registry.from_entry_points())
    taken: list[Measurement] = []
    for name in names:
        print(f"measuring {name}: {MEASUREMENTS[name][0]} ...", file=stream, flush=True)
        for result in MEASUREMENTS[name][1](context):
            if isinstance(result, Skipped):
                print(f"  skipped {result.name}: {result.reason}", file=stream, flush=True)
                continue
            log.add(result)
            taken.append(result)
            print(f"  {result.name}: {result.ratio:.3g}x", file=stream, flush=True)
    return taken


def _seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def ratio_table(measurements: Iterable[Measurement]) -> str:
    """The ratios as a text table: name, both sides' medians, ratio, repeats, size."""
    rows = [("measurement", "numerator", "median", "denominator", "median", "ratio", "n", "size")]
    for m in measurements:
        rows.append(
            (
                m.name,
                m.numerator.label,
                _seconds(m.numerator.seconds),
                m.denominator.label,
                _seconds(m.denominator.seconds),
                f"{m.ratio:.3g}x",
                str(m.repeats),
                "" if m.size is None else f"{m.size:,}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def run_scaling(
    source: str,
    *,
    out: Path,
    backends: Sequence[str] = (),
    repeats: int = 1,
    registry: Registry | None = None,
) -> tuple[list[Any], Path]:
    """Fit the log-log slopes of a run folder, or of a card's ``sizes`` run here.

    A card (a ``.toml`` path or a scenario id) is run at every size it lists, with
    ``backends`` (default: plaintext and the installed secure aggregate backends),
    leakage off, into ``out/cells``.

    Returns
    -------
    (list of ScalingFit, Path)
        The fits and the run folder they were read from.

    Raises
    ------
    ScalingError
        Not a run folder or card, a card without ``sizes``, or fewer than two sizes.
    """
    from pets.bench.cells import installed_secure_backends
    from pets.bench.scaling import ScalingError, fit_scaling, read_run_records

    path = Path(source)
    if backends and path.is_dir():
        raise OptionError("--backend", "applies only with --scaling CARD, not a run folder")
    if path.is_dir():
        return fit_scaling(read_run_records(path)), path
    from pets.runner import run
    from pets.scenarios import find_scenarios, load_scenario

    if path.suffix != ".toml" and source not in find_scenarios():
        raise ScalingError(f"{source} is neither a run folder nor a scenario card")
    card = load_scenario(source)
    if not card.data.sizes:
        raise ScalingError(
            f"{card.path}: field 'data.sizes' is missing; a scaling run needs the card to "
            "list sizes (sizes = [1_000, 10_000]) or a run folder of a size sweep"
        )
    from pets.options import check_out

    registry = registry or Registry.from_entry_points()
    names = list(backends) or ["plaintext", *installed_secure_backends(registry)]
    folder = check_out(out) / "cells"
    run(
        [str(card.path)],
        names,
        out=folder,
        repeats=repeats,
        leakage="off",
        registry=registry,
        progress=False,
    )
    return fit_scaling(read_run_records(folder)), folder
