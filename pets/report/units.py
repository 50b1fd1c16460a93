"""How numbers are written in reports: seconds, bytes, metrics, epsilons, intervals."""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "is_missing",
    "show_bytes",
    "show_epsilon",
    "show_interval",
    "show_number",
    "show_seconds",
]


def is_missing(value: Any) -> bool:
    """Return True for None, NaN and anything that is not a number."""
    if value is None or isinstance(value, bool):
        return value is None
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def show_number(value: Any, digits: int = 3) -> str:
    """Return ``value`` with ``digits`` significant digits, or ``-`` when missing."""
    if is_missing(value):
        return "-"
    return f"{float(value):.{digits}g}"


def show_seconds(value: Any) -> str:
    """Return a duration: milliseconds below one second, else seconds, minutes, hours."""
    if is_missing(value):
        return "-"
    v = float(value)
    if v < 1:
        return f"{v * 1000:.0f} ms"
    if v < 120:
        return f"{v:.2f} s" if v < 10 else f"{v:.1f} s"
    if v < 7200:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.1f} h"


def show_bytes(value: Any) -> str:
    """Return a byte count in B, KiB, MiB or GiB."""
    if is_missing(value):
        return "-"
    v = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if v < 1024 or unit == "GiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return "-"  # pragma: no cover


def show_epsilon(value: Any) -> str:
    """Return an epsilon, or ``none`` when there is no figure."""
    return "none" if is_missing(value) else f"{float(value):.3g}"


def show_interval(low: Any, high: Any, digits: int = 3) -> str:
    """Return ``[low, high]``, or an empty string when either end is missing."""
    if is_missing(low) or is_missing(high):
        return ""
    return f"[{show_number(low, digits)}, {show_number(high, digits)}]"
