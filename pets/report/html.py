"""The self-contained HTML report: styles and script inline, charts as inline SVG, no
request to the network when it is opened; printable from the browser (collapsed
sections open for printing)."""

from __future__ import annotations

from pets.report.charts import backend_colours
from pets.report.evidence import RunEvidence
from pets.report.findings import RunFindings, gather
from pets.report.glossary import ATTACKER_MODELS, FLAGS, ISOLATION
from pets.report.guidance import (
    ANONYMISATION_GUIDANCE,
    IDENTIFIABILITY_INDICATORS,
    PET_GUIDANCE,
    PETS_GUIDANCE,
)
from pets.report.html_blocks import PAGE_CSS, PAGE_SCRIPT, esc, html_table
from pets.report.html_scenario import scenario_section
from pets.report.ratings import RATING_SCALES
from pets.report.scorecard import row_label

__all__ = ["html_report"]


def _glance(f: RunFindings) -> str:
    rows = []
    for s in f.scenarios:
        card = s.source.card
        ok = s.table[s.table["status"] == "ok"]
        if s.verdicts.empty:
            meets = "no requirements stated"
        else:
            passing = s.verdicts[s.verdicts["verdict"] == "meets all"]["label"].tolist()
            meets = ", ".join(passing) or "none"
        front = ", ".join(
            row_label(r, with_size=s.many_sizes)
            for i, r in s.table.iterrows()
            if bool(s.front.get(i, False))
        )
        warnings = sum(
            1 for flags in ok["flags"] if "exposes_inputs" in flags or "claim_contradicted" in flags
        )
        rows.append(
            f'<tr data-scenario="{esc(s.id)}"><td><a href="#scenario-{esc(s.id)}">'
            f"{esc(card.title if card else s.id)}</a></td>"
            f"<td>{esc(card.kind if card else '-')}</td>"
            f"<td class=num>{len(s.table)}</td><td>{esc(meets)}</td><td>{esc(front or '-')}</td>"
            f"<td class=num>{warnings}</td></tr>"
        )
    header = [
        "scenario",
        "task",
        "backends run",
        "meet every requirement",
        "Pareto front (accuracy vs risk)",
        "rows exposing inputs or contradicting claims",
    ]
    return html_table(header, rows, "glance")


def _reading() -> str:
    scales = []
    for scale in RATING_SCALES.values():
        bands = "; ".join(f"{words}: {word}" for words, word in scale.describe())
        scales.append(
            f"<tr><td>{esc(scale.column)}</td><td>{esc(bands)}</td><td>{esc(scale.meaning)}</td></tr>"
        )
    attackers = "".join(
        f"<li><strong>{k} {esc(v[0])}</strong>: {esc(v[1])}</li>"
        for k, v in ATTACKER_MODELS.items()
    )
    flags = "".join(
        f"<tr><td><code>{esc(k)}</code></td><td>{esc(v)}</td></tr>" for k, v in FLAGS.items()
    )
    isolation = "".join(f"<li><code>{esc(k)}</code>: {esc(v)}</li>" for k, v in ISOLATION.items())
    return (
        '<section id="reading"><h2>How to read this report</h2>'
        "<p>Each figure is the harness's own measurement, never the backend's: accuracy "
        "against the plaintext answer, cost from the party processes and the channel the "
        "harness carries, leakage from attacks on what each party and each recipient "
        "observed. Numbers are means over repeats and seeds; intervals are 95%.</p>"
        "<h3>Ratings and their thresholds</h3>"
        + html_table(["figure", "bands (rating)", "what it is"], scales)
        + f"<h3>Attacker models</h3><ul>{attackers}</ul>"
        + "<details><summary>Flags</summary>"
        + html_table(["flag", "meaning"], flags)
        + "</details>"
        + f"<h3>Isolation</h3><ul>{isolation}</ul></section>"
    )


