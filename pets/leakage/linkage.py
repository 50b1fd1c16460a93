"""Attacks on record linkage (task kind ``linkage``, attacker model A2).

Two attacks by an honest-but-curious party:

- ``dictionary_reidentification``: the NHS number space is enumerable, and a party that
  holds a region's list of candidate numbers (every valid number registered there)
  hashes them the ways a motivated intruder would try and joins the digests with the
  tokens it received, normalised as :mod:`pets.leakage.identifiers` describes: the
  number decimal, grouped (``485 777 3456``, dashed, dotted) or as int64 bytes, under
  MD5, SHA-1, SHA-256, SHA-512 and BLAKE2 digests, unsalted, and the decimal number
  with every short byte string the party received (whole, or the string a wire message
  carries) taken as a candidate salt (before and after the number) or HMAC-SHA256 key;
  each digest found as hex of either case, base64 (standard or URL-safe, padded or
  not) or raw bytes, whole or truncated to 4 bytes or more; plus the numbers
  themselves, as decimal or grouped text or int64 of either byte order (a backend
  that ships them in the clear). Tokens are the hex and base64 runs in the received
  bytes and the strings inside
  any :mod:`pets.wire` message. Each party in the session is an observer (helpers such
  as a key holder included). Success is the share of the patients outside the declared
  output (the other data holders' eligible patients not in the intersection) whose
  number the observer recovers; the control is the share of dictionary numbers held by
  nobody (decoys) that it "recovers", the false matches. The dictionary is the
  harness's ``problem.evaluation["dictionary"]`` (every number the parties hold plus as
  many fresh valid decoys; :func:`pets.tasks.linkage.candidate_identifiers`), never the
  other party's list alone.
- ``cardinality_probing``: where the recipient learns only the size of the intersection
  (``reveal = "cardinality"``), it runs the protocol again with chosen inputs: a base set
  of its own eligible rows (:data:`BASE_ROWS` of them: a small set makes each run cheap
  and changes nothing in the attack), then the base set plus one target (its own row,
  or one of its rows carrying the target's number). The difference of the two
  cardinalities says whether the target is in the other party's eligible set (for this
  card: aged 40-75 with HbA1c above 48). Targets are balanced (half in that set, half
  not, drawn from the region's numbers), so guessing scores one half. Each probe is a
  full protocol run through the rerun oracle; the number of probes is
  ``effort.targets`` within a time budget (``effort.probe_seconds``), taken
  in member/non-member pairs so that stopping early keeps the balance. Where the
  recipient learns the intersection itself, probing adds nothing to the declared output
  and the result says so.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from pets.leakage._base import (
    AttackContext,
    AttackResult,
    balanced_targets,
    not_applicable,
    rate_result,
)
from pets.leakage.identifiers import (
    DIGESTS,
    WRITTEN_FORMS,
    ObservedTokens,
    digest_heads,
    written_numbers,
)
from pets.leakage.transcript import scan, text_tokens
from pets.tasks.linkage import candidate_identifiers, eligible
from pets.wire import try_unpack

__all__ = [
    "attack",
    "cardinality_probing",
    "dictionary_reidentification",
    "hex_tokens",
    "wire_strings",
]

ATTACKER = "A2"

#: Hex-digest lengths of the hash functions tried.
DIGEST_HEX = {"md5": 32, "sha1": 40, "sha256": 64}

#: Digests tried with each candidate salt before and after the decimal number.
SALTED_DIGESTS = ("md5", "sha1", "sha256", "blake2s")

#: Received payloads up to this many bytes are tried as salts and keys.
MAX_SALT_BYTES = 64

#: Candidate salts tried per observer, by mode.
MAX_SALTS = {"fast": 4, "full": 16}

#: Rows of the recipient's own in the base set of a cardinality probe.
BASE_ROWS = 64

_HEX_RUN = re.compile(rb"[0-9a-fA-F]{32,}")


def attack(context: AttackContext) -> list[AttackResult]:
    """Run the linkage attacks (nothing for other task kinds, or without A2)."""
    if context.problem.task.kind != "linkage" or not context.applies(ATTACKER):
        return []
    return dictionary_reidentification(context) + cardinality_probing(context)


# -- tokens ------------------------------------------------------------------------------
def hex_tokens(haystack: bytes) -> set[str]:
    """Return the hex strings in ``haystack`` that could be MD5, SHA-1 or SHA-256 digests.

    A run of hex characters longer than a digest (tokens stored back to back, as in an
    Arrow string column) is cut into digest-sized pieces from its start and from its
    end. Lower case.
    """
    out: set[str] = set()
    lengths = sorted(set(DIGEST_HEX.values()))
    for raw in _HEX_RUN.findall(haystack):
        run = raw.decode("ascii").lower()
        size = len(run)
        for d in lengths:
            if size == d:
                out.add(run)
            elif size > d:
                for start in {0, size % d}:
                    out.update(run[i : i + d] for i in range(start, size - d + 1, d))
    return out


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.hex()
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, pd.DataFrame):
        for column in value.columns:
            series = value[column]
            if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
                yield from (v for v in series.tolist() if isinstance(v, str | bytes))
    elif isinstance(value, np.ndarray) and value.dtype.kind in "US":
        yield from (v if isinstance(v, str) else v.hex() for v in value.ravel().tolist())


def wire_strings(payloads: Iterable[bytes], *, fold_case: bool = True) -> set[str]:
    """Return every string inside the payloads that decode as :mod:`pets.wire` messages
    (or streams of them), lower case unless ``fold_case`` is false (base64 needs its
    case); other payloads are skipped."""
    out: set[str] = set()
    for payload in payloads:
        for message in _messages(payload):
            out.update(s.lower() if fold_case else s for s in _strings(message))
    return out


def _messages(payload: bytes, limit: int = 4096) -> list[Any]:
    """Decode ``payload`` as one wire message, or as a stream of them
    (:func:`pets.wire.join_frames`); anything else gives nothing."""
    whole = try_unpack(payload)
    if whole is not None:
        return [whole]
    parts, i = [], 0
    while i < len(payload):
        n = int.from_bytes(payload[i : i + 8], "little")
        if n == 0 or i + 8 + n > len(payload) or len(parts) >= limit:
            return []
        parts.append(payload[i + 8 : i + 8 + n])
        i += 8 + n
    return [m for m in map(try_unpack, parts) if m is not None]


# -- dictionary re-identification ----------------------------------------------------------
def _candidate_salts(payloads: list[bytes], limit: int) -> list[bytes]:
    """Short payloads: each whole, then the strings of its wire message (a salt sent
    with :func:`pets.wire.pack` arrives framed)."""
    salts: list[bytes] = []
    short = [p for p in payloads if 0 < len(p) <= MAX_SALT_BYTES]
    decoded = [
        s if isinstance(s, bytes) else s.encode()
        for p in short
        for m in _messages(p)
        for s in _strings(m)
    ]
    for candidate in [*short, *decoded]:
        if candidate and candidate not in salts:
            salts.append(candidate)
    return salts[:limit]


def _schemes(
    salts: list[bytes],
) -> list[tuple[str, tuple[str, str, bytes], Callable[[bytes], bytes]]]:
    """Return ``(name, cache key, function of a written form)`` for every scheme: each
    digest of each written form unsalted, and the salted and keyed digests of the
    decimal number. Names number the salts; keys hold them."""
    out: list[tuple[str, tuple[str, str, bytes], Callable[[bytes], bytes]]] = []
    for algorithm, digest in DIGESTS.items():
        for form in WRITTEN_FORMS:
            name = algorithm if form == "decimal" else f"{algorithm}({form})"
            out.append((name, (algorithm, form, b""), digest))
    for algorithm in SALTED_DIGESTS:
        digest = DIGESTS[algorithm]
        for i, salt in enumerate(salts):
            out.append(
                (
                    f"{algorithm}(salt{i}+id)",
                    (algorithm, "prefix", salt),
                    lambda s, d=digest, a=salt: d(a + s),
                )
            )
            out.append(
                (
                    f"{algorithm}(id+salt{i})",
                    (algorithm, "suffix", salt),
                    lambda s, d=digest, a=salt: d(s + a),
                )
            )
    for i, salt in enumerate(salts):
        out.append(
            (
                f"hmac-sha256(key=salt{i})",
                ("hmac-sha256", "key", salt),
                lambda s, a=salt: hmac.new(a, s, hashlib.sha256).digest(),
            )
        )
    return out


def _eligible_ids(context: AttackContext) -> dict[str, np.ndarray]:
    task = context.problem.task
    id_column = task.params["id_column"]
    return {
        name: eligible(frame, task, name)[id_column].to_numpy(np.int64)
        for name, frame in context.problem.party_data.items()
    }


def _dictionary(context: AttackContext) -> np.ndarray:
    found = context.problem.evaluation.get("dictionary")
    if found is not None:
        return np.asarray(found, dtype=np.int64)
    id_column = context.problem.task.params["id_column"]
    held = [f[id_column].to_numpy() for f in context.problem.party_data.values()]
    return candidate_identifiers(held, context.rng)


def _in_clear(haystack: bytes, dictionary: np.ndarray, texts: list[bytes]) -> np.ndarray:
    """Which dictionary numbers the bytes hold unhashed: decimal or grouped text, or
    int64 of either byte order."""
    little = dictionary.astype("<i8").view("<u8")
    big = dictionary.astype(">i8").view("<u8")
    words = scan(haystack, [*little.tolist(), *big.tolist()], 8)
    numbers = text_tokens(haystack)
    grouped = written_numbers(haystack)
    return np.fromiter(
        (
            lw in words or bw in words or t in numbers or v in grouped
            for lw, bw, t, v in zip(
                little.tolist(), big.tolist(), texts, dictionary.tolist(), strict=True
            )
        ),
        bool,
        count=dictionary.size,
    )


def dictionary_reidentification(context: AttackContext) -> list[AttackResult]:
    """Reverse pseudonymised identifiers with a dictionary of the region's NHS numbers.

    Returns
    -------
    list of AttackResult
        One per party in the session (see the module docstring).
    """
    name = "dictionary_reidentification"
    start = time.perf_counter()
    task = context.problem.task
    ids = _eligible_ids(context)
    matched = functools.reduce(np.intersect1d, ids.values())
    dictionary = _dictionary(context)
    held = np.unique(
        np.concatenate(
            [
                f[task.params["id_column"]].to_numpy(np.int64)
                for f in context.problem.party_data.values()
            ]
        )
    )
    decoys = ~np.isin(dictionary, held)
    numbers = dictionary.tolist()
    written = {form: [write(n) for n in numbers] for form, write in WRITTEN_FORMS.items()}
    texts = written["decimal"]
    # scheme -> the dictionary's digests and their first 8 bytes
    digests: dict[tuple[str, str, bytes], tuple[list[bytes], np.ndarray]] = {}
    setup_s = time.perf_counter() - start
    results = []
    for observer in context.session.party_names:
        observer_start = time.perf_counter()
        payloads = context.session.received_bytes(observer)
        others = [p for p in ids if p != observer]
        targets = np.setdiff1d(np.concatenate([ids[p] for p in others]), matched)
        if not payloads:
            results.append(not_applicable(name, ATTACKER, observer, "this party received nothing"))
            continue
        if targets.size == 0:
            results.append(
                not_applicable(
                    name, ATTACKER, observer, "no other party holds patients outside the output"
                )
            )
            continue
        haystack = b"".join(payloads)
        strings = wire_strings(payloads, fold_case=False)
        observed = ObservedTokens(haystack, strings)
        salts = _candidate_salts(payloads, MAX_SALTS.get(context.mode, MAX_SALTS["fast"]))
        schemes = _schemes(salts)
        in_targets = np.isin(dictionary, targets)
        recovered = _in_clear(haystack, dictionary, texts)
        by_scheme: dict[str, float] = {"plain": float(recovered[in_targets].mean())}
        for _, key, digest in schemes:
            if key not in digests:
                inputs = written[key[1]] if key[1] in written else texts
                computed = [digest(t) for t in inputs]
                digests[key] = (computed, digest_heads(computed))
        observed.find_raw(np.concatenate([digests[key][1] for _, key, _ in schemes]))
        for scheme, key, _ in schemes:
            hit = observed.match(*digests[key])
            if hit.any():
                by_scheme[scheme] = float(hit[in_targets].mean())
                recovered |= hit
        successes = int(recovered[in_targets].sum())
        control_hits = int(recovered[decoys].sum())
        results.append(
            rate_result(
                name,
                ATTACKER,
                observer,
                successes=successes,
                trials=int(targets.size),
                baseline=0.0,
                control=control_hits / max(int(decoys.sum()), 1),
                cost_s=setup_s + time.perf_counter() - observer_start,
                by_scheme=by_scheme,
                schemes_tried=1 + len(schemes),
                candidate_salts=len(salts),
                tokens_seen=len(observed),
                dictionary_size=int(dictionary.size),
                decoys=int(decoys.sum()),
            )
        )
        setup_s = 0.0  # the shared set-up counts once
    return results


# -- cardinality probing -------------------------------------------------------------------
def cardinality_probing(context: AttackContext) -> list[AttackResult]:
    """Learn membership in the other party's eligible set from repeated cardinalities.

    Returns
    -------
    list of AttackResult
        One result, observed by the recipient (see the module docstring).
    """
    name = "cardinality_probing"
    task = context.problem.task
    recipient = task.recipient
    if task.params["reveal"] != "cardinality":
        return [
            not_applicable(
                name,
                ATTACKER,
                recipient,
                "the recipient already learns the matched identifiers as declared output "
                "(reveal = intersection): probing tells it nothing more about them",
            )
        ]
    if context.rerun is None:
        return [not_applicable(name, ATTACKER, recipient, "no rerun oracle to probe with")]
    start = time.perf_counter()
    id_column = task.params["id_column"]
    others = [p for p in task.party_names if p != recipient and p in context.problem.party_data]
    if len(others) != 1:
        return [
            not_applicable(name, ATTACKER, recipient, "probing is built for two data holders only")
        ]
    (other,) = others
    ids = _eligible_ids(context)
    dictionary = _dictionary(context)
    own = eligible(context.problem.party_data[recipient], task, recipient).reset_index(drop=True)
    if own.empty:
        return [not_applicable(name, ATTACKER, recipient, "the recipient has no eligible rows")]
    members = np.isin(dictionary, ids[other]).astype(int)
    picked = dictionary[balanced_targets(members, context.effort.targets, context.rng)]
    if picked.size < 2:
        return [not_applicable(name, ATTACKER, recipient, "too few candidates to probe")]
    is_member = np.isin(picked, ids[other])
    truth = set(picked[is_member].tolist())
    pairs = list(zip(picked[is_member].tolist(), picked[~is_member].tolist(), strict=True))
    base = own[~own[id_column].isin(picked)].reset_index(drop=True)
    if len(base) > BASE_ROWS:
        base = base.iloc[np.sort(context.rng.choice(len(base), BASE_ROWS, replace=False))]
        base = base.reset_index(drop=True)
    budget = context.effort.probe_seconds

    def cardinality(frame: pd.DataFrame) -> int:
        data = {**context.problem.party_data, recipient: frame}
        output, _ = context.run_again(replace(context.problem, party_data=data))
        return int(output.cardinality)

    probe_start = time.perf_counter()
    reference = cardinality(base)
    correct = trials = 0
    for pair in pairs:
        for target in pair:
            row = own[own[id_column] == target]
            if row.empty:  # not the recipient's patient: a row of its own with the number
                row = own.iloc[[int(context.rng.integers(len(own)))]].copy()
                row[id_column] = np.asarray([target], dtype=own[id_column].dtype)
            guess = cardinality(pd.concat([base, row], ignore_index=True)) > reference
            correct += int(guess == (target in truth))
            trials += 1
        if time.perf_counter() - probe_start > budget:
            break
    runs = trials + 1
    probe_s = time.perf_counter() - probe_start
    return [
        rate_result(
            name,
            ATTACKER,
            recipient,
            successes=correct,
            trials=trials,
            baseline=0.5,
            cost_s=time.perf_counter() - start,
            note="" if trials == 2 * len(pairs) else f"stopped at the time budget ({budget:g} s)",
            probes=trials,
            seconds_per_run=probe_s / runs,
            base_rows=len(base),
            budget_s=float(budget),
        )
    ]
