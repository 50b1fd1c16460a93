"""What the workshop notebooks share, built on the public API of ``pets`` only.

- :func:`holdings` and :func:`party_summary`: what each party holds, as counts and
  summary statistics, with identifier columns left out (never patient rows);
- :func:`run_sweep`: run backends at several values of one knob into one run folder;
- :func:`knob_figure`: accuracy, cost and worst residual risk against the knob, one line
  per backend, drawn from the records;
- :func:`findings_in_words`, :func:`knob_in_words`: what the attacks found and how the
  knob moved each figure, as sentences made from the records;
- :func:`knob_widget`: a slider and a Run button for the room (nothing runs until
  pressed, so the notebooks also run headless);
- :func:`show_chart`, :func:`show_figure`: one of the report's charts
  (:mod:`pets.report.charts`) or a matplotlib figure inline, as SVG;
- :func:`default_out`: ``results/notebooks`` at the top of the checkout (git-ignored).

The notebooks import this module from their own folder (``notebooks/``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import pets
from pets.data import IDENTIFIERS
from pets.report import attack_table
from pets.report.glossary import ATTACKER_MODELS, FLAGS
from pets.report.scorecard import params_label

__all__ = [
    "default_out",
    "findings_in_words",
    "holdings",
    "knob_figure",
    "knob_in_words",
    "knob_points",
    "knob_widget",
    "party_summary",
    "run_sweep",
    "show_chart",
    "show_figure",
]


def holdings(problem: Any) -> pd.DataFrame:
    """Return one row per party: what it holds, without any of its rows.

    Parameters
    ----------
    problem : pets.tasks.Problem
        From :func:`pets.scenarios.build_problem`.

    Returns
    -------
    pandas.DataFrame
        ``party``, ``role``, ``holds`` (rows or a model), ``patients``, ``columns``
        (identifier columns listed apart in ``identifiers``, never their values).
    """
    roles = {p.name: p.role for p in problem.task.parties}
    rows = []
    for party, data in problem.party_data.items():
        if isinstance(data, pd.DataFrame):
            ids = [c for c in data.columns if c in IDENTIFIERS]
            rows.append(
                {
                    "party": party,
                    "role": roles.get(party, ""),
                    "holds": "patient records",
                    "patients": len(data),
                    "columns": len(data.columns),
                    "identifiers": ", ".join(ids) or "-",
                }
            )
        else:
            weights = np.asarray(getattr(data, "coef", []))
            rows.append(
                {
                    "party": party,
                    "role": roles.get(party, ""),
                    "holds": f"a model ({type(data).__name__}, {weights.size} weights)",
                    "patients": 0,
                    "columns": 0,
                    "identifiers": "-",
                }
            )
    for party in problem.task.party_names:
        if party not in problem.party_data:
            rows.append(
                {
                    "party": party,
                    "role": roles.get(party, ""),
                    "holds": "nothing (receives only)",
                    "patients": 0,
                    "columns": 0,
                    "identifiers": "-",
                }
            )
    return pd.DataFrame(rows)


def party_summary(data: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Return summary statistics of one party's table, identifier columns dropped.

    Numbers get count, mean, spread and quartiles; categories their number of distinct
    values and the most common one. No row of the table is returned.
    """
    keep = [c for c in (columns or data.columns) if c in data.columns and c not in IDENTIFIERS]
    if not keep:
        return pd.DataFrame()
    return data[keep].describe(include="all").T.drop(columns=["top"], errors="ignore")


