"""Intermediate exposure (attacker model A2): other parties' summaries in a party's view.

:mod:`pets.leakage.transcript` looks for other parties' individual values; a backend
that never ships a row can still ship what the ideal functionality withholds, such as
each party's per-cell totals in a "secure" aggregate, or each holder's total handed to
an MPC aggregator beside the shares. This attack computes, from every party's input,
the quantities an observer is not entitled to and searches the observer's received
bytes for them:

- ``aggregate``: each other party's per-cell count, sums and means
  (:func:`pets.tasks.local_aggregate`), its margins over each group-by column, and its
  totals over all cells;
- ``train``: each other party's row count, column sums and means, and the model the
  task's own fit (:func:`pets.tasks.fit_logistic`) gives on its rows alone (a local
  model, as a federated party would send it as its update).

Other task kinds have one data holder whose summaries are the business of the release
and query attacks; they are not applicable here.

Entitlement. A quantity is not searched when the observer may know it anyway: the
observer's own quantities; for the recipient, the quantities of every holder pooled and
of every holder but itself pooled (what the ideal output gives, exact); every number in
the output it learned; the parties' row counts when the claim declares
``input sizes``; local models and row counts when it declares model updates (a
federated update carries both); the aggregate summaries when it declares the holders'
tables (:func:`declares_tables`). Quantities too plain to
be told apart from chance (integers below 100, decimals of under three significant
digits) are not searched either.

Encodings. Binary: float64, float32 (and the float64 of its rounding), int64 and int32
when integer-valued, each little- and big-endian, at every byte offset (4-byte
patterns only while a view is short enough that chance matches stay rare,
:data:`MAX_NARROW_CHANCE`; ``float32_searched`` says whether they were)
(:func:`pets.leakage.transcript.scan`); this covers numpy arrays, Arrow columns and the
:mod:`pets.wire` frames, which carry numbers unencoded. Text: every decimal number in
the bytes (JSON, CSV, ``repr``) is parsed and matches a value it writes exactly, or
rounds to with at least five significant digits. Compressed or encrypted encodings are
not decoded (the distinguishing test of :mod:`pets.leakage.distinguishing` is the
check for those).

Score. Quantities fall in families (counts, sums and means of cells, margins and
totals; the local model). Families are ranked by the share found above their control,
and the attack rate is that of the leading group of families whose interval's lower
end stands highest above its control (so a leak of a handful of totals of each kind
is not diluted by hundreds of cells, and adds up to an interval that says so). The
control is the same search, in the same families, for the values moved by a small
offset (a few per mille), which nobody holds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from pets.leakage._base import AttackContext, AttackResult, not_applicable, rate_result
from pets.leakage.rates import Rate
from pets.leakage.transcript import scan, text_tokens

__all__ = [
    "attack",
    "binary_patterns",
    "declares_tables",
    "distinctive",
    "numbers_in",
    "party_quantities",
    "text_numbers",
    "text_runs",
]

ATTACK = "intermediate_exposure"
ATTACKER = "A2"

#: Integer-valued quantities below this magnitude are too common to search for.
MIN_INTEGER = 100

#: Decimal quantities need this many significant digits to be searched for.
MIN_DIGITS = 3

#: A text number that is not the exact value must carry this many significant digits.
ROUNDED_DIGITS = 5

#: Relative offset of the control values (nobody holds them; above a rounded match).
CONTROL_OFFSET = (2e-4, 1e-3)

#: Families of quantities, in search order.
FAMILIES = (
    *(
        f"{scope}.{stat}"
        for scope in ("cells", "margins", "totals")
        for stat in ("n", "sums", "means")
    ),
    "local_model",
)

Quantities = dict[str, np.ndarray]

#: A group of families is scored only from this many values found. Two turn up by
#: chance: a float64 count's pattern is mostly zero bytes, and after a frame's length
#: field two random bytes complete it (honest unpacked paillier's aggregator: two
#: counts of 24 in 1 of 25 runs).
MIN_HITS = 3

#: 4-byte patterns are searched only while the expected number of chance matches
#: (view length times patterns over 2**32) stays below this.
MAX_NARROW_CHANCE = 0.05

#: Printable characters in a row before bytes are read as text.
MIN_TEXT_RUN = 16

_TEXT_RUN = re.compile(rb"[\t\n\r\x20-\x7e]{%d,}" % MIN_TEXT_RUN)


# -- what each party's input gives ------------------------------------------------------
def party_quantities(frame: pd.DataFrame | None, task: Any, *, model: bool = True) -> Quantities:
    """Return a party's summaries, by family (:data:`FAMILIES`), as flat float64 arrays.

    Parameters
    ----------
    frame : DataFrame or None
        The party's rows (None or empty gives nothing).
    task : Task
        The cell's task; ``aggregate`` and ``train`` have summaries, others none.
    model : bool
        Whether to fit the local model (``train``).

    Returns
    -------
    dict
        Family name (``cells.n``, ``cells.sums``, ``cells.means``, the same for
        ``margins`` and ``totals``, and ``local_model``) to its values.
    """
    from pets.tasks import design_matrix, fit_logistic, labels, local_aggregate

    if frame is None or len(frame) == 0:
        return {}
    out: Quantities = {}
    if task.kind == "aggregate":
        sums = local_aggregate(frame, task)
        margins = [sums.groupby(level=level).sum() for level in sums.index.names]
        for scope, tables in (
            ("cells", [sums]),
            ("margins", margins),
            ("totals", [sums.sum().to_frame().T]),
        ):
            for stat, values in _statistics(tables).items():
                out[f"{scope}.{stat}"] = values
        return out
    if task.kind == "train":
        numeric = frame.select_dtypes("number").astype(np.float64)
        out["totals.n"] = np.asarray([float(len(frame))])
        out["totals.sums"] = numeric.sum().to_numpy()
        out["totals.means"] = numeric.mean().to_numpy()
        y = labels(frame, task)
        if model and 0 < y.sum() < y.size:
            model = fit_logistic(design_matrix(frame, task.params["features"]), y, task)
            out["local_model"] = np.append(np.asarray(model.coef, np.float64), model.intercept)
    return out


def _statistics(tables: list[pd.DataFrame]) -> Quantities:
    """Counts, sums and the means they give, of :func:`local_aggregate` tables."""
    n = np.concatenate([t["n"].to_numpy(np.float64) for t in tables])
    columns = [c for c in tables[0].columns if c.endswith("_sum")]
    sums = [np.concatenate([t[c].to_numpy(np.float64) for t in tables]) for c in columns]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = [np.where(n > 0, s / n, np.nan) for s in sums]
    return {
        "n": n,
        "sums": np.concatenate(sums) if sums else np.empty(0),
        "means": np.concatenate(means) if means else np.empty(0),
    }


def numbers_in(value: Any, depth: int = 0) -> np.ndarray:
    """Return every number inside ``value`` (dataclasses, tables, arrays, containers)."""
    if depth > 6 or value is None or isinstance(value, str | bytes):
        return np.empty(0)
    if isinstance(value, bool | int | float | np.number):
        return np.asarray([float(value)])
    if isinstance(value, pd.DataFrame | pd.Series):
        value = value.select_dtypes("number") if isinstance(value, pd.DataFrame) else value
        try:
            return np.asarray(value.to_numpy(np.float64)).ravel()
        except (TypeError, ValueError):
            return np.empty(0)
    if isinstance(value, np.ndarray):
        return value.astype(np.float64).ravel() if value.dtype.kind in "biuf" else np.empty(0)
    if isinstance(value, Mapping):
        parts = [numbers_in(v, depth + 1) for v in value.values()]
    elif isinstance(value, list | tuple | set | frozenset):
        parts = [numbers_in(v, depth + 1) for v in value]
    elif hasattr(value, "__dataclass_fields__"):
        parts = [numbers_in(getattr(value, f), depth + 1) for f in value.__dataclass_fields__]
    else:
        return np.empty(0)
    return np.concatenate(parts) if parts else np.empty(0)


def distinctive(values: np.ndarray) -> np.ndarray:
    """Which ``values`` are distinctive enough to search for (see the module docstring)."""
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    whole = finite & (values == np.round(values))
    digits = np.asarray(
        [
            _significant(repr(float(v))) if f and not w else 0
            for v, f, w in zip(values.tolist(), finite.tolist(), whole.tolist(), strict=True)
        ],
        int,
    )
    return (whole & (np.abs(values) >= MIN_INTEGER)) | (~whole & finite & (digits >= MIN_DIGITS))


def _significant(text: str) -> int:
    """Significant digits of a decimal number as written (trailing zeros of an integer
    do not count)."""
    whole, dot, fraction = text.lower().partition("e")[0].lstrip("+-").partition(".")
    digits = (whole + fraction).lstrip("0")
    return len(digits if dot else digits.rstrip("0"))


def _flat(quantities: Quantities, family: str) -> np.ndarray:
    return np.asarray(quantities.get(family, np.empty(0)), np.float64).ravel()


# -- encodings ---------------------------------------------------------------------------
def binary_patterns(values: np.ndarray) -> tuple[list[list[int]], list[list[int]]]:
    """Return, per value, its 8-byte and its 4-byte patterns (as little-endian integers):
    float64 and float32 (and the float64 of the float32), each little- and big-endian;
    int64 and int32 too for an integer of at least 2**32 (int64) or 2**16 (int32)."""
    values = np.asarray(values, np.float64)
    f64, f32 = values, values.astype(np.float32)
    whole = (values == np.round(values)) & (np.abs(values) < 2**62)
    ints = np.where(whole, values, 0).astype(np.int64)
    fits = whole & (np.abs(ints) < 2**31)
    wide_sets = [
        f64.astype("<f8").view("<u8"),
        f64.astype(">f8").view("<u8"),
        f32.astype(np.float64).astype("<f8").view("<u8"),
        f32.astype(np.float64).astype(">f8").view("<u8"),
        ints.astype("<i8").view("<u8"),
        ints.astype(">i8").view("<u8"),
    ]
    i32 = np.where(fits, ints, 0).astype(np.int32)
    narrow_sets = [
        f32.astype("<f4").view("<u4"),
        f32.astype(">f4").view("<u4"),
        i32.astype("<i4").view("<u4"),
        i32.astype(">i4").view("<u4"),
    ]
    # an integer's bytes are mostly zeros below 2**16 (int32) or 2**32 (int64): such
    # patterns turn up by chance inside other numbers' bytes, so they are not searched
    wide_int = whole & (np.abs(ints) >= 2**32)
    narrow_int = fits & (np.abs(ints) >= 2**16)
    wide, narrow = [], []
    for i in range(values.size):
        w = [int(s[i]) for s in wide_sets[: 6 if wide_int[i] else 4]]
        n = [int(s[i]) for s in narrow_sets[: 4 if narrow_int[i] else 2]]
        wide.append(sorted(set(w)))
        narrow.append(sorted(set(n)))
    return wide, narrow


def text_numbers(tokens: Iterable[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse decimal text tokens; return their values (sorted), half-widths of their last
    written digit, and significant digits."""
    rows = []
    for token in tokens:
        try:
            value = float(token)
        except ValueError:
            continue
        if not np.isfinite(value):
            continue
        text = token.decode("ascii", "replace").lower()
        mantissa, _, exponent = text.partition("e")
        decimals = len(mantissa.partition(".")[2])
        try:
            half = 0.5 * 10.0 ** (int(exponent or 0) - decimals)
        except OverflowError:  # "0e500": a zero no program writes, and no patient value
            continue
        rows.append((value, half, _significant(text)))
    if not rows:
        return np.empty(0), np.empty(0), np.empty(0, int)
    rows.sort()
    values, halves, digits = zip(*rows, strict=True)
    return np.asarray(values), np.asarray(halves), np.asarray(digits, int)


