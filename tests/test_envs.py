"""Backends in their own Python environment: ``pets env sync`` builds one (a real
virtual environment, real installs from the package index), the party processes run
under its interpreter, and a missing or stale one gives an ``unsupported`` record that
names the command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pets
from pets.envs import (
    ENV_CACHE_VARIABLE,
    MARKER,
    EnvSpec,
    env_report,
    env_state,
    sync_backends,
)

from conftest import make_registry
from own_env import REQUIREMENT

NAME = "own_env_probe"
TARGET = "own_env:OwnEnvProbe"


def _registry(target: str = TARGET) -> pets.Registry:
    registry = make_registry()
    registry.add(NAME, target)
    return registry


@pytest.fixture(scope="session")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One environment for the probe backend, built once per test session."""
    root = tmp_path_factory.mktemp("envs")
    lines: list[str] = []
    assert sync_backends(_registry(), [NAME], root=root, progress=lines.append) == 0
    assert any("building" in line for line in lines), lines
    return root


def _state(root: Path, requirement: str = REQUIREMENT):
    return env_state(EnvSpec.of(NAME, (requirement,)), root)


def test_the_requirement_is_absent_here_and_present_there(env_cache):
    state = _state(env_cache)
    assert state.status == "current"
    probe = "import tomli_w, sys; print(sys.prefix)"
    there = subprocess.run(
        [str(state.python), "-I", "-c", probe], capture_output=True, text=True, check=True
    )
    assert Path(there.stdout.strip()) == state.path
    here = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert here.returncode != 0 and "tomli_w" in here.stderr
    marker = json.loads((state.path / MARKER).read_text())
    assert marker["packages"]["tomli_w" if "tomli_w" in marker["packages"] else "tomli-w"]


def test_a_second_sync_is_a_no_op(env_cache):
    marker = _state(env_cache).path / MARKER
    before = marker.stat().st_mtime_ns
    lines: list[str] = []
    assert sync_backends(_registry(), [NAME], root=env_cache, progress=lines.append) == 0
    assert marker.stat().st_mtime_ns == before
    assert any("up to date" in line for line in lines) and not any(
        "building" in line for line in lines
    )


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def _run(tmp_path: Path, registry: pets.Registry, scenario_dir: Path) -> dict:
    pets.run(
        ["multi_site_prevalence"],
        [NAME],
        size=400,
        out=tmp_path / "run",
        registry=registry,
        scenario_dir=scenario_dir,
        progress=False,
        leakage="off",
    )
    (record,) = _records(tmp_path / "run")
    return record


def test_a_run_is_ok_and_its_record_names_the_environment(
    env_cache, tmp_path, scenario_dir, monkeypatch
):
    monkeypatch.setenv(ENV_CACHE_VARIABLE, str(env_cache))
    record = _run(tmp_path, _registry(), scenario_dir)
    assert record["status"] == "ok", record["error"]
    assert record["isolation"] == "process"
    accuracy = record["accuracy"]
    assert not accuracy["higher_is_better"]
    assert accuracy[accuracy["primary"]] == pytest.approx(0.0, abs=1e-12)
    party_env = record["environment"]["party_environment"]
    assert party_env["name"] == _state(env_cache).path.name
    assert party_env["requirements"] == [REQUIREMENT]
    marker = json.loads((_state(env_cache).path / MARKER).read_text())
    assert party_env["packages"]["numpy"] == marker["packages"]["numpy"]
    assert record["environment"]["packages"]["numpy"] == np.__version__


def test_a_missing_environment_is_unsupported_and_names_the_command(
    tmp_path, scenario_dir, monkeypatch
):
    monkeypatch.setenv(ENV_CACHE_VARIABLE, str(tmp_path / "empty"))
    record = _run(tmp_path, _registry(), scenario_dir)
    assert record["status"] == "unsupported"
    assert "is not built" in record["error"]
    assert f"`pets env sync {NAME}`" in record["error"]


def test_changed_requirements_make_the_environment_stale(
    env_cache, tmp_path, scenario_dir, monkeypatch
):
    assert _state(env_cache, "tomli-w==1.1.0").status == "stale"
    monkeypatch.setenv(ENV_CACHE_VARIABLE, str(env_cache))
    record = _run(tmp_path, _registry("own_env:OwnEnvProbeUpgraded"), scenario_dir)
    assert record["status"] == "unsupported"
    assert "other requirements" in record["error"]
    assert f"`pets env sync {NAME}`" in record["error"]
    report = "\n".join(env_report(_registry("own_env:OwnEnvProbeUpgraded"), root=env_cache))
    assert "stale" in report and f"pets env sync {NAME}" in report


