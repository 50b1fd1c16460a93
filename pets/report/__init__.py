"""Reports built from records only: terminal scorecards and the Markdown report."""

from pets.report.scorecard import markdown_report, scorecard, scorecard_text, utility_curves

__all__ = ["markdown_report", "scorecard", "scorecard_text", "utility_curves"]
