"""Transcript exposure (attacker model A2, honest-but-curious party).

For every party, the harness searches the bytes it received for a sample of other
parties' distinctive private values (identifiers and measurements), encoded the ways a
program would put them on the wire: little-endian int64/int32, float64/float32, and
decimal text. The share found is the attack rate. The control is the same search for
values of the same kind and magnitude that no party holds (each sampled value moved by
a small offset), which measures chance matches. A plaintext backend scores near 1; a
correct HE or MPC backend near 0, whatever it claims.

The search is vectorised (:func:`scan`): the received bytes are viewed as 64-bit words
at each of the 8 byte alignments and as 32-bit words at each of 4, and every word is
looked up among the sampled values' bit patterns at once (a table look-up of its low and
high 16 bits, then a sorted search of the few words that pass), so a binary pattern is
found wherever it starts, as a substring search finds it. Decimal text is
split into number tokens once (:func:`text_tokens`); a value's text counts when it is a
whole token (an integer also as ``<n>.0``), not when it is part of a longer run of
digits.

:func:`attack` runs the search over every party's received bytes, helpers included,
whatever attacker models the card lists: it is the harness's check that a backend
ships no plaintext, so a backend that cheats is caught even on a card without A2.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pets.leakage._base import AttackContext, AttackResult, not_applicable, rate_result
from pets.leakage.rates import Rate

__all__ = [
    "attack",
    "encodings",
    "scan",
    "silent_input_parties",
    "text_tokens",
    "transcript_exposure",
]

ATTACK = "transcript_exposure"
ATTACKER = "A2"

#: Above this many patterns, :func:`scan` prefilters on 24 bits instead of 16.
WIDE_PREFILTER = 4096

#: A decimal number as programs write it (``-12``, ``61.25``, ``1e-05``).
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")

#: Keeps the characters of decimal numbers and turns every other byte into a space.
_NUMBER_CHARS = bytes(c if chr(c) in "0123456789.-+eE" else 0x20 for c in range(256))


@dataclass(frozen=True)
class _Patterns:
    """The encodings of an array of values: for each value, the list of its patterns."""

    wide: list[list[int]]  # 8-byte little-endian patterns, read as unsigned integers
    narrow: list[list[int]]  # 4-byte little-endian patterns
    text: list[list[bytes]]  # decimal text forms


def _patterns(values: np.ndarray) -> _Patterns:
    """Return the byte patterns under which each of ``values`` may appear."""
    values = np.asarray(values)
    if values.dtype == object:
        parts = [_patterns(np.asarray([v])) for v in values.tolist()]
        return _Patterns(
            [p.wide[0] for p in parts], [p.narrow[0] for p in parts], [p.text[0] for p in parts]
        )
    if np.issubdtype(values.dtype, np.integer):
        ints = values.astype(np.int64)
        fits = ((ints >= -(2**31)) & (ints < 2**31)).tolist()
        narrow = ints.astype("<i4").view("<u4").tolist()
        return _Patterns(
            wide=[[w] for w in ints.astype("<i8").view("<u8").tolist()],
            narrow=[[p] if ok else [] for p, ok in zip(narrow, fits, strict=True)],
            text=[[str(v).encode()] for v in ints.tolist()],
        )
    f64 = values.astype(np.float64)
    f32 = values.astype(np.float32)
    back = f32.astype(np.float64)
    differs = (back != f64).tolist()
    wide = zip(f64.view("<u8").tolist(), back.view("<u8").tolist(), differs, strict=True)
    return _Patterns(
        wide=[[a, b] if d else [a] for a, b, d in wide],
        narrow=[[p] for p in f32.view("<u4").tolist()],
        text=[
            [repr(a).encode(), np.format_float_positional(b, trim="-").encode()]
            for a, b in zip(f64.tolist(), f32, strict=True)
        ],
    )


def encodings(value: Any) -> list[bytes]:
    """Return the byte patterns under which ``value`` may appear in a message.

    An integer: little-endian int64, int32 (when it fits) and decimal text. A float:
    little-endian float64 and float32, the float64 of its float32 rounding (when that
    differs), its ``repr`` and the shortest decimal text of its float32.
    """
    p = _patterns(np.asarray([value]))
    return (
        [int(w).to_bytes(8, "little") for w in p.wide[0]]
        + [int(w).to_bytes(4, "little") for w in p.narrow[0]]
        + p.text[0]
    )


def text_tokens(haystack: bytes) -> set[bytes]:
    """Return the decimal numbers written as text in ``haystack``, each once.

    Bytes that cannot be part of a number separate tokens; a token that is not one
    well-formed number yields the numbers inside it.
    """
    out: set[bytes] = set()
    for token in set(haystack.translate(_NUMBER_CHARS).split()):
        if _NUMBER.fullmatch(token):
            out.add(token)
        else:
            out.update(_NUMBER.findall(token))
    return out


def scan(haystack: bytes, patterns: Iterable[int], width: int) -> set[int]:
    """Return which of the ``width``-byte little-endian ``patterns`` occur in ``haystack``.

    Parameters
    ----------
    haystack : bytes
        The bytes searched, at every byte offset.
    patterns : iterable of int
        Unsigned integers below ``2 ** (8 * width)``.
    width : {4, 8}
        Pattern length in bytes.

    Returns
    -------
    set of int
        The patterns found.
    """
    dtype = {8: "<u8", 4: "<u4"}[width]
    needles = np.unique(np.fromiter(patterns, dtype=np.uint64)).astype(dtype)
    if needles.size == 0:
        return set()
    # cheap prefilter: the low and the high 16 bits of a word must both occur among the
    # needles' (two table look-ups per word); the few words that pass are searched exactly.
    # Past a few thousand needles 16-bit tables fill up, and 24-bit ones are used.
    bits = 16 if needles.size <= WIDE_PREFILTER else 24
    low_table = np.zeros(1 << bits, bool)
    high_table = np.zeros(1 << bits, bool)
    mask = needles.dtype.type((1 << bits) - 1)
    low_table[(needles & mask).astype(np.intp)] = True
    high_table[(needles >> needles.dtype.type(8 * width - bits)).astype(np.intp)] = True
    step = width // 2
    present = np.zeros(needles.size, bool)
    last = needles.size - 1
    for offset in range(width):
        count = (len(haystack) - offset) // width
        if count <= 0:
            break
        words = np.frombuffer(haystack, dtype=dtype, count=count, offset=offset)
        if bits == 16:
            halves = step * (count - 1) + 1
            low = np.frombuffer(haystack, dtype="<u2", count=halves, offset=offset)[::step]
            high = np.frombuffer(haystack, dtype="<u2", count=halves, offset=offset + width - 2)
            words = words[low_table[low] & high_table[high[::step]]]
        else:
            low = (words & mask).astype(np.intp)
            high = (words >> words.dtype.type(8 * width - bits)).astype(np.intp)
            words = words[low_table[low] & high_table[high]]
        at = np.searchsorted(needles, words)
        np.minimum(at, last, out=at)
        present[at[needles[at] == words]] = True
    return set(needles[present].tolist())


class _Haystack:
    """One party's received bytes, indexed once for every value searched."""

    def __init__(self, haystack: bytes) -> None:
        self.haystack = haystack
        self.size = len(haystack)
        self._tokens: set[bytes] | None = None

    @property
    def tokens(self) -> set[bytes]:
        if self._tokens is None:
            self._tokens = text_tokens(self.haystack)
        return self._tokens

    def found(self, batches: list[_Patterns]) -> list[np.ndarray]:
        """Return, per batch, whether each value appears under any of its encodings."""
        wide = scan(self.haystack, (w for b in batches for ws in b.wide for w in ws), 8)
        narrow = scan(self.haystack, (w for b in batches for ws in b.narrow for w in ws), 4)
        tokens = self.tokens
        out = []
        for b in batches:
            hits = [
                any(w in wide for w in ws)
                or any(w in narrow for w in ns)
                or any(t in tokens or (t + b".0") in tokens for t in ts)
                for ws, ns, ts in zip(b.wide, b.narrow, b.text, strict=True)
            ]
            out.append(np.asarray(hits, bool))
        return out


