"""Requirement verdicts and the Pareto front of accuracy against residual risk.

A card's ``[requirements]`` (see :class:`pets.scenarios.Requirements`) are checked
against each scorecard row: each stated bound is met, missed, or could not be checked
(the figure was not measured, or the card states the bound for the other direction of
metric). A row on the Pareto front is one no other row beats on both accuracy and
worst residual risk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pets.report.scorecard import row_label
from pets.report.units import is_missing, show_epsilon, show_number, show_seconds
from pets.scenarios import Requirements

__all__ = ["REQUIREMENT_NAMES", "Check", "pareto_front", "requirement_verdicts"]

#: How each requirement is named on the page.
REQUIREMENT_NAMES = {
    "max_epsilon": "ε at most",
    "max_residual_risk": "worst residual risk at most",
    "max_wan_seconds": "WAN time at most",
    "max_error": "error at most",
    "min_accuracy": "accuracy at least",
}


@dataclass(frozen=True)
class Check:
    """One requirement checked on one scorecard row.

    Attributes
    ----------
    requirement : str
        The card field (``max_epsilon``, ...).
    met : bool or None
        True met, False missed, None not checked.
    measured : str
        The figure compared with the bound (``-`` when there is none).
    text : str
        The figure against the bound, or why it was not checked, as a sentence.
    """

    requirement: str
    met: bool | None
    measured: str
    text: str


def _check(name: str, bound: float, row: pd.Series) -> Check:
    if name == "max_epsilon":
        claimed, lower = row.get("eps_claimed"), row.get("eps_lower")
        if is_missing(claimed):
            return Check(name, False, "no DP claim", "makes no differential-privacy claim")
        shown = f"ε={show_epsilon(claimed)}"
        if float(claimed) > bound:
            return Check(name, False, shown, f"claims ε = {show_epsilon(claimed)} > {bound:g}")
        if not is_missing(lower) and float(lower) > bound:
            audited = f"audited ε ≥ {show_epsilon(lower)}"
            return Check(name, False, audited, f"{audited} > {bound:g}")
        return Check(name, True, shown, f"claims ε = {show_epsilon(claimed)} ≤ {bound:g}")
    if name == "max_residual_risk":
        return _upper(name, row.get("worst_risk"), bound, show_number, "risk not measured")
    if name == "max_wan_seconds":
        return _upper(name, row.get("wan_s"), bound, show_seconds, "no WAN time modelled")
    higher = bool(row.get("higher_is_better"))
    metric = row.get("primary") or "accuracy"
    if name == "max_error":
        if higher:
            return Check(name, None, "-", f"{metric} is a score: state min_accuracy")
        return _upper(name, row.get("value"), bound, show_number, "no accuracy", metric)
    if not higher:
        return Check(name, None, "-", f"{metric} is an error: state max_error")
    value = row.get("value")
    if is_missing(value):
        return Check(name, None, "-", "no accuracy")
    met = float(value) >= bound
    sign = "≥" if met else "<"
    return Check(name, met, show_number(value), f"{metric} = {show_number(value)} {sign} {bound:g}")


def _upper(name: str, value: Any, bound: float, show: Any, missing: str, metric: str = "") -> Check:
    if is_missing(value):
        return Check(name, None, "-", missing)
    met = float(value) <= bound
    prefix = f"{metric} = " if metric else ""
    shown = show(bound) if show is show_seconds else f"{bound:g}"
    return Check(name, met, show(value), f"{prefix}{show(value)} {'≤' if met else '>'} {shown}")


def _applies(name: str, requirements: Requirements, row: pd.Series) -> bool:
    """A card stating both accuracy bounds is checked only on the matching one."""
    stated = requirements.stated()
    if name == "max_error" and "min_accuracy" in stated:
        return not row.get("higher_is_better")
    if name == "min_accuracy" and "max_error" in stated:
        return bool(row.get("higher_is_better"))
    return True


def requirement_verdicts(table: pd.DataFrame, requirements: Requirements) -> pd.DataFrame:
    """Return one verdict per scorecard row.

    Parameters
    ----------
    table : DataFrame
        One scenario's scorecard (from :func:`pets.report.scorecard.scorecard`).
    requirements : Requirements
        The card's ``[requirements]``.

    Returns
    -------
    DataFrame
        ``label``, ``status``, ``verdict`` (``meets all``, ``misses``, ``not all
        checked`` or ``did not run``), ``checks`` (list of :class:`Check`), ``missed``
        (names of missed requirements) and ``on_front`` (on the Pareto front of
        accuracy against worst residual risk). Empty when the card states nothing.
    """
    stated = requirements.stated()
    if not stated or table.empty:
        return pd.DataFrame()
    front = pareto_front(table)
    many = table["size"].nunique() > 1
    rows = []
    for i, row in table.iterrows():
        checks = [_check(n, b, row) for n, b in stated.items() if _applies(n, requirements, row)]
        missed = [c.requirement for c in checks if c.met is False]
        if row["status"] != "ok":
            verdict = "did not run"
        elif missed:
            verdict = "misses"
        elif all(c.met for c in checks):
            verdict = "meets all"
        else:
            verdict = "not all checked"
        rows.append(
            {
                "label": row_label(row, with_size=many),
                "backend": row["backend"],
                "status": row["status"],
                "verdict": verdict,
                "checks": checks,
                "missed": missed,
                "on_front": bool(front.loc[i]),
            }
        )
    order = {"meets all": 0, "not all checked": 1, "misses": 2, "did not run": 3}
    out = pd.DataFrame(rows)
    out["_order"] = out["verdict"].map(order)
    out = out.sort_values("_order", kind="stable").drop(columns="_order")
    return out.reset_index(drop=True)


def pareto_front(table: pd.DataFrame) -> pd.Series:
    """Return, per scorecard row, whether it is on the Pareto front of accuracy (the
    primary metric, in its own direction) against worst residual risk.

    Only rows that ran and have both figures take part; rows are compared within the
    same primary metric and size. Equal points are all on the front.
    """
    on_front = pd.Series(False, index=table.index)
    if table.empty:
        return on_front
    ok = table[
        (table["status"] == "ok")
        & pd.to_numeric(table["value"], errors="coerce").notna()
        & pd.to_numeric(table["worst_risk"], errors="coerce").notna()
    ]
    for _, group in ok.groupby(["primary", "size"], sort=False):
        sign = np.where(group["higher_is_better"].astype(bool), -1.0, 1.0)
        error = group["value"].astype(float).to_numpy() * sign
        risk = group["worst_risk"].astype(float).to_numpy()
        for j, index in enumerate(group.index):
            better_or_equal = (error <= error[j]) & (risk <= risk[j])
            strictly = (error < error[j]) | (risk < risk[j])
            on_front.loc[index] = not bool(np.any(better_or_equal & strictly))
    return on_front
