"""Transcript distinguishing (attacker model A2): does a party's view tell apart two
inputs with the same ideal output?

The value searches (:mod:`pets.leakage.transcript`, :mod:`pets.leakage.intermediates`)
find what they know how to decode. This test needs no decoding: the harness reruns the
backend (the rerun oracle) on two inputs that give exactly the same ideal output and
differ only in which holder holds what, and asks whether an observing party's received
bytes tell the two apart.

Inputs (``aggregate``): a sample of each holder's rows (:data:`ROWS` at most), its
measures rounded to quarters so that every sum is exact in any order; input B swaps
the measures of rows in the same cell between pairs of holders. Every cell's pooled
count and sums, and every holder's row count, are the same in A and B; each holder's
per-cell sums differ.

Test: :data:`RUNS` runs of each input (by mode), in an order drawn from the cell's
generator. A view is the observer's received bytes, messages ordered by sender and tag
(:func:`view_of`). For each observer and each run left out in turn, the 4-byte windows
(at every byte offset) constant across the other runs of A and across the other runs
of B, but different between them, are its features (and the length of the view, when
constant within each input and different between them); the left-out view is put with
the input it agrees with at more of them. A tie (no features, as for ciphertexts and
shares that change every run) is a failure. The success rate is the share classified
right; guessing scores one half. The control is the same test, on the same views,
under other labellings with as many views of each label (:data:`CONTROLS` of them,
drawn from the cell's generator; a permutation test's null), averaged: the share a
view's chance agreements alone would classify right.

Confirmation: when the first runs tell some observer's views apart better than its
control, the harness runs each input again up to :data:`CONFIRM_RUNS` in all and
scores every observer on all of them. Four runs of each input are too few to tell a
leak from chance: a fresh random value often has a one-bit property at a fixed offset
(whether a random share's encoding takes 16 bytes or 17), and such a bit is the same
within each input's four runs and different between them in 2 of the 256 ways eight
fair coins fall, when it tells every view apart (8 of 8) with no leak at all. Over
twelve runs of each the chance is 2 in 2**24; a leak, constant in every run of an
input, is told apart in all of them.

A backend whose claim declares the holders' tables
(:func:`pets.leakage.intermediates.declares_tables`) is not tested: the two inputs
differ in exactly those.

Blind spots: a leak the backend randomises on every run (noise, random padding or
order, a fresh key) leaves no constant position, and only the value searches can find
it; a leak in a view whose length varies run to run is only compared up to the
shortest view. A backend that checks its input (200 rows a holder, measures in
quarters) can tell a rerun from the cell's run and leak only in the latter. Other task
kinds are not tested (their inputs with equal ideal output
are not built here).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from pets.leakage._base import AttackContext, AttackResult, not_applicable, rate_result
from pets.leakage.intermediates import declares_tables

__all__ = ["attack", "classify", "classify_labelled", "relabellings", "swapped_inputs", "view_of"]

ATTACK = "transcript_distinguishing"
ATTACKER = "A2"

#: Runs of each of the two inputs, by mode.
RUNS = {"fast": 4, "full": 12}

#: Runs of each input a result above its control is scored on: fewer runs first, then
#: this many in all when some observer's views were told apart (see the module docstring).
CONFIRM_RUNS = 12

#: Rows of each holder in the two inputs.
ROWS = 200

#: Relabellings of the runs the control averages over.
CONTROLS = 16

#: Byte offsets compared at once (bounds the memory of long views).
CHUNK = 1 << 18


def swapped_inputs(problem: Any, rng: np.random.Generator) -> tuple[Any, Any]:
    """Return two problems with the same ideal output and different holdings (see the
    module docstring); None for B when no row could be swapped."""
    task = problem.task
    group_by = list(task.params["group_by"])
    measures = sorted({m["column"] for m in task.params["measures"]})
    holders = [n for n, f in problem.party_data.items() if f is not None and len(f)]
    sample = {}
    for name in holders:
        frame = problem.party_data[name]
        rows = np.sort(rng.choice(len(frame), min(ROWS, len(frame)), replace=False))
        frame = frame.iloc[rows].reset_index(drop=True).copy()
        for column in measures:  # integers stay as they are; decimals to quarters
            if not pd.api.types.is_integer_dtype(frame[column]) and not pd.api.types.is_bool_dtype(
                frame[column]
            ):
                frame[column] = np.round(frame[column].astype(np.float64) * 4) / 4
        sample[name] = frame
    swapped = {n: f.copy() for n, f in sample.items()}
    moved = 0
    for left, right in zip(holders[0::2], holders[1::2], strict=False):
        a, b = swapped[left], swapped[right]
        cells_b = b.groupby(group_by, observed=True).indices
        for cell, rows_a in a.groupby(group_by, observed=True).indices.items():
            rows_b = cells_b.get(cell)
            if rows_b is None:
                continue
            m = min(len(rows_a), len(rows_b))
            ia, ib = rows_a[:m], rows_b[:m]
            values_a = a.loc[ia, measures].to_numpy()
            values_b = b.loc[ib, measures].to_numpy()
            moved += int((values_a != values_b).any(axis=1).sum())
            a.loc[ia, measures] = values_b
            b.loc[ib, measures] = values_a
    first = replace(problem, party_data={**problem.party_data, **sample})
    second = replace(problem, party_data={**problem.party_data, **swapped})
    return first, (second if moved else None)


def view_of(session: Any, observer: str) -> bytes:
    """The bytes ``observer`` received, messages ordered by sender and tag (each pair's
    in the order sent), so that the interleaving of parties running at once does not
    move a value from run to run; then what its own sockets received."""
    messages = [m for m in session.transcript if m.receiver == observer]
    ordered = sorted(messages, key=lambda m: (m.sender, m.tag))
    raw = session.received_bytes(observer)[len(messages) :]
    return b"".join([m.payload for m in ordered] + raw)


def _windows(matrix: np.ndarray) -> np.ndarray:
    """Every 4-byte window of each row (views as rows), one per byte offset."""
    m = matrix.astype(np.uint32)
    return m[:, :-3] | (m[:, 1:-2] << 8) | (m[:, 2:-1] << 16) | (m[:, 3:] << 24)


def classify(views_a: list[bytes], views_b: list[bytes]) -> int:
    """Return how many views, each left out in turn, the others put with their input.

    Features are the 4-byte windows, at every byte offset, constant across the other
    runs of each input and different between the inputs (a single byte is too often
    constant by chance: the sign and exponent bytes of random floats are); the view's
    length is one more feature when constant within each input.
    """
    labels = np.array([0] * len(views_a) + [1] * len(views_b))
    return int(classify_labelled(views_a + views_b, [labels])[0])


def relabellings(labels: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Up to ``count`` distinct labellings of the views with as many of each label as
    ``labels``, neither ``labels`` nor its mirror image (the two split the views the
    same way): the control's labellings, under which nothing tells the groups apart."""
    n, ones = len(labels), int(labels.sum())
    seen = {tuple(labels), tuple(1 - labels)}
    found: list[np.ndarray] = []
    for _ in range(50 * count):  # far more draws than labellings wanted
        if len(found) == count:
            break
        candidate = np.zeros(n, int)
        candidate[rng.choice(n, ones, replace=False)] = 1
        if tuple(candidate) in seen:
            continue
        seen.update({tuple(candidate), tuple(1 - candidate)})
        found.append(candidate)
    return found


