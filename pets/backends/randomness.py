"""Random draws a cell's seed cannot fix (``Capabilities.unseeded_randomness``).

Every other random choice a built-in backend makes is drawn from the cell's seed
(``task.public["seed"]``); these come from a library's own secure generator.
"""

from __future__ import annotations

__all__ = ["DIFFPRIVLIB_NOISE", "OPENDP_NOISE"]

#: OpenDP samples every mechanism's noise from its own secure generator.
OPENDP_NOISE = "noise: OpenDP's own secure generator"

#: diffprivlib's mechanisms draw from a secure generator when given no random state.
DIFFPRIVLIB_NOISE = "noise: diffprivlib's secure generator"
