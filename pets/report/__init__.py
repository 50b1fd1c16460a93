"""Reports built from records only: the HTML page a regulator reads, its Markdown twin,
and the terminal scorecards.

``write_report(run_dir)`` rebuilds ``report.html`` and ``report.md`` from a run folder.
See ``docs/report.md`` for what each figure is and how it is made.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pets.records import write_atomic
from pets.report.evidence import CardSource, RunEvidence, keep_cards, load_run
from pets.report.findings import RunFindings, gather
from pets.report.html import html_report
from pets.report.markdown import markdown_report
from pets.report.scorecard import attack_table, scorecard, scorecard_text, utility_curves
from pets.report.verdicts import pareto_front, requirement_verdicts

__all__ = [
    "REPORT_FORMATS",
    "CardSource",
    "RunEvidence",
    "RunFindings",
    "attack_table",
    "gather",
    "html_report",
    "keep_cards",
    "load_run",
    "markdown_report",
    "pareto_front",
    "requirement_verdicts",
    "scorecard",
    "scorecard_text",
    "utility_curves",
    "write_report",
]

#: Report formats and their file names.
REPORT_FORMATS = {"html": "report.html", "md": "report.md"}


def write_report(
    run_dir: str | os.PathLike[str],
    formats: Iterable[str] = ("html", "md"),
    *,
    scenario_dir: Path | None = None,
) -> list[Path]:
    """Rebuild the reports of a run folder from its records; return the files written.

    Parameters
    ----------
    run_dir : path-like
        A run folder (``records.jsonl``, ``manifest.json``, optionally ``cards/``).
    formats : iterable of str
        Any of ``"html"`` and ``"md"``.
    scenario_dir : Path, optional
        Where to look for cards the run folder does not hold.
    """
    formats = list(formats)
    unknown = sorted(set(formats) - set(REPORT_FORMATS))
    if unknown:
        raise ValueError(f"unknown report format {unknown[0]!r}; known: html, md")
    findings = gather(load_run(run_dir, scenario_dir))
    written = []
    for name in formats:
        path = Path(run_dir) / REPORT_FORMATS[name]
        text = html_report(findings) if name == "html" else markdown_report(findings)
        write_atomic(path, text.encode())
        path.chmod(0o644)  # a report is for reading by others
        written.append(path)
    return written
