"""The Markdown report, for repositories: the same findings as the HTML page, without
charts (their figures are in the tables), per-attack detail folded in ``<details>``."""

from __future__ import annotations

import pandas as pd

from pets.report.evidence import RunEvidence
from pets.report.findings import RunFindings, ScenarioFindings, claim_summary, gather
from pets.report.glossary import ATTACKER_MODELS, FLAGS, ROLE_MUST_NOT_LEARN
from pets.report.guidance import ANONYMISATION_GUIDANCE, PET_GUIDANCE, PETS_GUIDANCE
from pets.report.ratings import RATING_SCALES, rate, rate_accuracy, rate_epsilon
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

__all__ = ["markdown_report"]


def _cell(text: object) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _with_ci(value: str, low: object, high: object) -> str:
    interval = show_interval(low, high)
    return f"{value} {interval}" if interval else value


def _scorecard(s: ScenarioFindings) -> list[str]:
    rows = []
    for i, r in s.table.iterrows():
        label = row_label(r, with_size=s.many_sizes)
        if r["verified"] is False:
            label += " (unverified)"
        if "api" in str(r["isolation"]).split(", "):
            label += " (not isolated)"
        if r["status"] != "ok":
            rows.append([label, f"{r['status']}: {str(r['error'])[:80]}", *["-"] * 8])
            continue
        acc = rate_accuracy(r["value"], r["higher_is_better"]).word
        epsilon = "-"
        if not (is_missing(r["eps_lower"]) and is_missing(r["eps_claimed"])):
            epsilon = f"{show_epsilon(r['eps_lower'])} / {show_epsilon(r['eps_claimed'])}"
            epsilon += f" ({rate_epsilon(r['eps_claimed'], r['eps_lower']).word})"
        flags = r["flags"] or "-"
        if bool(s.front.get(i, False)):
            flags += " · Pareto front"
        rows.append(
            [
                label,
                _with_ci(
                    f"{r['primary']} = {show_number(r['value'])}", r["value_low"], r["value_high"]
                )
                + f" ({acc})",
                f"{show_seconds(r['wall_s'])} ({rate('seconds', r['wall_s']).word})",
                f"{show_seconds(r['wan_s'])} ({rate('seconds', r['wan_s']).word})",
                f"{show_bytes(r['bytes'])} ({rate('bytes', r['bytes']).word})",
                show_number(r["rounds"]),
                claim_summary(r["claim"]),
                _with_ci(show_number(r["worst_risk"]), r["risk_low"], r["risk_high"])
                + f" ({rate('risk', r['worst_risk']).word})",
                epsilon,
                flags,
            ]
        )
    header = [
        "backend",
        "accuracy (95% CI)",
        "time",
        "WAN time",
        "bytes",
        "rounds",
        "claim",
        "worst risk (95% CI)",
        "ε audited / claimed",
        "flags",
    ]
    return _table(header, rows)


def _verdicts(s: ScenarioFindings) -> list[str]:
    if s.verdicts.empty:
        return ["The card states no requirements.", ""]
    req = s.requirements
    stated = ", ".join(f"{REQUIREMENT_NAMES[n]} {v:g}" for n, v in req.stated().items())
    lines = [
        f"**The card requires:** {stated}." + (f" *{req.rationale}*" if req.rationale else ""),
        "",
    ]
    if s.source.requirements_note:
        lines += [f"*Note: {s.source.requirements_note}.*", ""]
    rows = [
        [
            v["label"],
            f"**{v['verdict']}**" if v["verdict"] == "meets all" else v["verdict"],
            "; ".join(
                ("✔ " if c.met else "✘ " if c.met is False else "? ") + c.text for c in v["checks"]
            ),
            "yes" if v["on_front"] else "",
        ]
        for _, v in s.verdicts.iterrows()
    ]
    return lines + _table(["backend", "verdict", "each requirement", "Pareto front"], rows)