class _Agreement:
    """Where two views' windows agree, each pair of views compared once."""

    def __init__(self, windows: np.ndarray) -> None:
        self._windows = windows
        self._pairs: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, j: int, m: int) -> np.ndarray:
        key = (min(j, m), max(j, m))
        if key not in self._pairs:
            self._pairs[key] = self._windows[key[0]] == self._windows[key[1]]
        return self._pairs[key]


def classify_labelled(views: list[bytes], labellings: list[np.ndarray]) -> np.ndarray:
    """For each labelling of ``views`` (0 and 1), how many views, each left out in turn,
    the others put with their own label (see :func:`classify`); the windows are built
    once for every labelling."""
    count = len(views)
    width = min(len(v) for v in views)
    lengths = np.array([len(v) for v in views])
    votes = np.zeros((len(labellings), count, 2), int)
    for start in range(0, max(width - 3, 0), CHUNK):
        stop = min(start + CHUNK + 3, width)
        block = np.stack([np.frombuffer(v, np.uint8, count=stop, offset=0)[start:] for v in views])
        equal = _Agreement(_windows(block))
        for k, labels in enumerate(labellings):
            for i in range(count):
                keep = np.arange(count) != i
                group_a = np.flatnonzero(keep & (labels == 0))
                group_b = np.flatnonzero(keep & (labels == 1))
                if len(group_a) == 0 or len(group_b) == 0:
                    continue
                first_a, first_b = int(group_a[0]), int(group_b[0])
                # constant within each group (every member agrees with its first) and
                # different between the groups
                where = ~equal(first_a, first_b)
                for j in group_a[1:]:
                    where &= equal(first_a, int(j))
                for j in group_b[1:]:
                    where &= equal(first_b, int(j))
                votes[k, i, 0] += int((where & equal(i, first_a)).sum())
                votes[k, i, 1] += int((where & equal(i, first_b)).sum())
    right = np.zeros(len(labellings), int)
    for k, labels in enumerate(labellings):
        for i in range(count):
            keep = np.arange(count) != i
            la, lb = lengths[keep & (labels == 0)], lengths[keep & (labels == 1)]
            separates = len(la) and len(lb) and (la == la[0]).all() and (lb == lb[0]).all()
            if separates and la[0] != lb[0]:
                votes[k, i, 0] += int(lengths[i] == la[0])
                votes[k, i, 1] += int(lengths[i] == lb[0])
            if votes[k, i, 0] != votes[k, i, 1]:
                right[k] += int((votes[k, i, 1] > votes[k, i, 0]) == bool(labels[i]))
    return right


