"""Scorecard data: one table per scenario, backends as rows, built from records alone.

Every function here reads the flat frame of :func:`pets.records.records_frame` and
tolerates fields older or newer records lack (``isolation``, ``verified``,
``cost.party_startup_s``, ``leakage.epsilon_spent``): a missing figure is NaN, never a
guess.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pandas as pd

from pets.report.units import is_missing, show_bytes, show_interval, show_number, show_seconds

__all__ = [
    "attack_table",
    "check_text",
    "mean_interval",
    "params_label",
    "party_bytes",
    "row_label",
    "scorecard",
    "scorecard_text",
    "utility_curves",
]

#: Worst first: the status a group of repeats shows.
_STATUS_ORDER = {"failed": 0, "party_failed": 0, "timeout": 1, "ok": 2}


def _json(value: Any, default: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return default
    return default


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """Return a column, or NaNs when the records lack it."""
    if name in frame:
        return frame[name]
    return pd.Series([np.nan] * len(frame), index=frame.index, dtype=object)


def params_label(params: dict[str, Any]) -> str:
    """Return parameters as ``k=v, k=v`` in their stored order."""
    return ", ".join(f"{k}={v}" for k, v in params.items())


def mean_interval(values: Any) -> tuple[float, float, float]:
    """Return the mean and 95% Student-t interval of ``values`` (NaN ends for one value)."""
    from scipy import stats

    v = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy(dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(v.mean())
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return mean, mean - half, mean + half


def _modelled(network: Any, profile: str) -> float:
    """Modelled seconds on ``profile`` from a record's ``cost.network`` (JSON text)."""
    value = _json(network, {}).get(profile, {}).get("modelled_s")
    return float("nan") if value is None else float(value)


