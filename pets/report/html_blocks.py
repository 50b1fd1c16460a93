"""Building blocks of the HTML report: the page's style and script, escaping, table and
number cells (each number cell carries its exact value in ``data-value`` so a reader's
tools, and the browser test, can check it against the records), and card stories."""

from __future__ import annotations

import html
import re
from typing import Any

from pets.report.ratings import Rating
from pets.report.units import is_missing

__all__ = [
    "PAGE_CSS",
    "PAGE_SCRIPT",
    "esc",
    "html_table",
    "number_cell",
    "rating_badge",
    "raw_number",
    "story_html",
]

PAGE_CSS = """
:root { --ink:#1b1f24; --muted:#57606a; --line:#d0d7de; --bg:#f6f8fa; --good:#1a7f37;
  --fair:#9a6700; --poor:#cf222e; --accent:#0550ae; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  margin: 0 auto; max-width: 1280px; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.8rem; margin: 0 0 .3rem; } h2 { margin-top: 2.6rem; border-bottom: 2px solid
  var(--line); padding-bottom: .2rem; } h3 { margin: 1.6rem 0 .4rem; } h4 { margin: 1rem 0 .3rem; }
p, li { max-width: 60rem; } .lede { font-size: 1.05rem; color: var(--muted); }
nav ol { columns: 2; font-size: .92rem; } a { color: var(--accent); }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .86rem; width: 100%; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .45rem; text-align: left;
  vertical-align: top; } th { background: var(--bg); font-weight: 600; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.ci { color: var(--muted); font-size: .78rem; display: block; white-space: normal; }
td.num .rating { display: block; width: fit-content; margin-left: auto; }
.rating { display: inline-block; font-size: .72rem; padding: 0 .35rem; border-radius: .6rem;
  border: 1px solid currentColor; margin-top: .1rem; white-space: nowrap; }
.good { color: var(--good); } .fair { color: var(--fair); } .poor { color: var(--poor); }
.none { color: var(--muted); }
.badge { font-size: .72rem; padding: 0 .3rem; border-radius: .25rem; background: var(--bg);
  border: 1px solid var(--line); margin-left: .2rem; white-space: nowrap; }
.badge.warn { background: #fff8c5; border-color: #d4a72c; } .badge.bad { background: #ffebe9;
  border-color: #ff8182; }
.verdict-meets { color: var(--good); font-weight: 600; } .verdict-misses { color: var(--poor); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 1rem; }
figure.chart.wide { grid-column: 1 / -1; }
figure.chart { margin: 0; border: 1px solid var(--line); border-radius: .4rem; padding: .6rem; }
figure.chart figcaption { font-size: .82rem; color: var(--muted); }
.chart-svg { width: 100%; height: auto; display: block; }
details { margin: .6rem 0; border: 1px solid var(--line); border-radius: .4rem;
  padding: .3rem .7rem; }
summary { cursor: pointer; font-weight: 600; }
.scroll { overflow-x: auto; }
.card { background: var(--bg); border-radius: .4rem; padding: .6rem 1rem; }
.story p { margin: .4rem 0; }
dl.repro { display: grid; grid-template-columns: 12rem 1fr; gap: .2rem 1rem; font-size: .86rem; }
dl.repro dt { font-weight: 600; } dl.repro dd { margin: 0; word-break: break-word; }
@media print { body { max-width: none; padding: 0; font-size: 11px; } nav { display: none; }
  section.scenario { break-before: page; } figure.chart, table { break-inside: avoid; } }
"""

PAGE_SCRIPT = (
    "window.addEventListener('beforeprint',function(){"
    "document.querySelectorAll('details').forEach(function(d){d.open=true;});});"
)


def esc(value: Any) -> str:
    """Return ``value`` as text safe inside HTML and attribute values."""
    return html.escape(str(value), quote=True)


def raw_number(value: Any) -> str:
    """Return the exact value for ``data-value`` (empty when missing)."""
    return "" if is_missing(value) else repr(float(value))


def rating_badge(r: Rating) -> str:
    """Return a rating as a small coloured word."""
    return f'<span class="rating {r.tone}">{esc(r.word)}</span>'


def number_cell(
    field: str, value: Any, shown: str, rating: Rating | None = None, ci: str = ""
) -> str:
    """Return a right-aligned cell: the shown figure, an interval or note below it, a
    rating, and the exact value in ``data-value`` with its name in ``data-field``."""
    extra = f'<span class="ci">{esc(ci)}</span>' if ci else ""
    badge = rating_badge(rating) if rating is not None else ""
    return (
        f'<td class="num" data-field="{field}" data-value="{raw_number(value)}">'
        f"{esc(shown)}{extra}{badge}</td>"
    )


def html_table(header: list[str], rows: list[str], cls: str = "") -> str:
    """Return a table (in a horizontally scrolling box) from a header and row HTML."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    cls_attr = f' class="{cls}"' if cls else ""
    return (
        f'<div class="scroll"><table{cls_attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def story_html(text: str) -> str:
    """Render a card's story (a small Markdown subset: headings, paragraphs, bold,
    italics, code, bullet lists); the story's own title is dropped."""
    blocks = re.split(r"\n\s*\n", text.strip())
    out = []
    for block in blocks:
        if block.startswith("# "):
            continue
        inline = esc(block)
        inline = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", inline, flags=re.S)
        inline = re.sub(r"(?<![\w*])\*(?!\s)(.+?)\*(?!\w)", r"<em>\1</em>", inline, flags=re.S)
        inline = re.sub(r"`([^`]+)`", r"<code>\1</code>", inline)
        if block.startswith("#"):
            out.append(f"<h4>{inline.lstrip('#').strip()}</h4>")
        elif all(line.lstrip().startswith(("- ", "* ")) for line in block.splitlines()):
            items = [re.sub(r"^\s*[-*]\s+", "", line) for line in inline.splitlines()]
            out.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
        else:
            out.append(f"<p>{inline}</p>")
    return '<div class="story">' + "".join(out) + "</div>"
