"""Scorecards: one table per scenario, backends as rows, built from records alone."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["attack_table", "markdown_report", "scorecard", "scorecard_text", "utility_curves"]

_COLUMNS = [
    "backend",
    "params",
    "status",
    "primary",
    "value",
    "wall_s",
    "wan_s",
    "bytes",
    "rounds",
    "worst_risk",
    "flags",
]


def _primary(row: pd.Series) -> tuple[str, float]:
    name = row.get("accuracy.primary")
    if not isinstance(name, str):
        return "", float("nan")
    return name, row.get(f"accuracy.{name}", float("nan"))


def scorecard(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Return, per scenario, a table with one row per (backend, params) cell group.

    Repeats and seeds are averaged (mean) for numbers; the status shown is the worst.
    Cells whose backend does not serve the scenario's task are left out.
    """
    if frame.empty:
        return {}
    rows = []
    for _, r in frame.iterrows():
        name, value = _primary(r)
        params = json.loads(r["params"]) if isinstance(r.get("params"), str) else {}
        rows.append(
            {
                "scenario": r["scenario"],
                "backend": r["backend"],
                "params": ", ".join(f"{k}={v}" for k, v in params.items()),
                "status": r["status"],
                "primary": name,
                "value": value,
                "wall_s": r.get("cost.wall_s"),
                "wan_s": _modelled(r.get("cost.network"), "wan"),
                "bytes": r.get("cost.bytes_total"),
                "rounds": r.get("cost.rounds"),
                "worst_risk": r.get("leakage.worst_residual_risk"),
                "eps_lower": r.get("leakage.epsilon_lower_bound"),
                "eps_claimed": r.get("leakage.epsilon_claimed"),
                "flags": ", ".join(json.loads(r.get("leakage.flags") or "[]")),
                "error": r.get("error"),
            }
        )
    table = pd.DataFrame(rows)
    table = table[table["status"] != "unsupported"]
    order = {"failed": 0, "party_failed": 0, "timeout": 1, "ok": 2}
    out = {}
    for scenario, group in table.groupby("scenario", sort=True):
        agg = group.groupby(["backend", "params"], sort=False, dropna=False).agg(
            status=("status", lambda s: min(s, key=lambda v: order.get(v, 3))),
            primary=("primary", "first"),
            value=("value", lambda s: pd.to_numeric(s, errors="coerce").mean()),
            wall_s=("wall_s", lambda s: pd.to_numeric(s, errors="coerce").mean()),
            wan_s=("wan_s", lambda s: pd.to_numeric(s, errors="coerce").mean()),
            bytes=("bytes", lambda s: pd.to_numeric(s, errors="coerce").mean()),
            rounds=("rounds", lambda s: pd.to_numeric(s, errors="coerce").max()),
            worst_risk=("worst_risk", lambda s: pd.to_numeric(s, errors="coerce").max()),
            eps_lower=("eps_lower", lambda s: pd.to_numeric(s, errors="coerce").max()),
            eps_claimed=("eps_claimed", lambda s: pd.to_numeric(s, errors="coerce").max()),
            flags=("flags", _union_of_flags),
            error=("error", lambda s: next((e for e in s if isinstance(e, str)), "")),
            runs=("status", "size"),
        )
        out[str(scenario)] = agg.reset_index()
    return out


def _modelled(network: Any, profile: str) -> float:
    """Modelled seconds on ``profile`` from a record's ``cost.network`` (JSON text)."""
    if not isinstance(network, str):
        return float("nan")
    return json.loads(network).get(profile, {}).get("modelled_s", float("nan"))


