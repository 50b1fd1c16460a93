"""The example supplier package, installed as a supplier would and run through the CLI.

``examples/supplier_backend`` is built and installed with pip (no dependencies, no build
isolation, no index: nothing is downloaded) into a folder of its own that only the
subprocesses of this module see on ``PYTHONPATH``. The entry point is found there like
any installed distribution's, and the environment of the other tests never holds it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from pets.api import API_VERSION

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "supplier_backend"
NAME = "additive-sharing"


def _can_build_wheels() -> bool:
    """Whether setuptools can build a wheel here (``bdist_wheel``: setuptools 70.1 or
    newer has it; before that the ``wheel`` package brought it)."""
    return any(ep.name == "bdist_wheel" for ep in entry_points(group="distutils.commands"))


@pytest.fixture(scope="module")
def supplier_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a Python that has the example installed (in a target folder)."""
    if not _can_build_wheels():
        message = "building the example needs setuptools>=70.1: pip install -e '.[test]'"
        if os.environ.get("CI"):  # the test extra brings it: on CI this is a failure
            pytest.fail(message)
        pytest.skip(message)
    # build from a copy: pip builds in the source tree (build/, *.egg-info)
    source = tmp_path_factory.mktemp("source") / "supplier_backend"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    site = tmp_path_factory.mktemp("site")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    env = dict(os.environ)
    inherited = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), str(ROOT), inherited) if p)
    env["PETS_SCENARIOS"] = str(ROOT / "scenarios")
    env["PETS_CACHE"] = str(tmp_path_factory.mktemp("cache"))  # the kit's verdicts
    return env


def _pets(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pets.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_pets_list_shows_the_installed_backend(supplier_env: dict[str, str], tmp_path) -> None:
    done = _pets(supplier_env, tmp_path, "list", "backends")
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.split()[:1] == [NAME])
    assert "pets_additive_sharing.backend:AdditiveSharing" in line


def test_pets_check_passes_it(supplier_env: dict[str, str], tmp_path) -> None:
    done = _pets(supplier_env, tmp_path, "check", NAME)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "check_transcript_consistent_with_claim  passed" in done.stdout
    assert "verdict: passed" in done.stdout


def test_pets_run_scores_it(supplier_env: dict[str, str], tmp_path) -> None:
    checked = _pets(supplier_env, tmp_path, "check", NAME)  # so the record says verified
    assert checked.returncode == 0, checked.stdout
    out = tmp_path / "run"
    done = _pets(
        supplier_env, tmp_path,
        "run", "multi_site_prevalence", "--backend", NAME, "--quick", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (record,) = (json.loads(x) for x in (out / "records.jsonl").read_text().splitlines())
    assert record["status"] == "ok", record["error"]
    assert record["backend"] == NAME
    assert record["isolation"] == "process"
    assert record["api_version"] == API_VERSION
    assert record["verified"] is True
    assert record["accuracy"]["max_relative_error"] < 1e-6
    assert record["cost"]["bytes_total"] > 0
    assert record["cost"]["bytes_by_party"]["share_aggregator"]["received"] > 0
    flags = record["leakage"]["flags"]
    assert "exposes_inputs" not in flags and "claim_contradicted" not in flags