def _pets(f: RunFindings) -> str:
    parts = [
        '<section id="pets"><h2>The PETs in this run, read against the ICO guidance</h2>',
        f"<p>For each family of technique, the four questions the ICO's <em>{esc(PETS_GUIDANCE)}"
        "</em> asks of every PET, in our words, and whether it protects the inputs while "
        "they are used (input privacy), what the output reveals (output privacy), or both. "
        f"Releases are also read against the <em>{esc(ANONYMISATION_GUIDANCE)}</em>: "
        + ", ".join(v[0].lower() for v in IDENTIFIABILITY_INDICATORS.values())
        + ", assessed from the motivated intruder's point of view.</p>",
    ]
    for pet_class in f.pet_classes:
        g = PET_GUIDANCE.get(pet_class)
        if g is None:
            continue
        backends = sorted(
            {
                r["backend"]
                for s in f.scenarios
                for _, r in s.table.iterrows()
                if r["pet_class"] == pet_class
            }
        )
        where = (
            "one of the eight PETs the guidance covers"
            if g.in_ico_guidance
            else "not one of the eight PETs the guidance covers one by one"
        )
        parts.append(
            f'<details class="pet" id="pet-{esc(pet_class)}"><summary>{esc(g.title)}: '
            f"{esc(g.protects)}</summary><p><em>{esc(where)}; backends here: "
            f"{esc(', '.join(backends))}.</em></p>"
            f"<dl><dt>What is it and what does it do?</dt><dd>{esc(g.what)}</dd>"
            "<dt>How does it help with data protection compliance?</dt>"
            f"<dd>{esc(g.compliance)}</dd>"
            f"<dt>What do you need to know to implement it?</dt><dd>{esc(g.implement)}</dd>"
            f"<dt>What are its risks and known weaknesses?</dt><dd>{esc(g.risks)}</dd>"
            + (f"<dt>Standards</dt><dd>{esc(g.standards)}</dd>" if g.standards else "")
            + "</dl></details>"
        )
    parts.append(
        "<p>No PET here makes data anonymous on its own: most protect one stage (the "
        "inputs, or the output), and pseudonymised data, hashed identifiers included, is "
        "still personal data. Before adopting one, the guidance asks organisations to "
        "assess its impact, be clear about the purpose, document how it helps "
        "compliance, and deal with accuracy and accountability; the risks it names are "
        "immature products, lack of expertise, implementation mistakes and missing "
        "organisational measures.</p></section>"
    )
    return "".join(parts)


def _caveats(f: RunFindings) -> str:
    by_kind: dict[str, list[str]] = {}
    for c in f.caveats:
        by_kind.setdefault(c.kind, []).append(c.text)
    parts = ['<section id="caveats"><h2>Flags and caveats</h2>']
    if not by_kind:
        parts.append("<p>None.</p>")
    for kind, texts in by_kind.items():
        items = "".join(f"<li>{esc(t)}</li>" for t in texts)
        if len(texts) > 5:
            parts.append(
                f"<details><summary>{esc(kind)} ({len(texts)})</summary><ul>{items}</ul></details>"
            )
        else:
            parts.append(f"<h4>{esc(kind)}</h4><ul>{items}</ul>")
    if len(f.skipped_attacks):
        rows = [
            f"<tr><td>{esc(r['attack'])}</td><td class=num>{r['cells']}</td>"
            f"<td>{esc(r['example'])}</td></tr>"
            for _, r in f.skipped_attacks.iterrows()
        ]
        parts.append(
            f"<details><summary>Attacks that did not run ({int(f.skipped_attacks['cells'].sum())} "
            "cell-attacks)</summary>"
            + html_table(["attack", "cells", "why (one example)"], rows)
            + "</details>"
        )
    parts.append("</section>")
    return "".join(parts)


def _repro(f: RunFindings) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in f.reproducibility)
    return (
        '<section id="reproducibility"><h2>Reproducibility</h2><p>Every figure above is '
        "recomputed from the run folder's records; each record names its card hash, "
        "backend, parameters, size, seed and repeat, so any cell can be run again.</p>"
        f'<dl class="repro">{items}</dl></section>'
    )


def html_report(
    source: RunEvidence | RunFindings, *, title: str = "PETs Sandbox benchmark report"
) -> str:
    """Return the report as one self-contained HTML page.

    Parameters
    ----------
    source : RunEvidence or RunFindings
        The run's records and cards (see :func:`pets.report.load_run`).
    title : str
        The page title.
    """
    f = source if isinstance(source, RunFindings) else gather(source)
    colours = backend_colours(f.backends)
    frame = f.evidence.frame
    ok = int((frame["status"] == "ok").sum()) if len(frame) else 0
    contradicted = sum(1 for c in f.caveats if c.kind == "Contradicted claim")
    toc = "".join(
        f'<li><a href="#scenario-{esc(s.id)}">'
        f"{esc(s.source.card.title if s.source.card else s.id)}</a></li>"
        for s in f.scenarios
    )
    body = [
        f'<header><h1>{esc(title)}</h1><p class="lede">{len(f.scenarios)} health data-sharing '
        f"scenarios, {len(f.backends)} backends, {len(frame)} cells ({ok} ran and were scored). "
        f"{contradicted} contradicted claims. For each scenario: who holds what and who must "
        "not learn it, whether each technique meets what the scenario requires, and at what "
        "accuracy, cost and residual risk.</p>",
        '<nav><strong>Contents</strong><ol><li><a href="#glance">At a glance</a></li>'
        f'<li><a href="#reading">How to read this report</a></li>{toc}'
        '<li><a href="#pets">The PETs and the ICO guidance</a></li>'
        '<li><a href="#caveats">Flags and caveats</a></li>'
        '<li><a href="#reproducibility">Reproducibility</a></li></ol></nav></header>',
        '<section id="glance"><h2>At a glance</h2>' + _glance(f) + "</section>",
        _reading(),
        *(scenario_section(s, colours) for s in f.scenarios),
        _pets(f),
        _caveats(f),
        _repro(f),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{PAGE_CSS}</style></head><body>"
        + "".join(body)
        + f"<script>{PAGE_SCRIPT}</script></body></html>\n"
    )
