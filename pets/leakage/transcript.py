"""Transcript exposure (attacker model A2, honest-but-curious party).

For every party, the harness searches the bytes it received for a sample of other
parties' distinctive private values (identifiers and measurements), encoded the ways a
program would put them on the wire: little-endian int64/int32, float64/float32, and
decimal text. The share found is the attack rate. The control is the same search for
values of the same kind and magnitude that no party holds (each sampled value moved by
a small offset), which measures chance matches. A plaintext backend scores near 1; a
correct HE or MPC backend near 0, whatever it claims.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from pets.leakage.rates import Rate, residual_risk

__all__ = ["encodings", "transcript_exposure"]


def encodings(value: Any) -> list[bytes]:
    """Return the byte patterns under which ``value`` may appear in a message."""
    out: list[bytes] = []
    if isinstance(value, np.integer | int):
        v = int(value)
        out.append(struct.pack("<q", v))
        if -(2**31) <= v < 2**31:
            out.append(struct.pack("<i", v))
        out.append(str(v).encode())
    else:
        f64 = float(value)
        f32 = np.float32(value)
        out.append(struct.pack("<d", f64))
        out.append(struct.pack("<f", f32))
        out.append(repr(f64).encode())
        out.append(np.format_float_positional(f32, trim="-").encode())
        if float(f32) != f64:
            out.append(struct.pack("<d", float(f32)))
    return out


def _found(haystack: bytes, value: Any) -> bool:
    return any(pattern in haystack for pattern in encodings(value))


def _controls(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if np.issubdtype(values.dtype, np.integer):
        return values + rng.integers(1, 1000, size=values.size)
    scale = np.maximum(np.abs(values.astype(np.float64)), 1.0)
    return values.astype(np.float64) + scale * rng.uniform(1e-4, 1e-3, size=values.size)


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
    results = []
    for observer, payloads in received.items():
        start = time.perf_counter()
        payloads = list(payloads)
        targets = [
            p for p in sensitive if p != observer and any(len(v) for v in sensitive[p].values())
        ]
        base = {
            "attack": "transcript_exposure",
            "attacker": "A2",
            "observer": observer,
            "targets": targets,
        }
        if not payloads or not targets:
            results.append(
                {
                    **base,
                    "applicable": False,
                    "note": "this party received nothing"
                    if not payloads
                    else "no other party holds sensitive values",
                }
            )
            continue
        haystack = b"".join(payloads)
        hits = trials = control_hits = 0
        per_column: dict[str, float] = {}
        for target in targets:
            for column, values in sensitive[target].items():
                found = sum(_found(haystack, v) for v in values)
                hits += found
                trials += len(values)
                control_hits += sum(_found(haystack, v) for v in _controls(values, rng))
                per_column[f"{target}.{column}"] = found / len(values)
        attack, control = Rate(hits, trials), Rate(control_hits, trials)
        low, high = attack.interval
        results.append(
            {
                **base,
                "applicable": True,
                "success_rate": attack.value,
                "ci_low": low,
                "ci_high": high,
                "control_rate": control.value,
                "baseline": control.value,
                "residual_risk": residual_risk(attack.value, control.value),
                "trials": trials,
                "bytes_searched": len(haystack),
                "by_column": per_column,
                "cost_s": time.perf_counter() - start,
            }
        )
    return results