def _cells(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per record with the figures the scorecard reads, unsupported cells out."""
    verified = _column(frame, "verified")
    rows = []
    for i, r in frame.iterrows():
        params = _json(r.get("params"), {})
        primary = r.get("accuracy.primary")
        primary = primary if isinstance(primary, str) else ""
        claim = _json(r.get("leakage.claim"), {})
        rows.append(
            {
                "scenario": r["scenario"],
                "card_hash": r["card_hash"] if isinstance(r.get("card_hash"), str) else "",
                "backend": r["backend"],
                "params": params_label(params),
                "size": r.get("size"),
                "pet_class": r.get("pet_class") or "",
                "status": r["status"],
                "error": r.get("error"),
                "primary": primary,
                "higher_is_better": bool(r.get("accuracy.higher_is_better") is True),
                "value": r.get(f"accuracy.{primary}") if primary else np.nan,
                "wall_s": r.get("cost.wall_s"),
                "startup_s": r.get("cost.party_startup_s"),
                "cpu_s": r.get("cost.cpu_s"),
                "peak_rss_mb": r.get("cost.peak_rss_mb"),
                "wan_s": _modelled(r.get("cost.network"), "wan"),
                "bytes": r.get("cost.bytes_total"),
                "messages": r.get("cost.messages"),
                "rounds": r.get("cost.rounds"),
                "worst_risk": r.get("leakage.worst_residual_risk"),
                "worst_attack": r.get("leakage.worst_attack"),
                "eps_lower": r.get("leakage.epsilon_lower_bound"),
                "eps_claimed": r.get("leakage.epsilon_claimed"),
                "eps_spent": r.get("leakage.epsilon_spent"),
                "claim": claim,
                "flags": ", ".join(_json(r.get("leakage.flags"), [])),
                "isolation": r.get("isolation") or "",
                "verified": verified.loc[i],
                "leakage_mode": r.get("leakage.mode") or "",
            }
        )
    table = pd.DataFrame(rows)
    return table[table["status"] != "unsupported"] if len(table) else table


def _numeric(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce")


def scorecard(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Return, per scenario, one row per (backend, params, size) group of records.

    Numbers are means over repeats and seeds, with a 95% Student-t interval for the
    primary metric (``value_low``, ``value_high``; NaN from a single run); rounds,
    worst risk and epsilons are the largest seen; the status is the worst. The worst
    risk's interval (``risk_low``, ``risk_high``) comes from the pooled Wilson interval
    of the attack that scored it (see :func:`attack_table`). Cells whose backend does
    not serve the scenario's task are left out.
    """
    if frame.empty:
        return {}
    table = _cells(frame)
    if table.empty:
        return {}
    attacks = attack_table(frame)
    out = {}
    for scenario, group in table.groupby("scenario", sort=True):
        rows = []
        versions = group["card_hash"].nunique()  # records of an edited card stay apart
        for (backend, params, size, card_hash), cells in group.groupby(
            ["backend", "params", "size", "card_hash"], sort=False, dropna=False
        ):
            label = f"{params} [card {card_hash[:8]}]".strip() if versions > 1 else params
            ok = cells[cells["status"] == "ok"]
            value, low, high = mean_interval(ok["value"])
            row = {
                "backend": backend,
                "params": label,
                "size": size,
                "pet_class": cells["pet_class"].iloc[0],
                "status": min(cells["status"], key=lambda v: _STATUS_ORDER.get(v, 3)),
                "error": next((e for e in cells["error"] if isinstance(e, str)), ""),
                "runs": len(cells),
                "ok_runs": len(ok),
                "primary": next((p for p in cells["primary"] if p), ""),
                "higher_is_better": bool(ok["higher_is_better"].any()),
                "value": value,
                "value_low": low,
                "value_high": high,
                "claim": next((c for c in ok["claim"] if c), {}),
                "flags": _union_of_flags(cells["flags"]),
                "isolation": ", ".join(sorted({v for v in cells["isolation"] if v})),
                "verified": _verified(cells["verified"]),
                "leakage_mode": ", ".join(sorted({v for v in cells["leakage_mode"] if v})),
                "worst_attack": next((a for a in ok["worst_attack"] if isinstance(a, str)), ""),
            }
            for name in ("wall_s", "startup_s", "cpu_s", "wan_s", "bytes", "messages"):
                row[name] = _numeric(ok[name]).mean()
            for name in ("rounds", "peak_rss_mb", "worst_risk", "eps_lower", "eps_claimed"):
                row[name] = _numeric(ok[name]).max()
            row["eps_spent"] = _numeric(ok["eps_spent"]).max()
            row["risk_low"], row["risk_high"] = _risk_interval(
                attacks, scenario, backend, params, size
            )
            rows.append(row)
        table = pd.DataFrame(rows)
        order = sorted(range(len(table)), key=lambda i: _reading_order(table.iloc[i]))
        out[str(scenario)] = table.iloc[order].reset_index(drop=True)
    return out


#: Rows are grouped by PET class in this order: baselines first, then today's practice.
_CLASS_ORDER = ("baseline", "sdc", "he", "mpc", "psi", "federated", "dp", "synthetic", "remote")


def _natural(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def _reading_order(row: pd.Series) -> tuple[Any, ...]:
    """Sort key: PET class, backend, parameters with numbers compared as numbers, size."""
    pet = row["pet_class"]
    rank = _CLASS_ORDER.index(pet) if pet in _CLASS_ORDER else len(_CLASS_ORDER)
    params = [_natural(p) for p in re.split(r"[=, ]+", str(row["params"]))]
    size = float(row["size"]) if not is_missing(row["size"]) else 0.0
    return (rank, row["backend"], params, size)


def _verified(values: pd.Series) -> bool | None:
    """False if any record says unverified, True if all say verified, None if none say."""
    stated = [bool(v) for v in values if isinstance(v, bool | np.bool_)]
    if not stated:
        return None
    return all(stated)


def _risk_interval(
    attacks: pd.DataFrame, scenario: str, backend: str, params: str, size: Any
) -> tuple[float, float]:
    """Residual-risk interval of the worst scored attack of one scorecard row."""
    if attacks.empty:
        return float("nan"), float("nan")
    mine = attacks[
        (attacks["scenario"] == scenario)
        & (attacks["backend"] == backend)
        & (attacks["params"] == params)
        & (attacks["size"] == size)
        & attacks["applicable"]
        & ~attacks["diagnostic"]
    ].dropna(subset=["risk"])
    if mine.empty or "ci_low" not in mine:
        return float("nan"), float("nan")
    worst = mine.loc[mine["risk"].idxmax()]
    return float(worst.get("risk_low", np.nan)), float(worst.get("risk_high", np.nan))


def _union_of_flags(values: pd.Series) -> str:
    return ", ".join(sorted({f for v in values for f in str(v).split(", ") if f}))


def _residual(rate: float, control: float) -> float:
    if is_missing(rate):
        return float("nan")
    control = 0.0 if is_missing(control) else float(control)
    if control >= 1.0:
        return 0.0
    return min(1.0, max(0.0, (float(rate) - control) / (1.0 - control)))


def attack_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Return one row per (scenario, backend, params, size, attack, method, attacker,
    observer).

    Success counts are pooled over repeats and seeds, with a 95% Wilson interval of the
    pooled rate (``ci_low``, ``ci_high``); control rate and residual risk are means over
    repeats, and ``risk_low``/``risk_high`` carry the rate's interval through the same
    formula with the mean control (the control's own uncertainty is not included).
    Attacks that were not applicable keep their reason; DP audits show the largest
    epsilon lower bound; ``skipped`` marks audits and probes that did not run and why.
    ``contradicted`` says whether any run's result contradicted the claim, and
    ``claim_check`` gives the check whose lower bound came closest to (or furthest past)
    its cap, as text (see :func:`check_text`).
    """
    from pets.leakage.rates import wilson_interval

    rows = []
    if frame.empty or "leakage.attacks" not in frame:
        return pd.DataFrame(rows)
    for _, r in frame[frame["status"] == "ok"].iterrows():
        params = _json(r.get("params"), {})
        for a in _json(r.get("leakage.attacks"), []):
            rate = a.get("success_rate")
            rows.append(
                {
                    "scenario": r["scenario"],
                    "backend": r["backend"],
                    "params": params_label(params),
                    "size": r.get("size"),
                    "attack": a["attack"],
                    "method": a.get("method", ""),
                    "attacker": a.get("attacker", "-"),
                    "observer": a.get("observer", "-"),
                    "applicable": bool(a.get("applicable")),
                    "diagnostic": bool(a.get("diagnostic")),
                    "skipped": bool(a.get("skipped")),
                    "failed": bool(a.get("failed")),
                    "successes": round(rate * a["trials"])
                    if a.get("trials") and rate is not None
                    else None,
                    "trials": a.get("trials") if rate is not None else None,
                    "control": a.get("control_rate"),
                    "baseline": a.get("baseline"),
                    "risk": a.get("residual_risk"),
                    "epsilon_lower": a.get("epsilon_lower"),
                    "epsilon_claimed": a.get("epsilon_claimed"),
                    "checks": list(a.get("claim_checks", [])),
                    "note": a.get("note", ""),
                }
            )
    if not rows:
        return pd.DataFrame(rows)
    runs = pd.DataFrame(rows)
    keys = ["scenario", "backend", "params", "size", "attack", "method", "attacker", "observer"]
    out = []
    for key, group in runs.groupby(keys, sort=True, dropna=False):
        row = dict(zip(keys, key, strict=True))
        applicable = group[group["applicable"]]
        row["applicable"] = len(applicable) > 0
        row["diagnostic"] = bool(group["diagnostic"].any())
        row["skipped"] = bool(group["skipped"].any())
        row["failed"] = bool(group["failed"].any())
        row["note"] = next((n for n in group["note"] if n), "")
        counted = applicable.dropna(subset=["trials"])
        row["control"] = _numeric(applicable["control"]).mean()
        row["baseline"] = _numeric(applicable["baseline"]).mean()
        if len(counted):
            k, n = int(counted["successes"].sum()), int(counted["trials"].sum())
            _, low, high = wilson_interval(k, n)
            row.update(rate=k / n, ci_low=low, ci_high=high, trials=n)
            row["risk_low"] = _residual(low, row["control"])
            row["risk_high"] = _residual(high, row["control"])
        row["risk"] = _numeric(applicable["risk"]).mean()
        row["epsilon_lower"] = _numeric(applicable["epsilon_lower"]).max()
        row["epsilon_claimed"] = _numeric(group["epsilon_claimed"]).max()
        checks = [c for found in group["checks"] for c in found]
        row["contradicted"] = any(c["contradicted"] for c in checks)
        row["claim_check"] = check_text(_closest_check(checks))
        row["runs"] = len(group)
        out.append(row)
    return pd.DataFrame(out)


def _closest_check(checks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The check whose bound comes closest to (or furthest past) its cap."""
    return max(checks, key=lambda c: c["bound"] - c["cap"], default=None)


def check_text(check: dict[str, Any] | None) -> str:
    """Return one claim check as text: the part of the claim, the attack's lower bound
    against the cap, and whether it contradicts; empty when there is none."""
    if not check:
        return ""
    part = "ε" if check["claim"] == "epsilon" else "declared leakage"
    verdict = "contradicts" if check["contradicted"] else "within"
    sign = ">" if check["contradicted"] else "≤"
    return (
        f"{verdict} {part}: lower end {show_number(check['bound'], 3)} {sign} "
        f"cap {show_number(check['cap'], 3)}"
    )


def utility_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the privacy-utility curves of a run.

    A curve is drawn for every privacy parameter a backend was swept over: any
    parameter that varies among a backend's records on a scenario whose records carry
    a DP claim (``leakage.epsilon_claimed``), whatever its name. When the claimed
    epsilon moves with the parameter, the curve's x is the claimed epsilon (the typed
    claim, not the parameter's name); when it does not (a per-query loss under a fixed
    total budget), x is the parameter's own value and ``epsilon`` shows the fixed claim.

    Columns: ``scenario``, ``backend`` (with the other parameters), ``size``,
    ``parameter``, ``axis`` (``"epsilon"`` or the parameter's name), ``x``, ``epsilon``
    (claimed), ``primary``, ``higher_is_better``, ``mean``, ``ci_low``, ``ci_high``
    (95% Student t over repeats and seeds; NaN from one run), ``runs``.
    """
    columns = [
        "scenario",
        "backend",
        "size",
        "parameter",
        "axis",
        "x",
        "epsilon",
        "primary",
        "higher_is_better",
        "mean",
        "ci_low",
        "ci_high",
        "runs",
    ]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    ok = frame[(frame["status"] == "ok") & _column(frame, "leakage.epsilon_claimed").notna()]
    out = []
    for (scenario, backend), group in ok.groupby(["scenario", "backend"], sort=True):
        params = [_json(p, {}) for p in group["params"]]
        names = sorted({k for p in params for k in p})
        many_sizes = group["size"].nunique() > 1
        for name in names:
            values = {json.dumps(p.get(name), sort_keys=True) for p in params}
            if len(values) < 2:
                continue
            out += _curve(group, params, scenario, backend, name, many_sizes)
    curves = pd.DataFrame(out, columns=columns)
    if curves.empty:
        return curves
    swept = curves.groupby(["scenario", "backend", "size", "parameter"])["x"].transform("nunique")
    return curves[swept > 1].reset_index(drop=True)


def _curve(
    group: pd.DataFrame,
    params: list[dict[str, Any]],
    scenario: str,
    backend: str,
    name: str,
    many_sizes: bool,
) -> list[dict[str, Any]]:
    points = []
    for (_, r), p in zip(group.iterrows(), params, strict=True):
        primary = r.get("accuracy.primary")
        if not isinstance(primary, str) or not isinstance(p.get(name), int | float):
            continue
        rest = {k: v for k, v in p.items() if k != name}
        label = backend + (f" [{params_label(rest)}]" if rest else "")
        if many_sizes:
            label += f" (n={r['size']})"
        points.append(
            {
                "label": label,
                "size": r["size"],
                "param": float(p[name]),
                "epsilon": float(r["leakage.epsilon_claimed"]),
                "primary": primary,
                "higher_is_better": bool(r.get("accuracy.higher_is_better") is True),
                "value": r.get(f"accuracy.{primary}"),
            }
        )
    if not points:
        return []
    runs = pd.DataFrame(points)
    follows = (
        runs.groupby("param")["epsilon"].nunique().max() == 1
        and runs["epsilon"].nunique() == runs["param"].nunique()
    )
    axis = "epsilon" if follows else name
    rows = []
    for (label, size, param), cells in runs.groupby(["label", "size", "param"], sort=True):
        mean, low, high = mean_interval(cells["value"])
        epsilon = float(cells["epsilon"].max())
        rows.append(
            {
                "scenario": scenario,
                "backend": label,
                "size": size,
                "parameter": name,
                "axis": axis,
                "x": epsilon if follows else param,
                "epsilon": epsilon,
                "primary": cells["primary"].iloc[0],
                "higher_is_better": bool(cells["higher_is_better"].iloc[0]),
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
                "runs": len(cells),
            }
        )
    return rows


def party_bytes(frame: pd.DataFrame) -> pd.DataFrame:
    """Return bytes sent and received per party, mean over a row's ok records.

    Columns: ``scenario``, ``backend``, ``params``, ``size``, ``party``, ``sent``,
    ``received``.
    """
    rows = []
    if frame.empty or "cost.bytes_by_party" not in frame:
        return pd.DataFrame(rows)
    for _, r in frame[frame["status"] == "ok"].iterrows():
        by_party = _json(r.get("cost.bytes_by_party"), {})
        for party, counts in by_party.items():
            rows.append(
                {
                    "scenario": r["scenario"],
                    "backend": r["backend"],
                    "params": params_label(_json(r.get("params"), {})),
                    "size": r.get("size"),
                    "party": party,
                    "sent": (counts or {}).get("sent"),
                    "received": (counts or {}).get("received"),
                }
            )
    if not rows:
        return pd.DataFrame(rows)
    keys = ["scenario", "backend", "params", "size", "party"]
    table = pd.DataFrame(rows)
    return table.groupby(keys, sort=False, dropna=False)[["sent", "received"]].mean().reset_index()


def row_label(row: pd.Series | dict[str, Any], *, with_size: bool = False) -> str:
    """Return a scorecard row's name: backend, its parameters, and the size if asked."""
    label = str(row["backend"]) + (f" [{row['params']}]" if row["params"] else "")
    return label + (f" (n={int(row['size'])})" if with_size else "")


_HEADER = [
    "backend",
    "accuracy",
    "time",
    "WAN time",
    "bytes",
    "rounds",
    "worst risk [95% CI]",
    "ε",
    "flags",
]


def _risk_text(row: pd.Series) -> str:
    interval = show_interval(row.get("risk_low"), row.get("risk_high"))
    risk = show_number(row["worst_risk"])
    return f"{risk} {interval}" if interval else risk


def scorecard_text(frame: pd.DataFrame) -> str:
    """Return the scorecards as aligned plain text for a terminal."""
    parts = []
    for scenario, table in scorecard(frame).items():
        many = table["size"].nunique() > 1
        rows = [_HEADER]
        for _, r in table.iterrows():
            accuracy = f"{r['primary']} = {show_number(r['value'], 4)}" if r["primary"] else "-"
            if r["status"] != "ok":
                accuracy = f"{r['status']}: {str(r['error'])[:60]}"
            epsilon = "-"
            if not is_missing(r["eps_claimed"]) or not is_missing(r["eps_lower"]):
                epsilon = f"{show_number(r['eps_lower'])} / {show_number(r['eps_claimed'])}"
            rows.append(
                [
                    row_label(r, with_size=many),
                    accuracy,
                    show_seconds(r["wall_s"]),
                    show_seconds(r["wan_s"]),
                    show_bytes(r["bytes"]),
                    show_number(r["rounds"]),
                    _risk_text(r),
                    epsilon,
                    r["flags"] or "-",
                ]
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
        lines = [f"== {scenario} =="]
        for j, row in enumerate(rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
            if j == 0:
                lines.append("  ".join("-" * w for w in widths))
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
