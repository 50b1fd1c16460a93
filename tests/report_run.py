"""A small real run folder for the report tests, built once per test session (once for
all pytest-xdist workers: :func:`session_run`).

A copy of the prevalence card with a two-point epsilon sweep for ``opendp`` and its own
``[requirements]``; ``plaintext`` at one size with two repeats, ``opendp`` at the same
size once at each epsilon (each cell's fast DP audit takes about 25 s), and
``plaintext`` again at a second size through ``pets run`` (for the cost-against-size
chart). Five cells with fast attacks.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from filelock import FileLock

import pets
from pets.cli import main
from pets.records import ResultStore

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
CARD_ID = "multi_site_prevalence"
SIZE, SECOND_SIZE = 1500, 3000


def test_card(folder: Path) -> Path:
    """Write the test card (and its story) into ``folder``; return the card's path."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (SCENARIOS / f"{CARD_ID}.toml").read_text()
    text = re.sub(r"\[\[sweeps\]\].*", "", text, flags=re.S)
    text = re.sub(r"\[requirements\].*?(?=\n# |\n\[)", "", text, flags=re.S)
    text += (
        '\n[requirements]\nrationale = "Test bounds."\nmax_epsilon = 1\n'
        "max_residual_risk = 0.9\nmax_wan_seconds = 600\n"
        '\n[[sweeps]]\nbackend = "opendp"\nparam = "epsilon"\nvalues = [0.5, 2.0]\n'
    )
    card = folder / f"{CARD_ID}.toml"
    card.write_text(text)
    (folder / f"{CARD_ID}.md").write_text((SCENARIOS / f"{CARD_ID}.md").read_text())
    return card


def build_run(base: Path) -> Path:
    """Return the run folder under ``base``, running it the first time."""
    out = base / "report-run"
    if (out / "records.jsonl").exists():
        return out
    card = test_card(base / "report-cards")
    common = {"out": out, "leakage": "fast", "progress": False, "jobs": 2}
    pets.run([str(card)], ["plaintext"], size=SIZE, repeats=2, **common)
    pets.run([str(card)], ["opendp"], size=SIZE, resume=True, **common)
    # the second size through the command line, which also writes both reports, the
    # command line and a copy of the card into the folder
    code = main(
        [
            "run",
            str(card),
            "--backend",
            "plaintext",
            "--size",
            str(SECOND_SIZE),
            "--out",
            str(out),
            "--resume",
            "--jobs",
            "2",
            "--no-progress",
        ]
    )
    assert code == 0, "pets run failed"
    return out


def session_run(factory: pytest.TempPathFactory) -> Path:
    """The session's run folder, in this worker's own temporary folder.

    Under pytest-xdist the workers share the parent of their temporary folders: the
    first to ask builds the run there under a file lock, and each worker copies it, so
    one test rewriting a report never races another reading it.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return build_run(factory.getbasetemp())
    mine = factory.getbasetemp() / "report-run"
    if not (mine / "records.jsonl").exists():
        shared = factory.getbasetemp().parent
        with FileLock(str(shared / "report-run.lock")):
            built = build_run(shared)
        shutil.copytree(built, mine, dirs_exist_ok=True)
    return mine


def records(out: Path) -> pd.DataFrame:
    """The run's records, flattened."""
    return ResultStore(out).to_frame()
