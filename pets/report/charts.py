"""Charts as inline SVG, drawn by matplotlib from the scorecard data.

Figures are made with :class:`matplotlib.figure.Figure` directly (no pyplot, so no
global backend or GUI is touched) and saved as SVG with text kept as text. Every
artist that carries data has an SVG id containing ``data-``, and every id in a chart is
prefixed with the chart's key, so several charts can sit in one HTML page and a test
can find each chart's data marks.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pets.report.scorecard import row_label
from pets.report.units import is_missing
from pets.scenarios import Requirements

__all__ = [
    "Chart",
    "backend_colours",
    "bytes_chart",
    "fitted_slope",
    "pareto_chart",
    "scaling_chart",
    "utility_charts",
]


@dataclass(frozen=True)
class Chart:
    """One chart, ready to inline.

    Attributes
    ----------
    key : str
        Unique in the page; prefixes every SVG id.
    title : str
        What the chart shows.
    caption : str
        How to read it and where its numbers come from.
    svg : str
        The ``<svg>`` element.
    marks : int
        Number of data series drawn (each an SVG group with ``data-`` in its id).
    wide : bool
        True for charts that need the page's full width.
    """

    key: str
    title: str
    caption: str
    svg: str
    marks: int
    wide: bool = False


_STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "pets-report",
    "font.size": 9,
    "font.family": "sans-serif",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def backend_colours(names: Sequence[str]) -> dict[str, str]:
    """Return one stable colour per backend name (matplotlib's tab20 cycle)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab20"]
    order = [*range(0, 20, 2), *range(1, 20, 2)]  # the ten distinct hues first
    return {name: to_hex(cmap(order[i % 20])) for i, name in enumerate(sorted(set(names)))}


def _figure(width: float = 7.0, height: float = 4.0) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(figure: Any, key: str, title: str) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context(_STYLE):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    ids = set(re.findall(r'\bid="([^"]+)"', text))

    def prefix(match: re.Match[str]) -> str:
        name = match.group(2)
        return match.group(1) + (f"{key}-{name}" if name in ids else name)

    text = re.sub(r'(\bid="|href="#|url\(#)([^")]+)', prefix, text)
    width = re.search(r'<svg[^>]*\bwidth="([\d.]+)pt"', text)
    style = f"max-width:{width.group(1)}pt" if width else ""
    text = re.sub(r'(<svg[^>]*?)\s+width="[^"]*"\s+height="[^"]*"', r"\1", text, count=1)
    label = title.replace('"', "'").replace("&", "and").replace("<", "").replace(">", "")
    return text.replace(
        "<svg",
        f'<svg class="chart-svg" role="img" aria-label="{label}" style="{style}"',
        1,
    )


def _draw(
    key: str,
    title: str,
    caption: str,
    build: Any,
    size: tuple[float, float],
    wide: bool = False,
) -> Chart:
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        figure = _figure(*size)
        marks = build(figure)
        svg = _svg(figure, key, title)
    return Chart(key=key, title=title, caption=caption, svg=svg, marks=marks, wide=wide)


def _metric_label(primary: str, higher_is_better: bool) -> str:
    return f"{primary} ({'higher' if higher_is_better else 'lower'} is better)"


def utility_charts(
    curves: pd.DataFrame,
    scenario: str,
    colours: Mapping[str, str],
    requirements: Requirements | None = None,
) -> list[Chart]:
    """Return the privacy-utility charts of one scenario: one per x axis (claimed
    epsilon, or a swept parameter that does not move the claim), with the 95%
    intervals over repeats as error bars and the card's bounds as dashed lines."""
    mine = curves[curves["scenario"] == scenario] if len(curves) else curves
    charts = []
    for n, (axis, group) in enumerate(mine.groupby("axis", sort=True) if len(mine) else []):
        primary = group["primary"].iloc[0]
        higher = bool(group["higher_is_better"].iloc[0])

        def build(
            figure: Any,
            group: pd.DataFrame = group,
            axis: str = axis,
            primary: str = primary,
            higher: bool = higher,
        ) -> int:
            ax = figure.add_subplot()
            marks = 0
            for i, (label, line) in enumerate(group.groupby("backend", sort=True)):
                line = line.sort_values("x")
                base = label.split(" ")[0]
                low = (line["mean"] - line["ci_low"]).clip(lower=0).fillna(0)
                high = (line["ci_high"] - line["mean"]).clip(lower=0).fillna(0)
                bars = ax.errorbar(
                    line["x"],
                    line["mean"],
                    yerr=[low.to_numpy(), high.to_numpy()],
                    marker=_MARKERS[i % len(_MARKERS)],
                    color=colours.get(base),
                    capsize=3,
                    label=label,
                )
                bars.lines[0].set_gid(f"data-curve-{marks}")
                marks += 1
            _bounds(ax, requirements, axis, higher)
            ax.set_xscale("log")
            values = group["mean"].to_numpy(dtype=float)
            positive = values[values > 0]
            if len(positive) == len(values) and positive.max() / positive.min() > 20:
                ax.set_yscale("log")
            ax.set_xlabel("claimed ε (from each record's claim)" if axis == "epsilon" else axis)
            ax.set_ylabel(_metric_label(primary, higher))
            ax.legend(fontsize=8)
            return marks

        fixed = ""
        if axis != "epsilon":
            fixed = (
                f" The claimed total ε stays {group['epsilon'].max():g} at every point: "
                f"{axis} changes how the budget is spent, not its size."
            )
        charts.append(
            _draw(
                f"{scenario}-utility-{n}",
                f"Privacy against accuracy: {primary} as {axis} varies",
                "Mean of the primary metric over repeats and seeds at each value, with "
                "95% Student-t intervals where there was more than one run." + fixed,
                build,
                (7.0, 3.8),
            )
        )
    return charts


def _bounds(ax: Any, requirements: Requirements | None, axis: str, higher: bool) -> None:
    if requirements is None:
        return
    if requirements.max_epsilon is not None and axis == "epsilon":
        ax.axvline(requirements.max_epsilon, color="#555", linestyle="--", linewidth=1)
    bound = requirements.min_accuracy if higher else requirements.max_error
    if bound is not None:
        ax.axhline(bound, color="#555", linestyle="--", linewidth=1)


def pareto_chart(
    table: pd.DataFrame, front: pd.Series, scenario: str, colours: Mapping[str, str]
) -> Chart | None:
    """Return accuracy against worst residual risk for one scenario, with the Pareto
    front drawn as a line through the rows no other row beats on both."""
    ok = table[
        (table["status"] == "ok")
        & pd.to_numeric(table["value"], errors="coerce").notna()
        & pd.to_numeric(table["worst_risk"], errors="coerce").notna()
    ]
    if ok.empty:
        return None
    primary = ok["primary"].mode().iloc[0]
    ok = ok[ok["primary"] == primary]
    higher = bool(ok["higher_is_better"].iloc[0])
    many = table["size"].nunique() > 1

    def build(figure: Any) -> int:
        ax = figure.add_subplot()
        marks = 0
        for i, (_, row) in enumerate(ok.iterrows()):
            on = bool(front.get(row.name, False))
            points = ax.scatter(
                [float(row["worst_risk"])],
                [float(row["value"])],
                s=70 if on else 40,
                marker=_MARKERS[i % len(_MARKERS)],
                color=colours.get(row["backend"]),
                edgecolors="black" if on else "none",
                linewidths=1.2,
                zorder=3,
                label=row_label(row, with_size=many) + (" (front)" if on else ""),
            )
            points.set_gid(f"data-point-{marks}")
            marks += 1
            low, high = row.get("risk_low"), row.get("risk_high")
            if not is_missing(low) and not is_missing(high):  # the risk's 95% interval
                risk = float(row["worst_risk"])
                ax.errorbar(
                    [risk],
                    [float(row["value"])],
                    xerr=[[max(0.0, risk - float(low))], [max(0.0, float(high) - risk)]],
                    fmt="none",
                    ecolor=colours.get(row["backend"]),
                    elinewidth=0.8,
                    capsize=2,
                    zorder=2,
                )
        frontier = ok[[bool(front.get(i, False)) for i in ok.index]]
        if len(frontier) > 1:
            frontier = frontier.sort_values("worst_risk")
            (line,) = ax.plot(
                frontier["worst_risk"].astype(float),
                frontier["value"].astype(float),
                color="black",
                linewidth=1,
                linestyle=":",
                zorder=2,
                label="Pareto front",
            )
            line.set_gid("data-front")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.set_xlim(-0.05, 1.05)
        ax.set_xlabel("worst residual risk of any attack (0 = no better than a guess)")
        ax.set_ylabel(_metric_label(primary, higher))
        return marks

    return _draw(
        f"{scenario}-pareto",
        "Accuracy against worst residual risk",
        "One point per backend and parameters (means over repeats). Outlined points, "
        "joined by the dotted line, are on the Pareto front: no other backend is both "
        "more accurate and less at risk. Best is the corner at low risk and high accuracy. "
        "Horizontal bars: the 95% interval of the worst risk.",
        build,
        (9.0, max(3.8, 0.2 * len(ok) + 1.0)),
        wide=True,
    )


def fitted_slope(sizes: Sequence[float], values: Sequence[float]) -> float:
    """Return the least-squares slope of log(value) on log(size): the exponent of the
    cost's growth (1 linear, 2 quadratic); NaN with fewer than two positive points."""
    x = np.asarray(sizes, dtype=float)
    y = np.asarray(values, dtype=float)
    keep = (x > 0) & (y > 0) & np.isfinite(y)
    if keep.sum() < 2 or len(np.unique(x[keep])) < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def scaling_chart(table: pd.DataFrame, scenario: str, colours: Mapping[str, str]) -> Chart | None:
    """Return measured time against patients on log-log axes, with each backend's
    fitted slope in the legend; None unless some backend ran at several sizes."""
    ok = table[(table["status"] == "ok") & pd.to_numeric(table["wall_s"], errors="coerce").gt(0)]
    lines = [
        (label, group)
        for label, group in ok.groupby(["backend", "params"], sort=True)
        if group["size"].nunique() > 1
    ]
    if not lines:
        return None

    def build(figure: Any) -> int:
        ax = figure.add_subplot()
        marks = 0
        for i, ((backend, params), group) in enumerate(lines):
            group = group.sort_values("size")
            slope = fitted_slope(group["size"], group["wall_s"])
            name = backend + (f" [{params}]" if params else "")
            (line,) = ax.plot(
                group["size"].astype(float),
                group["wall_s"].astype(float),
                marker=_MARKERS[i % len(_MARKERS)],
                color=colours.get(backend),
                label=f"{name}: slope {slope:.2f}",
            )
            line.set_gid(f"data-scaling-{marks}")
            marks += 1
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("patients generated")
        ax.set_ylabel("measured time (s)")
        ax.legend(fontsize=8)
        return marks

    return _draw(
        f"{scenario}-scaling",
        "Time against size",
        "Measured wall time (mean over repeats) at each size, log-log. The slope is the "
        "least-squares fit of log time on log size: 1 means time grows in proportion to "
        "patients, 2 with their square.",
        build,
        (7.0, 3.8),
    )


def bytes_chart(
    party_table: pd.DataFrame,
    scenario: str,
    colours: Mapping[str, str],
    order: Sequence[str] = (),
) -> Chart | None:
    """Return bytes sent and received by each party, per backend, on a log axis; rows
    follow ``order`` (scorecard labels) where given."""
    mine = party_table[party_table["scenario"] == scenario] if len(party_table) else party_table
    if mine.empty or not (mine[["sent", "received"]].fillna(0).to_numpy() > 0).any():
        return None
    many = mine["size"].nunique() > 1
    mine = mine.assign(label=[row_label(r, with_size=many) for _, r in mine.iterrows()])
    labels = [v for v in order if v in set(mine["label"])]
    labels += [v for v in dict.fromkeys(mine["label"]) if v not in labels]
    parties = list(dict.fromkeys(mine["party"]))
    party_colours = backend_colours(parties)

    def build(figure: Any) -> int:
        ax = figure.add_subplot()
        marks = 0
        offsets = np.linspace(-0.25, 0.25, len(parties)) if len(parties) > 1 else [0.0]
        for edge in range(len(labels) - 1):
            ax.axhline(edge + 0.5, color="#d0d7de", linewidth=0.6)
        for party, offset in zip(parties, offsets, strict=True):
            rows = mine[mine["party"] == party]
            y = [labels.index(v) + offset for v in rows["label"]]
            sent = rows["sent"].astype(float).clip(lower=1)
            received = rows["received"].astype(float).clip(lower=1)
            colour = party_colours[party]
            dots = ax.scatter(sent, y, color=colour, marker="o", s=22, label=f"{party} sent")
            dots.set_gid(f"data-sent-{marks}")
            rings = ax.scatter(received, y, facecolors="none", edgecolors=colour, marker="o", s=22)
            rings.set_gid(f"data-received-{marks}")
            marks += 1
        ax.set_xscale("log")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.grid(False, axis="y")
        ax.invert_yaxis()
        ax.set_xlabel("bytes (filled: sent; open: received; 0 drawn at 1)")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        return marks

    return _draw(
        f"{scenario}-bytes",
        "Bytes per party",
        "Mean bytes each party sent (filled) and received (open) through the harness, per "
        "backend, log scale. A party that receives nothing learns nothing from messages.",
        build,
        (9.0, max(2.5, 0.32 * len(labels) + 1.2)),
        wide=True,
    )
