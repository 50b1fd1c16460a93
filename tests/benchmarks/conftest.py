"""Everything under tests/benchmarks is marked ``slow``, so the default suite (whose
``addopts`` deselects ``slow`` and disables pytest-benchmark) never runs it.

Run them with: ``python -m pytest tests/benchmarks -m slow --benchmark-enable -s``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.slow)
