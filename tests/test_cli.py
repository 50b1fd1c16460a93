"""The ``pets`` command line, run in-process and as the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pets.cli import main


def test_list_and_describe(capsys, monkeypatch, scenario_dir):
    monkeypatch.setenv("PETS_SCENARIOS", str(scenario_dir))
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "multi_site_prevalence" in out and "plaintext" in out and "local_only" in out
    assert main(["describe", "tre_queries"]) == 0
    assert "parties:   custodian (custodian), researcher (researcher)" in capsys.readouterr().out
    assert main(["describe", "local_only"]) == 0
    assert '"task_kinds": [\n    "train"\n  ]' in capsys.readouterr().out
    assert main(["describe", "tre_querys"]) == 2
    assert "did you mean 'tre_queries'" in capsys.readouterr().err


def test_run_prints_scorecard_and_writes_report(tmp_path, capsys, monkeypatch, scenario_dir):
    monkeypatch.setenv("PETS_SCENARIOS", str(scenario_dir))
    out = tmp_path / "run"
    code = main(
        [
            "run",
            "multi_site_prevalence",
            "federated_risk_model",
            "--backend",
            "plaintext",
            "--backend",
            "local_only",
            "--size",
            "3000",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    assert "== federated_risk_model ==" in text and "== multi_site_prevalence ==" in text
    assert "auc_shortfall = 0" in text
    assert "median_relative_error = 0" in text
    assert f"run folder: {out}" in text
    report = (out / "report.md").read_text()
    assert "## federated_risk_model" in report and "| local_only" in report
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert {json.loads(x)["status"] for x in lines} == {"ok", "unsupported"}


def test_run_bad_input_is_one_clear_message(capsys, monkeypatch, scenario_dir, tmp_path):
    monkeypatch.setenv("PETS_SCENARIOS", str(scenario_dir))
    assert (
        main(["run", "multi_site_prevalence", "--backend", "plaintxt", "--out", str(tmp_path)]) == 2
    )
    assert "did you mean 'plaintext'" in capsys.readouterr().err
    assert main(["run", "--param", "novalue", "--out", str(tmp_path)]) == 2
    assert "--param (params): takes KEY=VALUE, got 'novalue'" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "pets"
    assert exe.exists(), f"no console script next to {sys.executable}: pip install -e ."
    result = subprocess.run(
        [str(exe), "list", "backends"], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "plaintext" in result.stdout