@pytest.mark.parametrize("tool", ["pip", "uv"])
def test_a_failed_install_leaves_no_environment(tmp_path, tool):
    from pets.envs import EnvError, installer, sync_env

    if tool == "uv" and installer()[0] != "uv":
        pytest.skip("uv is not installed (the test extra installs it)")
    spec = EnvSpec.of("broken", ("pets-sandbox-no-such-package==0.0.1",))
    lines: list[str] = []
    with pytest.raises(EnvError, match=f"could not build the environment of 'broken' \\({tool}\\)"):
        sync_env(spec, root=tmp_path, progress=lines.append, tool=tool)
    assert any("pets-sandbox-no-such-package" in line for line in lines)
    assert env_state(spec, tmp_path).status == "missing"
    assert not (tmp_path / spec.folder_name).exists()


def test_requirements_are_typed_data():
    from pets.api import Capabilities, PetClass

    caps = Capabilities(
        task_kinds=frozenset({"query"}), pet_class=PetClass.REMOTE, requirements=("a==1",)
    )
    assert Capabilities.from_dict(caps.to_dict()) == caps
    with pytest.raises(TypeError):
        Capabilities(task_kinds=frozenset(), pet_class=PetClass.REMOTE, requirements="a==1")
    for bad in ("--index-url=http://example.invalid", " ", "a\n-r x"):
        with pytest.raises(ValueError, match="requirement"):
            Capabilities(task_kinds=frozenset(), pet_class=PetClass.REMOTE, requirements=(bad,))


@pytest.mark.slow
def test_the_party_runtime_runs_beside_numpy_1_24(tmp_path, scenario_dir, monkeypatch):
    """The party runtime installs and imports beside numpy 1.24 (PySyft 0.9.5's pin),
    while the harness keeps its own numpy; the record shows both."""
    registry = _registry("own_env:OwnEnvOldNumpy")
    assert sync_backends(registry, [NAME], root=tmp_path / "envs", progress=print) == 0
    monkeypatch.setenv(ENV_CACHE_VARIABLE, str(tmp_path / "envs"))
    record = _run(tmp_path, registry, scenario_dir)
    assert record["status"] == "ok", record["error"]
    assert record["environment"]["party_environment"]["packages"]["numpy"] == "1.24.4"
    assert record["environment"]["packages"]["numpy"] == np.__version__ != "1.24.4"


def test_the_command_line_names_what_it_did(capsys, tmp_path, monkeypatch):
    from pets.cli import main

    monkeypatch.setenv(ENV_CACHE_VARIABLE, str(tmp_path))
    assert main(["env", "sync", "no-such-backend"]) == 2
    assert "unknown backend 'no-such-backend'" in capsys.readouterr().err
    assert main(["env", "sync", "plaintext"]) == 0
    assert "no requirements" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())


def test_the_conformance_kit_runs_it_under_its_environment(env_cache, monkeypatch):
    from pets.testing.runs import Toybox

    from own_env import OwnEnvProbe

    monkeypatch.setenv(ENV_CACHE_VARIABLE, str(env_cache))
    run = Toybox(env_name=NAME).run(OwnEnvProbe(), "aggregate")
    assert run.status == "ok", run.message
    reveals = [v for _, label, v in run.session.reveals if label == "interpreter"]
    assert len(reveals) == len(run.problem.task.parties)
    assert {Path(r["prefix"]) for r in reveals} == {_state(env_cache).path} != {Path(sys.prefix)}
    assert all(r["toml"] == "ran = true" for r in reveals)
    unnamed = Toybox().run(OwnEnvProbe(), "aggregate")
    assert unnamed.status == "unsupported" and "pets env sync NAME" in unnamed.message


def test_a_party_in_its_own_environment_cannot_read_the_worker(
    env_cache, tmp_path, scenario_dir, monkeypatch
):
    """The party's parent is the worker itself here (no fork server between them);
    reading its memory through /proc is still refused."""
    from intruders import HarnessMemoryFromOwnEnv

    assert HarnessMemoryFromOwnEnv.requirements == (REQUIREMENT,)
    monkeypatch.setenv(ENV_CACHE_VARIABLE, str(env_cache))
    record = _run(tmp_path, _registry("intruders:HarnessMemoryFromOwnEnv"), scenario_dir)
    assert record["environment"]["party_environment"]["name"] == _state(env_cache).path.name
    assert record["status"] == "failed"
    assert "NothingReached" in record["error"] and "refused inspection" in record["error"]