def utility_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the privacy-utility curves of a run: for every scenario and backend run at
    more than one ``epsilon``, the primary metric's mean per epsilon over repeats and
    seeds, with a 95% confidence interval (Student t; none from a single run).

    Columns: ``scenario``, ``backend``, ``epsilon``, ``primary``, ``mean``, ``ci_low``,
    ``ci_high``, ``runs``.
    """
    from scipy import stats

    rows = []
    if frame.empty:
        return pd.DataFrame(rows)
    for _, r in frame[frame["status"] == "ok"].iterrows():
        params = json.loads(r["params"]) if isinstance(r.get("params"), str) else {}
        if "epsilon" not in params:
            continue
        name, value = _primary(r)
        rest = {k: v for k, v in params.items() if k != "epsilon"}
        backend = r["backend"] + (
            f" [{', '.join(f'{k}={v}' for k, v in rest.items())}]" if rest else ""
        )
        rows.append(
            {
                "scenario": r["scenario"],
                "backend": backend,
                "epsilon": float(params["epsilon"]),
                "primary": name,
                "value": float(value),
            }
        )
    if not rows:
        return pd.DataFrame(rows)
    runs = pd.DataFrame(rows)
    out = []
    for (scenario, backend, epsilon), group in runs.groupby(
        ["scenario", "backend", "epsilon"], sort=True
    ):
        values = group["value"].to_numpy(dtype=float)
        mean = float(values.mean())
        if len(values) > 1:
            half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1))
            half /= np.sqrt(len(values))
            low, high = mean - half, mean + half
        else:
            low = high = float("nan")
        out.append(
            {
                "scenario": scenario,
                "backend": backend,
                "epsilon": epsilon,
                "primary": group["primary"].iloc[0],
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
                "runs": len(values),
            }
        )
    curves = pd.DataFrame(out)
    swept = curves.groupby(["scenario", "backend"])["epsilon"].transform("nunique") > 1
    return curves[swept].reset_index(drop=True)


def _union_of_flags(values: pd.Series) -> str:
    return ", ".join(sorted({f for v in values for f in v.split(", ") if f}))


def _fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if kind == "bytes":
        v = float(value)
        for unit in ("B", "KiB", "MiB", "GiB"):
            if v < 1024 or unit == "GiB":
                return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
            v /= 1024
    if kind == "time":
        return f"{float(value):.3f} s"
    if kind == "int":
        return f"{int(value)}"
    return f"{float(value):.4g}"


def _rows(table: pd.DataFrame) -> list[list[str]]:
    rows = []
    for _, r in table.iterrows():
        label = r["backend"] + (f" [{r['params']}]" if r["params"] else "")
        accuracy = f"{r['primary']} = {_fmt(r['value'], 'num')}" if r["primary"] else "-"
        if r["status"] != "ok":
            accuracy = f"{r['status']}: {str(r['error'])[:60]}"
        rows.append(
            [
                label,
                accuracy,
                _fmt(r["wall_s"], "time"),
                _fmt(r["wan_s"], "time"),
                _fmt(r["bytes"], "bytes"),
                _fmt(r["rounds"], "int"),
                _fmt(r["worst_risk"], "num"),
                _epsilons(r["eps_lower"], r["eps_claimed"]),
                r["flags"] or "-",
            ]
        )
    return rows


_HEADER = [
    "backend",
    "accuracy (primary)",
    "time",
    "WAN time",
    "bytes",
    "rounds",
    "worst risk",
    "ε lower / claimed",
    "flags",
]


def _epsilons(lower: Any, claimed: Any) -> str:
    if lower is None or (isinstance(lower, float) and np.isnan(lower)):
        return "-" if claimed is None or pd.isna(claimed) else f"- / {float(claimed):g}"
    claim = "none" if claimed is None or pd.isna(claimed) else f"{float(claimed):g}"
    return f"{float(lower):.3g} / {claim}"


def attack_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Return one row per (scenario, backend, params, attack, method, attacker, observer).

    Success counts are pooled over repeats and seeds, with a 95% Wilson interval of the
    pooled rate; control rate and residual risk are means over repeats. Attacks that were
    not applicable keep their reason; DP audits show the largest epsilon lower bound.
    """
    from pets.leakage.rates import wilson_interval

    rows = []
    if frame.empty or "leakage.attacks" not in frame:
        return pd.DataFrame(rows)
    for _, r in frame[frame["status"] == "ok"].iterrows():
        params = json.loads(r["params"]) if isinstance(r.get("params"), str) else {}
        for a in json.loads(r.get("leakage.attacks") or "[]"):
            rows.append(
                {
                    "scenario": r["scenario"],
                    "backend": r["backend"],
                    "params": ", ".join(f"{k}={v}" for k, v in params.items()),
                    "attack": a["attack"],
                    "method": a.get("method", ""),
                    "attacker": a.get("attacker", "-"),
                    "observer": a.get("observer", "-"),
                    "applicable": bool(a.get("applicable")),
                    "diagnostic": bool(a.get("diagnostic")),
                    "successes": round(a["success_rate"] * a["trials"])
                    if a.get("trials") and a.get("success_rate") is not None
                    else None,
                    "trials": a.get("trials") if a.get("success_rate") is not None else None,
                    "control": a.get("control_rate"),
                    "baseline": a.get("baseline"),
                    "risk": a.get("residual_risk"),
                    "epsilon_lower": a.get("epsilon_lower"),
                    "note": a.get("note", ""),
                }
            )
    if not rows:
        return pd.DataFrame(rows)
    runs = pd.DataFrame(rows)
    keys = ["scenario", "backend", "params", "attack", "method", "attacker", "observer"]
    out = []
    for key, group in runs.groupby(keys, sort=True, dropna=False):
        row = dict(zip(keys, key, strict=True))
        applicable = group[group["applicable"]]
        row["applicable"] = len(applicable) > 0
        row["diagnostic"] = bool(group["diagnostic"].any())
        row["note"] = next((n for n in group["note"] if n), "")
        counted = applicable.dropna(subset=["trials"])
        if len(counted):
            k, n = int(counted["successes"].sum()), int(counted["trials"].sum())
            _, low, high = wilson_interval(k, n)
            row.update(rate=k / n, ci_low=low, ci_high=high, trials=n)
        row["control"] = pd.to_numeric(applicable["control"], errors="coerce").mean()
        row["risk"] = pd.to_numeric(applicable["risk"], errors="coerce").mean()
        row["epsilon_lower"] = pd.to_numeric(applicable["epsilon_lower"], errors="coerce").max()
        row["runs"] = len(group)
        out.append(row)
    return pd.DataFrame(out)


