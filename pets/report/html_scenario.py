"""One scenario's section of the HTML report: the card (parties, attacker models,
story), the requirement verdicts, the scorecard with ratings, the charts, the epsilon
table, the release's identifiability, and per-attack and cost detail folded away."""

from __future__ import annotations

import pandas as pd

from pets.report.charts import (
    Chart,
    bytes_chart,
    pareto_chart,
    scaling_chart,
    utility_charts,
)
from pets.report.findings import ScenarioFindings, claim_summary
from pets.report.glossary import ATTACKER_MODELS, FLAGS, ROLE_MUST_NOT_LEARN
from pets.report.guidance import ANONYMISATION_GUIDANCE
from pets.report.html_blocks import esc, html_table, number_cell, story_html
from pets.report.ratings import rate, rate_accuracy, rate_epsilon
from pets.report.scorecard import row_label
from pets.report.units import (
    is_missing,
    show_bytes,
    show_epsilon,
    show_interval,
    show_number,
    show_seconds,
)
from pets.report.verdicts import REQUIREMENT_NAMES

__all__ = ["scenario_section"]

_FRONT_BADGE = '<br><span class="badge">Pareto front</span>'


def _backend_cell(row: pd.Series, many: bool) -> str:
    badges = [f'<span class="badge">{esc(row["pet_class"])}</span>'] if row["pet_class"] else []
    if row["verified"] is False:
        badges.append('<span class="badge warn">unverified</span>')
    if "api" in str(row["isolation"]).split(", "):
        badges.append(
            '<span class="badge warn" title="ran in the harness process">not isolated</span>'
        )
    if row["status"] != "ok":
        badges.append(f'<span class="badge bad">{esc(row["status"])}</span>')
    return f"<td><strong>{esc(row_label(row, with_size=many))}</strong> {' '.join(badges)}</td>"


def _scorecard(s: ScenarioFindings) -> str:
    primaries = {p for p in s.table["primary"] if p}
    one = len(primaries) == 1
    accuracy_header = "accuracy (95% CI)"
    if one:
        higher = bool(s.table["higher_is_better"].any())
        accuracy_header = (
            f"accuracy: {next(iter(primaries))}, {'higher' if higher else 'lower'} is better "
            "(95% CI)"
        )
    header = [
        "backend",
        accuracy_header,
        "time",
        "WAN time",
        "bytes",
        "rounds",
        "claim",
        "worst residual risk (95% CI)",
        "ε claimed (audit)",
        "flags",
    ]
    rows = []
    for i, r in s.table.iterrows():
        front = bool(s.front.get(i, False))
        attrs = (
            f' data-backend="{esc(r["backend"])}" data-params="{esc(r["params"])}"'
            f' data-size="{esc(r["size"])}" data-status="{esc(r["status"])}"'
        )
        if r["status"] != "ok":
            error = esc(str(r["error"])[:160])
            rows.append(
                f"<tr{attrs}>{_backend_cell(r, s.many_sizes)}<td colspan=9>{error}</td></tr>"
            )
            continue
        accuracy = number_cell(
            "accuracy",
            r["value"],
            show_number(r["value"]) if one else f"{r['primary']} = {show_number(r['value'])}",
            rate_accuracy(r["value"], r["higher_is_better"]),
            show_interval(r["value_low"], r["value_high"]),
        )
        risk_note = show_interval(r["risk_low"], r["risk_high"])
        if r["worst_attack"]:
            risk_note = f"{risk_note} {str(r['worst_attack']).replace('@', ' on ')}".strip()
        flags = "<br>".join(
            f'<span title="{esc(FLAGS.get(f, ""))}">{esc(f)}</span>'
            for f in r["flags"].split(", ")
            if f
        )
        epsilon = "-" if is_missing(r["eps_claimed"]) else show_epsilon(r["eps_claimed"])
        audited = "" if is_missing(r["eps_lower"]) else f"audited ≥ {show_epsilon(r['eps_lower'])}"
        if not audited and not is_missing(r["eps_claimed"]):
            audited = "not audited"
        rows.append(
            f"<tr{attrs}>{_backend_cell(r, s.many_sizes)}{accuracy}"
            + number_cell(
                "wall_s", r["wall_s"], show_seconds(r["wall_s"]), rate("seconds", r["wall_s"])
            )
            + number_cell(
                "wan_s", r["wan_s"], show_seconds(r["wan_s"]), rate("seconds", r["wan_s"])
            )
            + number_cell("bytes", r["bytes"], show_bytes(r["bytes"]), rate("bytes", r["bytes"]))
            + number_cell(
                "rounds", r["rounds"], show_number(r["rounds"]), rate("rounds", r["rounds"])
            )
            + f"<td>{esc(claim_summary(r['claim']))}</td>"
            + number_cell(
                "worst_risk",
                r["worst_risk"],
                show_number(r["worst_risk"]),
                rate("risk", r["worst_risk"]),
                risk_note,
            )
            + number_cell(
                "eps_claimed",
                r["eps_claimed"],
                epsilon,
                rate_epsilon(r["eps_claimed"], r["eps_lower"]),
                audited,
            )
            + f"<td>{flags or '-'}{_FRONT_BADGE if front else ''}</td>"
            + "</tr>"
        )
    return html_table(header, rows, "scorecard")


