"""Masking identifiers in free text that reaches a record, a log or a report.

Error messages and the last lines of a crashed cell's standard error come from backend
code, which holds patient rows: an exception can quote a value. :func:`redact` masks
every written form of the cohort's identifiers in such text before it is stored:

- NHS numbers: ten digits, plain or grouped 3-3-4 with spaces, dashes or dots;
- dates (of birth): ISO ``1980-05-04`` (also inside a timestamp), ``04/05/1980``,
  ``04-05-1980`` and ``04.05.1980``;
- postcodes: full UK postcodes (``LS1 4AB``, ``SW1A 1AA``, any case) and postcode
  districts as the cohort writes them (``LS12``, ``B3``, ``EH10``: one or two capital
  letters, one or two digits, an optional letter).

Masking errs on the side of masking: a message keeps its shape (``<nhs_number>``,
``<date>``, ``<postcode>``) but loses anything that could be one of these.
"""

from __future__ import annotations

import re

__all__ = ["MASKS", "redact"]

_EDGE_BEFORE = r"(?<![A-Za-z0-9])"
_EDGE_AFTER = r"(?![A-Za-z0-9])"

#: (pattern, replacement) applied in order.
MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<!\d)\d{3}[ .\-]?\d{3}[ .\-]?\d{4}(?!\d)"), "<nhs_number>"),
    (re.compile(r"(?<!\d)\d{4}-\d{1,2}-\d{1,2}(?!\d)"), "<date>"),
    (re.compile(r"(?<!\d)\d{1,2}([/.\-])\d{1,2}\1\d{4}(?!\d)"), "<date>"),
    (
        re.compile(
            _EDGE_BEFORE + r"[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}" + _EDGE_AFTER, re.IGNORECASE
        ),
        "<postcode>",
    ),
    (re.compile(_EDGE_BEFORE + r"[A-Z]{1,2}\d{1,2}[A-Z]?" + _EDGE_AFTER), "<postcode>"),
)


def redact(message: str) -> str:
    """Mask NHS numbers, dates and postcodes in ``message`` (see the module)."""
    for pattern, replacement in MASKS:
        message = pattern.sub(replacement, message)
    return message