def scorecard_text(frame: pd.DataFrame) -> str:
    """Return the scorecards as aligned plain text for a terminal."""
    parts = []
    for scenario, table in scorecard(frame).items():
        rows = [_HEADER, *_rows(table)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
        lines = [f"== {scenario} =="]
        for j, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
            if j == 0:
                lines.append("  ".join("-" * w for w in widths))
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def markdown_report(frame: pd.DataFrame, *, title: str = "PETs Sandbox run") -> str:
    """Return a Markdown report: one scorecard per scenario and a reading guide."""
    lines = [
        f"# {title}",
        "",
        "Every figure below was computed by the harness from the run's records: accuracy "
        "against the plaintext reference answer, cost measured by the session and the "
        "cell's process, leakage from attacks on what each party observed. `time` is "
        "measured on this machine; `WAN time` is the same run modelled between sites 50 ms "
        "and 100 Mbit/s apart (see docs/network.md for the formula). "
        "`worst risk` is the highest residual risk of any attack (0 = no better than the "
        "control, 1 = complete); `ε lower / claimed` is the DP audit's lower bound on "
        "epsilon next to the backend's claim. `flags` name what the attacks found "
        "(`exposes_inputs`: another party's raw values readable in a party's received "
        "bytes; `reidentifies`, `reveals_individuals`, `singles_out`, ... : an attack's "
        "residual risk above 0.5) and any measured leakage the backend's claim denies "
        "(`claim_contradicted`). The section Attacks lists every attack.",
        "",
    ]
    skipped = int((frame["status"] == "unsupported").sum()) if len(frame) else 0
    for scenario, table in scorecard(frame).items():
        lines += [
            f"## {scenario}",
            "",
            "| " + " | ".join(_HEADER) + " |",
            "|" + "---|" * len(_HEADER),
        ]
        for row in _rows(table):
            lines.append("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
        lines.append("")
    attacks = attack_table(frame)
    if len(attacks):
        lines += [
            "## Attacks",
            "",
            "Each attack as the harness ran it: the attacker model (A0 recipient, A1 "
            "motivated intruder, A2 honest-but-curious party, A3 worst-case auditor), the "
            "party whose view was attacked, the success rate pooled over runs with its 95% "
            "Wilson interval, the control rate, and the residual risk "
            "(attack − control) / (1 − control). `n/a` means the attacker observes nothing "
            "there; diagnostics are shown but do not count towards the worst risk.",
            "",
            "| scenario | backend | attack | attacker | observer | rate (95% CI) | trials "
            "| control | residual risk | ε lower | note |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for _, a in attacks.iterrows():
            label = a["backend"] + (f" [{a['params']}]" if a["params"] else "")
            attack = a["attack"] + (f" ({a['method']})" if a["method"] else "")
            attack += " (diagnostic)" if a["diagnostic"] else ""
            if not a["applicable"]:
                cells = ["n/a", "-", "-", "-", "-"]
            else:
                rate = (
                    f"{a['rate']:.3f} ({a['ci_low']:.3f} to {a['ci_high']:.3f})"
                    if pd.notna(a.get("rate"))
                    else "-"
                )
                cells = [
                    rate,
                    _fmt(a.get("trials"), "int"),
                    _fmt(a["control"], "num"),
                    _fmt(a["risk"], "num"),
                    _fmt(a["epsilon_lower"], "num"),
                ]
            note = str(a["note"]).replace("|", "/")[:90]
            lines.append(
                f"| {a['scenario']} | {label} | {attack} | {a['attacker']} | {a['observer']} "
                f"| {' | '.join(cells)} | {note} |"
            )
        lines.append("")
    curves = utility_curves(frame)
    if len(curves):
        lines += [
            "## Privacy-utility curves",
            "",
            "The primary metric per epsilon: mean over repeats and seeds, with a 95% "
            "confidence interval (Student t) where there was more than one run.",
            "",
            "| scenario | backend | epsilon | metric | mean | 95% CI | runs |",
            "|---|---|---|---|---|---|---|",
        ]
        for _, c in curves.iterrows():
            interval = (
                "-"
                if np.isnan(c["ci_low"])
                else f"{_fmt(c['ci_low'], 'num')} to {_fmt(c['ci_high'], 'num')}"
            )
            lines.append(
                f"| {c['scenario']} | {c['backend']} | {c['epsilon']:g} | {c['primary']} | "
                f"{_fmt(c['mean'], 'num')} | {interval} | {c['runs']} |"
            )
        lines.append("")
    if skipped:
        lines.append(
            f"{skipped} cells were skipped because the backend does not serve the "
            "scenario's task kind."
        )
    return "\n".join(lines) + "\n"