def _verdicts(s: ScenarioFindings) -> str:
    if s.verdicts.empty:
        return "<p>The card states no requirements, so no verdict is given.</p>"
    req = s.requirements
    stated = ", ".join(f"{REQUIREMENT_NAMES[n]} {_bound(n, v)}" for n, v in req.stated().items())
    intro = f"<p><strong>The card requires:</strong> {esc(stated)}."
    intro += f" <em>{esc(req.rationale)}</em></p>" if req.rationale else "</p>"
    if s.source.requirements_note:
        intro += f'<p><span class="badge warn">note</span> {esc(s.source.requirements_note)}.</p>'

    names = list(req.stated())
    rows = []
    for _, v in s.verdicts.iterrows():
        cls = {"meets all": "verdict-meets", "misses": "verdict-misses"}.get(v["verdict"], "")
        checks = {c.requirement: c for c in v["checks"]}
        cells = []
        for name in names:
            c = checks.get(name)
            if c is None:
                cells.append("<td>-</td>")
                continue
            mark, tone = {True: ("✔", "good"), False: ("✘", "poor")}.get(c.met, ("?", "none"))
            cells.append(
                f'<td class="{tone}" title="{esc(c.text)}" data-requirement="{esc(name)}">'
                f"{mark} {esc(c.measured)}</td>"
            )
        rows.append(
            f'<tr data-backend="{esc(v["backend"])}" data-verdict="{esc(v["verdict"])}">'
            f'<td>{esc(v["label"])}</td><td class="{cls}">{esc(v["verdict"])}</td>'
            + "".join(cells)
            + f"<td>{'yes' if v['on_front'] else ''}</td></tr>"
        )
    header = ["backend", "verdict"]
    header += [f"{REQUIREMENT_NAMES[n]} {_bound(n, req.stated()[n])}" for n in names]
    return intro + html_table([*header, "Pareto front"], rows, "verdicts")


def _bound(name: str, value: float) -> str:
    return show_seconds(value) if name == "max_wan_seconds" else f"{value:g}"