def text_runs(haystack: bytes) -> bytes:
    """Return the runs of printable text in ``haystack`` (at least :data:`MIN_TEXT_RUN`
    characters), joined by spaces: where a program writes numbers as text. Random
    bytes (ciphertexts, shares) hold digits too, but seldom so long a printable run."""
    return b" ".join(_TEXT_RUN.findall(haystack))


class _View:
    """One observer's received bytes, indexed once for every value searched."""

    def __init__(self, payloads: list[bytes]) -> None:
        self.haystack = b"".join(payloads)
        self.narrow_searched = True
        tokens = text_tokens(text_runs(self.haystack))
        self.values, self.halves, self.digits = text_numbers(tokens)

    def found(self, values: np.ndarray) -> np.ndarray:
        """Whether each value appears in any of its binary or text encodings."""
        values = np.asarray(values, np.float64)
        if values.size == 0:
            return np.zeros(0, bool)
        wide, narrow = binary_patterns(values)
        seen_wide = scan(self.haystack, (p for ps in wide for p in ps), 8)
        patterns = {p for ps in narrow for p in ps}
        # a 4-byte pattern turns up by chance about once in 2**32 offsets: in a long view
        # of random bytes (ciphertexts) many patterns would, so they are not searched
        self.narrow_searched = len(self.haystack) * len(patterns) < MAX_NARROW_CHANCE * 2**32
        seen_narrow = scan(self.haystack, patterns, 4) if self.narrow_searched else set()
        binary = np.asarray(
            [
                any(p in seen_wide for p in w) or any(p in seen_narrow for p in n)
                for w, n in zip(wide, narrow, strict=True)
            ],
            bool,
        )
        return binary | self._in_text(values)

    def _in_text(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(values.size, bool)
        if self.values.size == 0:
            return out
        reach = np.abs(values) * 1e-4 + 1e-9
        lo = np.searchsorted(self.values, values - reach, "left")
        hi = np.searchsorted(self.values, values + reach, "right")
        for i in np.flatnonzero(hi > lo):
            near = slice(lo[i], hi[i])
            gap = np.abs(self.values[near] - values[i])
            exact = gap == 0
            rounded = (gap <= self.halves[near]) & (self.digits[near] >= ROUNDED_DIGITS)
            out[i] = bool(np.any(exact | rounded))
        return out


# -- the attack --------------------------------------------------------------------------
def _entitled(
    context: AttackContext, observer: str, quantities: dict[str, Quantities]
) -> np.ndarray:
    """Every value ``observer`` may know anyway (see the module docstring)."""
    problem, task = context.problem, context.problem.task
    parts = [_flat(quantities.get(observer, {}), f) for f in FAMILIES]
    if observer == task.recipient:
        frames = [f for f in problem.party_data.values() if f is not None and len(f)]
        others = [
            f for n, f in problem.party_data.items() if n != observer and f is not None and len(f)
        ]
        for group in (frames, others):
            if group:
                pooled = party_quantities(pd.concat(group, ignore_index=True), task, model=False)
                parts += [_flat(pooled, f) for f in pooled]
        parts.append(numbers_in(context.output))
    declared = {item.strip().lower() for item in context.claim.declared_leakage}
    if "input sizes" in declared:
        for name, frame in problem.party_data.items():
            if frame is not None:
                parts.append(np.asarray([float(len(frame))]))
                parts.append(_flat(quantities.get(name, {}), "totals.n"))
    if declares_tables(context.claim):
        parts += [_flat(q, f) for q in quantities.values() for f in FAMILIES if f != "local_model"]
    if declared & {"model updates", "noisy model updates"}:  # local weights and row count
        parts += [_flat(q, f) for q in quantities.values() for f in ("local_model", "totals.n")]
    values = np.concatenate(parts) if parts else np.empty(0)
    return np.unique(values[np.isfinite(values)])


def declares_tables(claim: Any) -> bool:
    """Whether the claim declares the holders' tables (per-cell summaries) as leaked to
    some party, as the output checkers of statistical disclosure control do: a declared
    item naming the recipient ("holders' tables to the output checker"), never a word that
    merely contains "table"."""
    return any(
        item.strip().lower().startswith("holders' tables to ") for item in claim.declared_leakage
    )


def _outside(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Which ``values`` are not within a relative 1e-9 of any ``known`` value."""
    if known.size == 0 or values.size == 0:
        return np.ones(values.size, bool)
    at = np.clip(np.searchsorted(known, values), 1, known.size - 1)
    left, right = known[at - 1], known[at]
    gap = np.minimum(np.abs(values - left), np.abs(values - right))
    if known.size == 1:
        gap = np.abs(values - known[0])
    return gap > 1e-9 * np.maximum(np.abs(values), 1.0)


def _controls(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sign = rng.choice([-1.0, 1.0], size=values.size)
    moved = values * (1 + sign * rng.uniform(*CONTROL_OFFSET, size=values.size))
    whole = values == np.round(values)
    # integers move to another integer, as a count or a sum of 0/1 would
    step = np.maximum(np.round(np.abs(moved - values)), 1.0)
    return np.where(whole, values + sign * step, moved)


def _observe(
    context: AttackContext, observer: str, quantities: dict[str, Quantities], known_all: np.ndarray
) -> AttackResult:
    start = time.perf_counter()
    payloads = context.session.received_bytes(observer)
    others = [p for p in quantities if p != observer and quantities[p]]
    if not payloads:
        return not_applicable(ATTACK, ATTACKER, observer, "this party received nothing")
    if not others:
        return not_applicable(ATTACK, ATTACKER, observer, "no other party holds data")
    entitled = _entitled(context, observer, quantities)
    view = _View(list(payloads))
    limit = context.effort.attacks
    searched: list[tuple[str, np.ndarray, np.ndarray]] = []
    for family in FAMILIES:
        values = np.concatenate([_flat(quantities[p], family) for p in others])
        values = np.unique(values[distinctive(values)])
        values = values[_outside(values, entitled)]
        if values.size == 0:
            continue
        if values.size > limit:
            values = np.sort(context.rng.choice(values, limit, replace=False))
        controls = _controls(values, context.rng)
        searched.append((family, values, controls[_outside(controls, known_all)]))
    # one search of the view for every family's values and controls
    found = view.found(np.concatenate([np.concatenate(s[1:]) for s in searched] or [[]]))
    by_family: dict[str, dict[str, Any]] = {}
    at = 0
    for family, values, controls in searched:
        hits, control_hits = np.split(found[at : at + values.size + controls.size], [values.size])
        at += values.size + controls.size
        by_family[family] = {
            "hits": int(hits.sum()),
            "trials": int(values.size),
            "control_hits": int(control_hits.sum()),
            "control_trials": int(controls.size),
        }
    if not by_family:
        return not_applicable(
            ATTACK, ATTACKER, observer, "every other party's summary is entitled or too plain"
        )

    worst_name, worst = _worst(by_family)
    return rate_result(
        ATTACK,
        ATTACKER,
        observer,
        successes=worst["hits"],
        trials=worst["trials"],
        baseline=0.0,
        control=worst["control_hits"] / max(worst["control_trials"], 1),
        cost_s=time.perf_counter() - start,
        family=worst_name,
        by_family={k: v["hits"] / v["trials"] for k, v in by_family.items()},
        bytes_searched=len(view.haystack),
        float32_searched=view.narrow_searched,
        targets=others,
    )


def _worst(by_family: dict[str, dict[str, int]]) -> tuple[str, dict[str, int]]:
    """The families to score: the families ranked by rate above their control, and of
    those rankings' leading groups the one whose rate has the highest lower bound above
    its control, among groups with at least :data:`MIN_HITS` values found (a leak of a
    few totals of each kind adds up to an interval that says so; a single chance match
    in a family of three is not taken for a third of it leaked)."""

    def control(f: dict[str, int]) -> float:
        return f["control_hits"] / max(f["control_trials"], 1)

    ranked = sorted(
        by_family,
        key=lambda k: (
            Rate(by_family[k]["hits"], by_family[k]["trials"]).value - control(by_family[k])
        ),
        reverse=True,
    )
    best: tuple[float, str, dict[str, int]] | None = None
    total = dict.fromkeys(("hits", "trials", "control_hits", "control_trials"), 0)
    for i, name in enumerate(ranked):
        total = {k: total[k] + by_family[name][k] for k in total}
        if total["hits"] < MIN_HITS:  # one or two matches are as likely chance as a leak
            continue
        low = Rate(total["hits"], total["trials"]).interval[0] - control(total)
        if best is None or low > best[0]:
            best = (low, "+".join(ranked[: i + 1]), dict(total))
    if best is None:  # too little found: every family, pooled
        return "+".join(ranked), total
    return best[1], best[2]


def attack(context: AttackContext) -> list[AttackResult]:
    """Search every party's received bytes for other parties' summaries.

    Runs, like the transcript check, whatever attacker models the card lists; one
    result per party in the session for ``aggregate`` and ``train`` cells, nothing for
    other task kinds.
    """
    task = context.problem.task
    if task.kind not in ("aggregate", "train"):
        return []
    start = time.perf_counter()
    quantities = {
        name: party_quantities(frame, task) for name, frame in context.problem.party_data.items()
    }
    every = [_flat(q, f) for q in quantities.values() for f in q]
    every.append(numbers_in(context.output))
    known_all = np.unique(np.concatenate(every)) if every else np.empty(0)
    known_all = known_all[np.isfinite(known_all)]
    setup = time.perf_counter() - start
    results = [
        _observe(context, observer, quantities, known_all)
        for observer in context.session.party_names
    ]
    if results:
        results[0].cost_s += setup
    return results