def run_sweep(
    scenario: str,
    backends: Sequence[str],
    knob: str,
    values: Iterable[Any],
    *,
    out: str | os.PathLike[str],
    params: dict[str, Any] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Run ``backends`` on ``scenario`` once per value of ``knob``, into one run folder.

    Cells already in ``out`` (the same card, backend, parameters, size and seed) are
    not run again. ``options`` go to :func:`pets.run` (``quick``, ``leakage``, ``jobs``).
    """
    frames = []
    for value in values:
        frames.append(
            pets.run(
                [scenario],
                list(backends),
                params={**(params or {}), knob: value},
                out=out,
                resume=True,
                progress=False,
                **options,
            )
        )
    return pd.concat(frames, ignore_index=True)


def _params(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value or {})


def knob_points(frame: pd.DataFrame, knob: str) -> pd.DataFrame:
    """Return one row per backend and value of ``knob`` among the ok records that set it:
    the primary accuracy metric, wall time, bytes and worst residual risk (NaN where no
    attack ran), each a mean over seeds and repeats (``runs``)."""
    rows = []
    for _, r in frame[frame["status"] == "ok"].iterrows():
        params = _params(r["params"])
        if knob not in params:
            continue
        primary = r["accuracy.primary"]
        rows.append(
            {
                "backend": r["backend"],
                knob: params[knob],
                "metric": primary,
                "accuracy": float(r[f"accuracy.{primary}"]),
                "higher_is_better": bool(r["accuracy.higher_is_better"]),
                "wall_s": float(r["cost.wall_s"]),
                "bytes": float(r["cost.bytes_total"]),
                "worst_risk": pd.to_numeric(r.get("leakage.worst_residual_risk"), errors="coerce"),
            }
        )
    columns = ["backend", knob, "metric", "accuracy", "higher_is_better"]
    columns += ["wall_s", "bytes", "worst_risk"]
    points = pd.DataFrame(rows, columns=columns)
    keys = ["backend", knob, "metric", "higher_is_better"]
    means = points.groupby(keys, sort=True, dropna=False).agg(
        accuracy=("accuracy", "mean"),
        wall_s=("wall_s", "mean"),
        bytes=("bytes", "mean"),
        worst_risk=("worst_risk", "mean"),
        runs=("accuracy", "size"),
    )
    return means.reset_index()


def knob_figure(frame: pd.DataFrame, knob: str, *, cost: str = "wall_s") -> Any:
    """Draw accuracy, cost and worst residual risk against ``knob``, one line per backend.

    Parameters
    ----------
    frame : pandas.DataFrame
        Records from :func:`pets.run` (or :func:`run_sweep`).
    knob : str
        The backend parameter that was swept.
    cost : {"wall_s", "bytes"}
        The cost shown in the middle panel.

    Returns
    -------
    matplotlib.figure.Figure
        Three panels; each backend is one line (an ``ax.lines`` entry) in each.
    """
    from matplotlib.figure import Figure

    from pets.report.charts import backend_colours

    points = knob_points(frame, knob)
    colours = backend_colours(points["backend"].unique())
    figure = Figure(figsize=(11, 3.4), layout="constrained")
    axes = figure.subplots(1, 3)
    metric = points["metric"].iloc[0] if len(points) else "accuracy"
    higher = bool(points["higher_is_better"].iloc[0]) if len(points) else True
    panels = [
        ("accuracy", f"{metric} ({'higher' if higher else 'lower'} is better)"),
        (cost, "time of the parties' programs (s)" if cost == "wall_s" else "bytes sent"),
        ("worst_risk", "worst residual risk (0 = a guess)"),
    ]
    for ax, (column, label) in zip(axes, panels, strict=True):
        for backend, line in points.groupby("backend", sort=True):
            ax.plot(line[knob], line[column], marker="o", label=backend, color=colours[backend])
        ax.set_xlabel(knob)
        ax.set_ylabel(label)
        values = points[knob].to_numpy(dtype=float)
        if len(values) and values.min() > 0 and values.max() / values.min() >= 10:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[2].set_ylim(-0.05, 1.05)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"Turning {knob}: accuracy, cost and residual risk")
    return figure


def knob_widget(
    scenario: str,
    backends: Sequence[str],
    knob: str,
    values: Sequence[Any],
    *,
    out: str | os.PathLike[str],
    params: dict[str, Any] | None = None,
    cost: str = "wall_s",
    **options: Any,
) -> Any:
    """Return a slider over ``values`` and a Run button for the room.

    Nothing runs until the button is pressed (so the notebook runs headless); then the
    chosen value is run into ``out`` and :func:`knob_figure` is redrawn from every
    record of ``backends`` in ``out`` that set ``knob``.
    """
    import ipywidgets as widgets
    from IPython.display import display

    from pets.report import load_run

    slider = widgets.SelectionSlider(options=list(values), description=knob)
    button = widgets.Button(description="Run", button_style="primary")
    output = widgets.Output()

    def run_value(_: Any) -> None:
        with output:
            output.clear_output(wait=True)
            run_sweep(scenario, backends, knob, [slider.value], out=out, params=params, **options)
            frame = load_run(out).frame
            mine = frame[(frame["scenario"] == scenario) & frame["backend"].isin(list(backends))]
            display(show_figure(knob_figure(mine, knob, cost=cost)))

    button.on_click(run_value)
    return widgets.VBox([widgets.HBox([slider, button]), output])


def knob_in_words(frame: pd.DataFrame, knob: str) -> str:
    """Say how accuracy, cost and worst residual risk moved from the lowest to the
    highest value of ``knob``, one sentence per backend, from the records."""
    points = knob_points(frame, knob)
    lines = []
    for backend, line in points.groupby("backend", sort=True):
        if len(line) < 2:
            continue
        low, high = line.iloc[0], line.iloc[-1]
        lines.append(
            f"- **{backend}**, {knob} from {low[knob]} to {high[knob]}: "
            f"{low['metric']} {low['accuracy']:.3g} → {high['accuracy']:.3g} "
            f"({'higher' if low['higher_is_better'] else 'lower'} is better); "
            f"time {low['wall_s']:.2f} s → {high['wall_s']:.2f} s; "
            f"bytes {low['bytes']:,.0f} → {high['bytes']:,.0f}; "
            f"worst residual risk {low['worst_risk']:.2f} → {high['worst_risk']:.2f}."
        )
    return "\n".join(lines) or f"Fewer than two values of {knob} ran."


def _risk_words(risk: float) -> str:
    if math.isnan(risk):
        return "no attack gave a figure"
    if risk < 0.1:
        return f"no better than a guess (residual risk {risk:.2f})"
    if risk <= 0.5:
        return f"somewhat better than a guess (residual risk {risk:.2f})"
    return f"far better than a guess (residual risk {risk:.2f})"


def findings_in_words(frame: pd.DataFrame) -> str:
    """Say what the attacks found, one paragraph per backend and parameters, in
    Markdown, from the records alone (their headline, flags and attack table)."""
    attacks = attack_table(frame)
    lines = []
    for _, r in frame[frame["status"] == "ok"].iterrows():
        params = _params(r["params"])
        name = r["backend"] + (f" [{params_label(params)}]" if params else "")
        worst = r.get("leakage.worst_attack")
        risk = r.get("leakage.worst_residual_risk")
        risk = math.nan if risk is None or pd.isna(risk) else float(risk)
        if not isinstance(worst, str):
            lines.append(f"- **{name}**: no attack ran (leakage mode {r.get('leakage.mode')}).")
            continue
        attack, _, observer = worst.partition("@")
        attacker = r.get("leakage.worst_attacker")
        who = ATTACKER_MODELS.get(attacker, (attacker or "an attacker",))[0]
        sentence = (
            f"- **{name}**: the strongest attack was {attack.replace('_', ' ')} "
            f"by the {who.lower()} ({attacker}) reading what {observer or 'the recipient'} "
            f"saw: {_risk_words(risk)}."
        )
        mine = attacks
        if len(attacks):
            label = params_label(params)
            mine = attacks[(attacks["backend"] == r["backend"]) & (attacks["params"] == label)]
        applicable = int(mine["applicable"].sum()) if len(mine) else 0
        if len(mine):
            sentence += f" {applicable} of {len(mine)} attacks applied."
        lower, claimed = r.get("leakage.epsilon_lower_bound"), r.get("leakage.epsilon_claimed")
        if claimed is not None and not pd.isna(claimed):
            if lower is not None and not pd.isna(lower):
                sentence += f" The DP audit's ε lower bound is {float(lower):.2f}"
                sentence += f" against the claimed ε {float(claimed):g}."
            else:
                audits = mine[mine["attack"] == "dp_audit"] if len(mine) else mine
                why = "the harness's DP audit does not cover this task kind"
                if len(audits):
                    why = str(audits["note"].iloc[0] or "the DP audit gave no bound").split(":")[0]
                sentence += f" The claimed ε is {float(claimed):g}; no audited bound ({why})."
        flags = json.loads(r["leakage.flags"]) if isinstance(r["leakage.flags"], str) else []
        for flag in flags:
            sentence += f" Flag `{flag}`: {FLAGS.get(flag, flag)}"
        lines.append(sentence)
    return "\n".join(lines) or "No backend ran successfully, so no attack was run."


def show_figure(figure: Any) -> Any:
    """Return a matplotlib figure as inline SVG for the notebook (the figures here are
    built without pyplot, so no GUI backend is touched)."""
    import io

    from IPython.display import SVG

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    return SVG(buffer.getvalue())


def show_chart(chart: Any) -> Any:
    """Return one of the report's charts (a :class:`pets.report.charts.Chart`) as
    inline HTML for the notebook, with its title and caption."""
    from IPython.display import HTML

    return HTML(f"<h4>{chart.title}</h4>{chart.svg}<p><em>{chart.caption}</em></p>")


def default_out() -> Path:
    """``results/notebooks`` at the top of the checkout (git-ignored)."""
    return Path(__file__).resolve().parent.parent / "results" / "notebooks"