def _epsilon_table(s: ScenarioFindings) -> str:
    if s.epsilons.empty:
        return ""
    rows = []
    for _, e in s.epsilons.iterrows():
        warn = ' <span class="badge bad">contradicted</span>' if e["contradicted"] else ""
        spent = show_epsilon(e["spent"]) if not is_missing(e["spent"]) else "not reported"
        rows.append(
            f'<tr data-backend="{esc(e["backend"])}"><td>{esc(e["label"])}{warn}</td>'
            + number_cell("claimed", e["claimed"], show_epsilon(e["claimed"]))
            + f"<td>{esc(e['accountant'])}</td>"
            + number_cell("spent", e["spent"], spent)
            + number_cell("audited", e["audited"], show_epsilon(e["audited"]))
            + f"<td>{esc(e['audit'])}</td></tr>"
        )
    return (
        "<h3>Differential privacy: claimed, accounted and audited ε</h3>"
        "<p>Claimed: the ε the backend's claim states. Accounted: what its accountant says "
        "it spent, where the backend reports it. Audited: a lower bound the harness "
        "measured by running the backend on neighbouring inputs (the worst-case auditor, "
        "A3); an audited figure above the claim contradicts it.</p>"
        + html_table(
            ["backend", "claimed ε", "accountant", "accounted ε", "audited ε ≥", "audit"], rows
        )
    )


def _identifiability(s: ScenarioFindings) -> str:
    if s.identifiability.empty:
        return ""
    rows = []
    for _, a in s.identifiability.iterrows():
        rows.append(
            f"<tr><td>{esc(a['label'])}</td><td>{esc(a['indicator'])}</td><td>{esc(a['attacker'])}</td>"
            + number_cell(
                "rate",
                a["rate"],
                show_number(a["rate"]),
                None,
                show_interval(a["ci_low"], a["ci_high"]),
            )
            + number_cell("control", a["control"], show_number(a["control"]))
            + number_cell(
                "risk",
                a["risk"],
                show_number(a["risk"]),
                rate("risk", a["risk"]),
                show_interval(a["risk_low"], a["risk_high"]),
            )
            + "</tr>"
        )
    return (
        "<h3>Identifiability of the release</h3>"
        f"<p>The three indicators of identifiability in the {esc(ANONYMISATION_GUIDANCE)}, "
        "as the harness measured them. The motivated intruder (A1) holds auxiliary "
        "quasi-identifiers; the recipient (A0) holds only the release.</p>"
        + html_table(
            ["backend", "indicator", "attacker", "success rate", "control", "residual risk"], rows
        )
    )


def _attacks(s: ScenarioFindings) -> str:
    if s.attacks.empty:
        return ""
    rows = []
    for _, a in s.attacks.iterrows():
        attack = a["attack"] + (f" ({a['method']})" if a["method"] else "")
        if a["diagnostic"]:
            attack += " (diagnostic)"
        if not a["applicable"]:
            cells = '<td colspan=5 class="none">not applicable</td>'
        else:
            cells = (
                number_cell(
                    "rate",
                    a.get("rate"),
                    show_number(a.get("rate")),
                    None,
                    show_interval(a.get("ci_low"), a.get("ci_high")),
                )
                + number_cell("control", a["control"], show_number(a["control"]))
                + number_cell(
                    "risk",
                    a["risk"],
                    show_number(a["risk"]),
                    None,
                    show_interval(a.get("risk_low"), a.get("risk_high")),
                )
                + number_cell("epsilon_lower", a["epsilon_lower"], show_number(a["epsilon_lower"]))
                + f"<td>{esc(a.get('claim_check') or '-')}</td>"
            )
        rows.append(
            f"<tr><td>{esc(row_label(a, with_size=s.many_sizes))}</td><td>{esc(attack)}</td>"
            f"<td>{esc(a['attacker'])}</td><td>{esc(a['observer'])}</td>{cells}"
            f"<td>{esc(str(a['note'])[:160])}</td></tr>"
        )
    header = [
        "backend",
        "attack",
        "attacker",
        "observer",
        "rate (95% CI)",
        "control",
        "residual risk (95% CI)",
        "ε ≥",
        "claim check",
        "note",
    ]
    return (
        f'<details class="attacks"><summary>Every attack on {esc(s.id)} ({len(rows)} rows)'
        "</summary><p>Success rates pooled over repeats with 95% Wilson intervals; residual "
        "risk = (attack − control) / (1 − control). A claim check compares the lower end of "
        "the attack's interval with the most the backend's claim allows (its cap). Not "
        "applicable means that attacker observes nothing there.</p>"
        + html_table(header, rows)
        + "</details>"
    )