def _epsilons(s: ScenarioFindings) -> list[str]:
    if s.epsilons.empty:
        return []
    rows = [
        [
            e["label"] + (" **contradicted**" if e["contradicted"] else ""),
            show_epsilon(e["claimed"]),
            e["accountant"],
            show_epsilon(e["spent"]) if not is_missing(e["spent"]) else "not reported",
            show_epsilon(e["audited"]),
            e["audit"],
        ]
        for _, e in s.epsilons.iterrows()
    ]
    return [
        "#### ε: claimed, accounted, audited",
        "",
        *_table(
            ["backend", "claimed ε", "accountant", "accounted ε", "audited ε ≥", "audit"], rows
        ),
    ]


def _identifiability(s: ScenarioFindings) -> list[str]:
    if s.identifiability.empty:
        return []
    rows = [
        [
            a["label"],
            a["indicator"],
            a["attacker"],
            _with_ci(show_number(a["rate"]), a["ci_low"], a["ci_high"]),
            show_number(a["control"]),
            _with_ci(show_number(a["risk"]), a["risk_low"], a["risk_high"]),
        ]
        for _, a in s.identifiability.iterrows()
    ]
    return [
        "#### Identifiability of the release",
        "",
        f"The three indicators of the {ANONYMISATION_GUIDANCE}, as measured; A1 is the "
        "motivated intruder.",
        "",
        *_table(
            ["backend", "indicator", "attacker", "success rate", "control", "residual risk"], rows
        ),
    ]


def _attacks(s: ScenarioFindings) -> list[str]:
    if s.attacks.empty:
        return []
    rows = []
    for _, a in s.attacks.iterrows():
        attack = a["attack"] + (f" ({a['method']})" if a["method"] else "")
        attack += " (diagnostic)" if a["diagnostic"] else ""
        if not a["applicable"]:
            cells = ["n/a", "-", "-", "-", "-", "-"]
        else:
            rate_text = (
                f"{a['rate']:.3f} ({a['ci_low']:.3f} to {a['ci_high']:.3f})"
                if pd.notna(a.get("rate"))
                else "-"
            )
            cells = [
                rate_text,
                show_number(a.get("trials"), 6),
                show_number(a["control"], 4),
                _with_ci(show_number(a["risk"], 4), a.get("risk_low"), a.get("risk_high")),
                show_number(a["epsilon_lower"], 4),
                a.get("claim_check") or "-",
            ]
        label = a["backend"] + (f" [{a['params']}]" if a["params"] else "")
        rows.append(
            [s.id, label, attack, a["attacker"], a["observer"], *cells, str(a["note"])[:90]]
        )
    header = [
        "scenario",
        "backend",
        "attack",
        "attacker",
        "observer",
        "rate (95% CI)",
        "trials",
        "control",
        "residual risk [95% CI]",
        "ε lower",
        "claim check",
        "note",
    ]
    return [
        f"<details><summary>Every attack on {s.id} ({len(rows)})</summary>",
        "",
        *_table(header, rows),
        "</details>",
        "",
    ]


def _scenario(s: ScenarioFindings) -> list[str]:
    card = s.source.card
    lines = [f"## {s.id}", ""]
    if card is not None:
        lines += [f"**{card.title}.** {card.summary}", ""]
        rows = [
            [p.name, p.role.replace("_", " "), ROLE_MUST_NOT_LEARN.get(p.role, "-")]
            for p in card.parties
        ]
        lines += _table(["party", "role", "must not learn"], rows)
        lines += [
            "Attacker models: "
            + "; ".join(
                f"{a} {ATTACKER_MODELS[a][0].lower()}"
                for a in card.attackers
                if a in ATTACKER_MODELS
            )
            + ".",
            "",
        ]
    if s.source.status != "same":
        lines += [f"*Card: {s.source.note}.*", ""]
    lines += ["### Requirements and verdicts", "", *_verdicts(s)]
    lines += ["### Scorecard", "", *_scorecard(s)]
    if len(s.curves):
        rows = [
            [
                c["backend"],
                c["parameter"],
                f"{c['x']:g}",
                f"{c['epsilon']:g}",
                c["primary"],
                _with_ci(show_number(c["mean"], 4), c["ci_low"], c["ci_high"]),
                str(c["runs"]),
            ]
            for _, c in s.curves.iterrows()
        ]
        lines += [
            "#### Privacy-utility curves",
            "",
            *_table(
                ["backend", "swept", "value", "claimed ε", "metric", "mean (95% CI)", "runs"], rows
            ),
        ]
    return lines + _epsilons(s) + _identifiability(s)