def _controls(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if np.issubdtype(values.dtype, np.integer):
        return values + rng.integers(1, 1000, size=values.size)
    scale = np.maximum(np.abs(values.astype(np.float64)), 1.0)
    return values.astype(np.float64) + scale * rng.uniform(1e-4, 1e-3, size=values.size)


def _observe(
    observer: str,
    payloads: list[bytes],
    sensitive: Mapping[str, Mapping[str, np.ndarray]],
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Search one observer's received bytes; return counts, or ``why`` it cannot."""
    start = time.perf_counter()
    targets = [p for p in sensitive if p != observer and any(len(v) for v in sensitive[p].values())]
    out: dict[str, Any] = {"observer": observer, "targets": targets}
    if not payloads or not targets:
        out["why"] = (
            "this party received nothing"
            if not payloads
            else "no other party holds sensitive values"
        )
        return out
    columns = [(t, c, np.asarray(v)) for t in targets for c, v in sensitive[t].items() if len(v)]
    batches = []
    for _, _, values in columns:
        batches += [_patterns(values), _patterns(_controls(values, rng))]
    haystack = _Haystack(b"".join(payloads))
    found = haystack.found(batches)
    hits = sum(int(f.sum()) for f in found[0::2])
    control_hits = sum(int(f.sum()) for f in found[1::2])
    out.update(
        hits=hits,
        control_hits=control_hits,
        trials=sum(v.size for _, _, v in columns),
        bytes_searched=haystack.size,
        by_column={
            f"{t}.{c}": float(f.mean()) for (t, c, _), f in zip(columns, found[0::2], strict=True)
        },
        cost_s=time.perf_counter() - start,
    )
    return out


def transcript_exposure(
    received: Mapping[str, Iterable[bytes]],
    sensitive: Mapping[str, Mapping[str, np.ndarray]],
    *,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Run the transcript-exposure attack for every observing party.

    Parameters
    ----------
    received : Mapping
        Party name to the payloads it received (its protocol view).
    sensitive : Mapping
        Party name to column to a sample of its private values.
    seed : int
        Seed for the control values.

    Returns
    -------
    list of dict
        One attack result per party; parties that received nothing are marked not
        applicable, never zero.
    """
    rng = np.random.default_rng(seed)
    return [
        _result(observer, _observe(observer, list(payloads), sensitive, rng)).to_dict()
        for observer, payloads in received.items()
    ]


def _result(observer: str, seen: dict[str, Any]) -> AttackResult:
    """Turn one party's search into its result, the control netted out."""
    if "why" in seen:
        return not_applicable(ATTACK, ATTACKER, observer, seen["why"])
    control = Rate(seen["control_hits"], seen["trials"]).value
    return rate_result(
        ATTACK,
        ATTACKER,
        observer,
        successes=seen["hits"],
        trials=seen["trials"],
        baseline=control,
        control=control,
        cost_s=seen["cost_s"],
        by_column=seen["by_column"],
        bytes_searched=seen["bytes_searched"],
        targets=seen["targets"],
    )


def attack(context: AttackContext) -> list[AttackResult]:
    """Search every party's received bytes for the other parties' sensitive values.

    Runs on every task kind and whatever attacker models the card lists (see the module
    docstring): it is how the harness catches a backend that ships plaintext. One result
    per party in the session (helpers such as key holders and MPC servers included);
    a party that received nothing, or whose peers hold no sensitive values, is not
    applicable. The control (values moved by a small offset) is the baseline netted out.
    """
    session, sensitive = context.session, context.problem.sensitive
    return [
        _result(
            observer,
            _observe(observer, session.received_bytes(observer), sensitive, context.rng),
        )
        for observer in session.party_names
    ]


def silent_input_parties(problem: Any, session: Any) -> list[str] | None:
    """The parties other than the recipient that hold data and sent nothing at all, when
    every one of them was silent; None otherwise.

    An output that needs other parties' data and was produced without a byte from any
    of them came by a route the harness does not carry (a file, a socket of its own, a
    shared object): the harness flags it ``no_traffic_for_inputs`` whatever the claim.
    A backend that uses one party's data alone (``local_only``) has that party send the
    model, so it is not flagged; nor is a cell whose only data holder is the recipient.
    """
    task = problem.task
    holders = [
        name
        for name, data in problem.party_data.items()
        if data is not None and name != task.recipient
    ]
    if not holders:
        return None
    sent = session.meter().bytes_by_party
    silent = [name for name in holders if sent.get(name, {}).get("sent", 0) == 0]
    return silent if len(silent) == len(holders) else None
