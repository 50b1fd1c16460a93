"""Discovery: broken plugins are listed with their error and stop nothing; a plugin
name that clashes with a built-in is refused (the built-in wins)."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from pets.cli import main
from pets.registry import Registry


class _Dist:
    def __init__(self, name: str) -> None:
        self.name = name


def _entry_point(name: str, value: str, dist: str) -> EntryPoint:
    ep = EntryPoint(name, value, "pets.backends")
    object.__setattr__(ep, "dist", _Dist(dist))  # EntryPoint is immutable
    return ep


@pytest.fixture
def plugins(monkeypatch):
    """Installed entry points: two built-ins and four supplier plugins, one of each kind
    of trouble."""
    points = [
        _entry_point("plaintext", "pets.backends.plaintext:Plaintext", "pets-sandbox"),
        _entry_point("sdc-round", "pets.backends.sdc:SdcRound", "pets-sandbox"),
        _entry_point("plaintext", "evil_supplier:Plaintext", "evil-supplier"),
        _entry_point("missing", "no_such_module_anywhere:Backend", "missing-supplier"),
        _entry_point("not-a-backend", "json:JSONDecoder", "odd-supplier"),
        _entry_point("raises", "misbehaving_import:Anything", "raising-supplier"),
        _entry_point("good", "misbehaving:LocalSums", "good-supplier"),
    ]
    monkeypatch.setattr("pets.registry.entry_points", lambda group: points)


def test_a_name_clashing_with_a_built_in_is_refused_and_the_built_in_wins(plugins):
    registry = Registry.from_entry_points()
    assert registry.target("plaintext") == "pets.backends.plaintext:Plaintext"
    (why,) = [v for k, v in registry.refused().items() if k.startswith("plaintext")]
    assert "evil-supplier" in why and "already taken by a built-in backend" in why
    assert "rename" in why


def test_broken_plugins_report_their_error_and_the_others_load(plugins, tmp_path, monkeypatch):
    (tmp_path / "misbehaving_import.py").write_text("raise RuntimeError('plugin set-up broke')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry.from_entry_points()
    assert "No module named 'no_such_module_anywhere'" in registry.load_error("missing")
    assert "not a subclass of pets.api.Backend" in registry.load_error("not-a-backend")
    assert "RuntimeError: plugin set-up broke" in registry.load_error("raises")
    assert registry.load_error("good") is None
    assert registry.load_error("plaintext") is None


def test_pets_list_shows_broken_plugins_and_keeps_going(plugins, tmp_path, monkeypatch, capsys):
    (tmp_path / "misbehaving_import.py").write_text("raise RuntimeError('plugin set-up broke')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["list", "backends"]) == 0
    out = capsys.readouterr().out
    listed, broken = out.split("Broken or refused backend plugins (not run):")
    assert "good" in listed and "sdc-round" in listed
    for name in ("missing", "not-a-backend", "raises", "plaintext (evil-supplier)"):
        assert name in broken
    assert "plugin set-up broke" in broken


def test_a_registry_built_with_a_broken_target_still_runs_the_others(tmp_path):
    """Installs nothing: a Registry holding a broken target and a good one."""
    import pets

    registry = Registry(
        {"broken": "no_such_module_anywhere:Backend", "good": "misbehaving:LocalSums"}
    )
    frame = pets.run(
        ["multi_site_prevalence"],
        backends=["broken", "good"],
        size=1500,
        leakage="off",
        out=tmp_path / "run",
        registry=registry,
        progress=False,
    )
    status = dict(zip(frame["backend"], frame["status"], strict=True))
    assert status == {"broken": "failed", "good": "ok"}
    error = frame.set_index("backend").loc["broken", "error"]
    assert "no_such_module_anywhere" in error