def markdown_report(
    source: RunEvidence | RunFindings | pd.DataFrame,
    *,
    title: str = "PETs Sandbox benchmark report",
) -> str:
    """Return the report as Markdown.

    Parameters
    ----------
    source : RunEvidence, RunFindings or DataFrame
        The run; a DataFrame of records is read with cards from the scenario folder.
    title : str
        The heading.
    """
    if isinstance(source, pd.DataFrame):
        source = RunEvidence.from_frame(source)
    f = source if isinstance(source, RunFindings) else gather(source)
    lines = [
        f"# {title}",
        "",
        "Every figure was computed by the harness from the run's records: accuracy against "
        "the plaintext answer, cost measured from the party processes and the channel, "
        "leakage from attacks on what each party observed. The HTML report (`report.html`) "
        "has the same tables with charts.",
        "",
        "## At a glance",
        "",
    ]
    rows = []
    for s in f.scenarios:
        meets = "no requirements stated"
        if not s.verdicts.empty:
            meets = ", ".join(s.verdicts[s.verdicts["verdict"] == "meets all"]["label"]) or "none"
        front = ", ".join(
            row_label(r, with_size=s.many_sizes)
            for i, r in s.table.iterrows()
            if bool(s.front.get(i, False))
        )
        rows.append([s.id, str(len(s.table)), meets, front or "-"])
    lines += _table(["scenario", "backends", "meet every requirement", "Pareto front"], rows)
    lines += ["## How to read the ratings", ""]
    lines += _table(
        ["figure", "bands (rating)"],
        [
            [sc.column, "; ".join(f"{w}: {r}" for w, r in sc.describe())]
            for sc in RATING_SCALES.values()
        ],
    )
    lines += ["<details><summary>Flags</summary>", ""]
    lines += _table(["flag", "meaning"], [[f"`{k}`", v] for k, v in FLAGS.items()])
    lines += ["</details>", ""]
    for s in f.scenarios:
        lines += _scenario(s)
    if any(len(s.attacks) for s in f.scenarios):
        lines += [
            "## Attacks",
            "",
            "Each attack as the harness ran it: the attacker model (A0 recipient, A1 "
            "motivated intruder, A2 honest-but-curious party, A3 worst-case auditor), the "
            "party whose view was attacked, the success rate pooled over runs with its 95% "
            "Wilson interval, the control rate, and the residual risk "
            "(attack − control) / (1 − control). `n/a`: the attacker observes nothing there.",
            "",
        ]
        for s in f.scenarios:
            lines += _attacks(s)
    lines += ["## The PETs and the ICO guidance", "", f"After the ICO's *{PETS_GUIDANCE}*.", ""]
    for pet_class in f.pet_classes:
        g = PET_GUIDANCE.get(pet_class)
        if g is None:
            continue
        lines += [
            f"### {g.title} ({g.protects})",
            "",
            f"- **What is it and what does it do?** {g.what}",
            f"- **How does it help with compliance?** {g.compliance}",
            f"- **What do you need to know to implement it?** {g.implement}",
            f"- **Risks and known weaknesses:** {g.risks}",
            *([f"- **Standards:** {g.standards}"] if g.standards else []),
            "",
        ]
    lines += ["## Flags and caveats", ""]
    lines += [f"- **{c.kind}:** {c.text}" for c in f.caveats] or ["None."]
    if len(f.skipped_attacks):
        lines += ["", "Attacks that did not run:", ""]
        lines += _table(
            ["attack", "cells", "why (one example)"],
            [[r["attack"], str(r["cells"]), r["example"]] for _, r in f.skipped_attacks.iterrows()],
        )
    lines += ["", "## Reproducibility", ""]
    lines += [f"- **{k}:** {v}" for k, v in f.reproducibility]
    skipped = (
        int((f.evidence.frame["status"] == "unsupported").sum()) if len(f.evidence.frame) else 0
    )
    if skipped:
        lines += [
            "",
            f"{skipped} cells were skipped because the backend does not serve the "
            "scenario's task kind.",
        ]
    return "\n".join(lines) + "\n"
