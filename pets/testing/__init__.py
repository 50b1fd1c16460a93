"""The conformance kit: the checks every backend must pass, built-in or a supplier's.

In the style of scikit-learn's ``check_estimator``: :func:`check_backend` returns one
:class:`CheckResult` per check (passed, failed with what to fix, skipped with why) for a
notebook; :func:`parametrize_with_checks` puts the same checks in a pytest suite; and
``pets check NAME`` prints them as a table, exits 1 when one failed, and records a
passing verdict so that benchmark records mark the backend ``verified``
(:mod:`pets.testing.verdicts`). The checks run the backend's party programs on small
toy problems through the real party runtime (:mod:`pets.testing.toys`,
:mod:`pets.testing.runs`).
"""

from __future__ import annotations

from pets.testing.checks import CHECKS, SkipCheck
from pets.testing.kit import CheckResult, check_backend
from pets.testing.parametrize import parametrize_with_checks
from pets.testing.runs import Toybox
from pets.testing.toys import TOY_CARDS, TOY_SIZES

__all__ = [
    "CHECKS",
    "TOY_CARDS",
    "TOY_SIZES",
    "CheckResult",
    "SkipCheck",
    "Toybox",
    "check_backend",
    "parametrize_with_checks",
]