def _costs(s: ScenarioFindings) -> str:
    rows = []
    for _, r in s.table[s.table["status"] == "ok"].iterrows():
        rows.append(
            f"<tr><td>{esc(row_label(r, with_size=s.many_sizes))}</td>"
            + number_cell("cpu_s", r["cpu_s"], show_seconds(r["cpu_s"]))
            + number_cell("startup_s", r["startup_s"], show_seconds(r["startup_s"]))
            + number_cell("peak_rss_mb", r["peak_rss_mb"], show_number(r["peak_rss_mb"], 4))
            + number_cell("messages", r["messages"], show_number(r["messages"], 6))
            + f"<td>{esc(r['isolation'] or 'not recorded')}</td><td>{r['ok_runs']}</td></tr>"
        )
    header = [
        "backend",
        "CPU",
        "party start-up",
        "peak memory (MB)",
        "messages",
        "isolation",
        "runs",
    ]
    return (
        "<details><summary>Cost detail</summary><p>CPU of every party process; party "
        "start-up is reported apart from the protocol's time; isolation says whether each "
        "party ran as its own process.</p>" + html_table(header, rows) + "</details>"
    )


def _charts(charts: list[Chart]) -> str:
    if not charts:
        return ""
    figures = [
        f'<figure class="chart{" wide" if c.wide else ""}" data-chart="{esc(c.key)}" '
        f'data-marks="{c.marks}">'
        f"<h4>{esc(c.title)}</h4>{c.svg}<figcaption>{esc(c.caption)}</figcaption></figure>"
        for c in charts
    ]
    return '<div class="charts">' + "".join(figures) + "</div>"


def scenario_section(s: ScenarioFindings, colours: dict[str, str]) -> str:
    """Return the section of one scenario; ``colours`` maps backend names to colours."""
    card = s.source.card
    title = card.title if card is not None else s.id
    parts = [f'<section class="scenario" id="scenario-{esc(s.id)}"><h2>{esc(title)}</h2>']
    if card is not None:
        parts.append(f'<p class="lede">{esc(card.summary)}</p><div class="card">')
        parties = [
            f"<tr><td>{esc(p.name)}</td><td>{esc(p.role.replace('_', ' '))}</td>"
            f"<td>{esc(ROLE_MUST_NOT_LEARN.get(p.role, '-'))}</td></tr>"
            for p in card.parties
        ]
        parts.append(html_table(["party", "role", "must not learn"], parties))
        attackers = "".join(
            f"<li><strong>{a} {esc(ATTACKER_MODELS[a][0])}</strong>: "
            f"{esc(ATTACKER_MODELS[a][1])}</li>"
            for a in card.attackers
            if a in ATTACKER_MODELS
        )
        parts.append(
            f"<p><strong>Attacker models that apply:</strong></p><ul>{attackers}</ul></div>"
        )
        if card.story is not None and card.story.exists():
            parts.append(
                "<details><summary>The story</summary>"
                f"{story_html(card.story.read_text())}</details>"
            )
    else:
        parts.append(f"<p>{esc(s.source.note)}</p>")
    if s.source.status == "changed":
        parts.append(f'<p><span class="badge warn">card changed</span> {esc(s.source.note)}</p>')
    parts.append("<h3>Requirements and verdicts</h3>" + _verdicts(s))
    parts.append("<h3>Scorecard</h3>" + _scorecard(s))
    order = [row_label(r, with_size=s.many_sizes) for _, r in s.table.iterrows()]
    charts = [pareto_chart(s.table, s.front, s.id, colours)]
    charts += utility_charts(s.curves, s.id, colours, s.requirements)
    charts += [scaling_chart(s.table, s.id, colours), bytes_chart(s.bytes, s.id, colours, order)]
    parts.append(_charts([c for c in charts if c is not None]))
    parts += [_epsilon_table(s), _identifiability(s), _attacks(s), _costs(s), "</section>"]
    return "".join(parts)