def _rerun_views(
    context: AttackContext,
    inputs: tuple[Any, Any],
    runs: int,
    views: dict[str, tuple[list[bytes], list[bytes]]],
) -> None:
    """Run each input ``runs`` more times, in an order drawn from the cell's generator
    (so that nothing that changes with the time of a run, such as a counter or a port,
    lines up with the inputs), and add each observer's view to ``views``."""
    for side in context.rng.permutation(np.repeat([0, 1], runs)):
        _, session = context.run_again(inputs[int(side)])
        for o, (a, b) in views.items():
            (a, b)[int(side)].append(view_of(session, o))


def _score(
    views: dict[str, tuple[list[bytes], list[bytes]]],
    rng: np.random.Generator,
    screen_runs: int,
) -> list[AttackResult]:
    """One result per observer from the views of both inputs (see the module
    docstring)."""
    results = []
    for o, (a, b) in views.items():
        if not any(a + b):
            results.append(not_applicable(ATTACK, ATTACKER, o, "this party received nothing"))
            continue
        labels = np.array([0] * len(a) + [1] * len(b))
        control_labels = relabellings(labels, CONTROLS, rng)
        right = classify_labelled(a + b, [labels, *control_labels])
        control = float(np.mean(right[1:])) / len(labels) if control_labels else 0.5
        results.append(
            rate_result(
                ATTACK,
                ATTACKER,
                o,
                successes=int(right[0]),
                trials=len(a) + len(b),
                baseline=0.5,
                control=max(control, 0.5),
                runs_per_input=len(a),
                screen_runs_per_input=screen_runs,
                control_labellings=len(control_labels),
                rows_per_holder=ROWS,
            )
        )
    return results


def attack(context: AttackContext) -> list[AttackResult]:
    """Rerun the backend on two inputs with the same ideal output; one result per party
    of the reruns (see the module docstring)."""
    problem = context.problem
    if problem.task.kind != "aggregate":
        return []
    observers = list(context.session.party_names)
    if context.rerun is None:
        return [not_applicable(ATTACK, ATTACKER, o, "no rerun oracle") for o in observers]
    if declares_tables(context.claim):
        why = "the claim declares the holders' tables, which is what the two inputs change"
        return [not_applicable(ATTACK, ATTACKER, o, why) for o in observers]
    start = time.perf_counter()
    first, second = swapped_inputs(problem, context.rng)
    if second is None:
        return [
            not_applicable(ATTACK, ATTACKER, o, "no two holders share a cell to swap rows in")
            for o in observers
        ]
    runs = RUNS.get(context.mode, RUNS["fast"])
    views: dict[str, tuple[list[bytes], list[bytes]]] = {o: ([], []) for o in observers}
    try:
        _rerun_views(context, (first, second), runs, views)
        results = _score(views, context.rng, runs)
        if runs < CONFIRM_RUNS and any(r.applicable and r.residual_risk for r in results):
            _rerun_views(context, (first, second), CONFIRM_RUNS - runs, views)
            results = _score(views, context.rng, runs)
    except Exception as exc:  # a backend that fails on the small inputs is not tested
        why = f"a rerun failed ({type(exc).__name__})"
        return [not_applicable(ATTACK, ATTACKER, o, why) for o in observers]
    cost = (time.perf_counter() - start) / max(len(observers), 1)
    for result in results:
        result.cost_s = cost
    return results
