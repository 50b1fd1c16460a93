"""Which cells of a run start first: the longest expected first.

On several cores a run in plan order can end with one long cell running alone while the
other cores sit idle (in ``pets demo`` the ``synth-dp`` cell of ``tre_queries``, about
150 s of DP audit, started last and ran alone for the run's last 110 s). Starting the
longest cells first (the longest-processing-time rule) lets the short ones fill in
beside them. The work is the same: only the order changes, and a run of one job at a
time keeps the plan's order.

How long a cell will take is what the same cell took last time on this machine
(:class:`CellTimes`, kept in the cache folder: seconds by cell, no rows or identifiers)
or, for a cell never timed here, a guess: one whose backend claims differential
privacy is audited with up to 60 reruns when attacks are on, so it is expected to be
long (:data:`AUDITED_GUESS_S`), any other short (:data:`OTHER_GUESS_S`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pets.cache import private_folder
from pets.records import Record, write_atomic

if TYPE_CHECKING:  # pragma: no cover
    from pets.runner import Cell

__all__ = [
    "AUDITED_GUESS_S",
    "OTHER_GUESS_S",
    "TIMES_FOLDER",
    "CellTimes",
    "cell_seconds",
    "longest_first",
    "signature",
]

#: The cache folder's name under :func:`pets.cache.cache_dir`.
TIMES_FOLDER = "cell_times"
#: Expected seconds of a cell never timed here whose DP claim the harness audits.
AUDITED_GUESS_S = 30.0
#: Expected seconds of any other cell never timed here.
OTHER_GUESS_S = 2.0
#: At most this many cells are remembered (the most recently timed are kept).
_MAX_ENTRIES = 5000
_FILE = "times.json"


def signature(cell: Cell, leakage: str) -> str:
    """The cell's work, whatever its seed and repeat: card version, backend,
    parameters, size and how hard it is attacked (a hash, so the file names nothing)."""
    work = [
        cell.scenario.id,
        cell.scenario.card_hash,
        cell.backend,
        dict(cell.params),
        cell.size,
        leakage,
    ]
    return hashlib.sha256(json.dumps(work, sort_keys=True, default=str).encode()).hexdigest()[:32]


def cell_seconds(record: Record) -> float | None:
    """Seconds an ``ok`` cell spent in its party processes and its attacks (None for
    another status: a failure's time says nothing about the next run's)."""
    if record.status != "ok":
        return None
    total = 0.0
    for value in (
        record.cost.get("wall_s"),
        record.cost.get("party_startup_s"),
        record.cost.get("party_load_s"),
        record.leakage.get("cost_s"),
    ):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            total += float(value)
    return total


class CellTimes:
    """Seconds each cell took when it last ran on this machine.

    Parameters
    ----------
    path : Path or None
        The file they are kept in; None keeps them for this run only.
    seconds : mapping of str to float
        What the file held, by :func:`signature`.
    """

    def __init__(self, path: Path | None, seconds: Mapping[str, float] | None = None) -> None:
        self.path = path
        self.seconds: dict[str, float] = dict(seconds or {})
        self._noted: dict[str, float] = {}

    @classmethod
    def load(cls) -> CellTimes:
        """The times kept in the cache folder; none (and nothing kept) when the folder
        cannot be used. A damaged file counts as empty."""
        try:
            path = private_folder(TIMES_FOLDER) / _FILE
        except OSError:
            return cls(None)
        return cls(path, _read(path))

    def expected(self, cell: Cell, leakage: str, audited: bool) -> float:
        """Seconds ``cell`` is expected to take: its last time here, else a guess."""
        known = self.seconds.get(signature(cell, leakage))
        if known is not None:
            return known
        return AUDITED_GUESS_S if audited and leakage != "off" else OTHER_GUESS_S

    def note(self, cell: Cell, leakage: str, record: Record) -> None:
        """Remember what ``cell`` took (an ``ok`` record only)."""
        seconds = cell_seconds(record)
        if seconds is not None:
            key = signature(cell, leakage)
            self.seconds[key] = self._noted[key] = seconds

    def save(self) -> None:
        """Add this run's times to the file (another run's written since are kept);
        a file that cannot be written is left as it was."""
        if self.path is None or not self._noted:
            return
        kept = {k: v for k, v in _read(self.path).items() if k not in self._noted}
        kept.update(self._noted)  # this run's times last, so the oldest go first
        kept = dict(list(kept.items())[-_MAX_ENTRIES:])
        with contextlib.suppress(OSError):
            write_atomic(self.path, json.dumps(kept).encode())


def _read(path: Path) -> dict[str, float]:
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in data.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
    }


def longest_first(
    cells: Sequence[Cell],
    times: CellTimes,
    leakage: str,
    audited: Callable[[Cell], bool],
) -> list[Cell]:
    """``cells``, the longest expected first; equal expectations keep their order."""
    return sorted(cells, key=lambda c: -times.expected(c, leakage, audited(c)))
