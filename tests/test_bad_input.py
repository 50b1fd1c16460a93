"""The bad-input catalogue: each bad input to ``pets run`` or :func:`pets.run` gives one
clear line naming the option, field or file and what is allowed, a non-zero exit code,
and no traceback, before any cell runs. See docs/reliability.md."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import pets
import pets.runner
from pets.cli import main
from pets.options import OptionError, PlanWarning, check_param_keys
from pets.records import Record, ResultStore
from pets.registry import Registry
from pets.runner import plan_cells
from pets.scenarios import load_scenario
from pets.tasks import CardError


class _NoCells(Exception):
    """Raised by the stand-in for execute_plan: the plan got as far as running cells."""


@pytest.fixture
def no_cells(monkeypatch):
    """Make reaching cell execution an error, keeping the plan it was handed."""
    seen: dict[str, list] = {}

    def refuse(cells, store, options, **kwargs):
        seen["cells"] = list(cells)
        raise _NoCells

    monkeypatch.setattr(pets.runner, "execute_plan", refuse)
    return seen


def _cli(capsys, *argv: str) -> tuple[int, str]:
    """Run ``pets`` in this process; return its exit code and its standard error."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code if isinstance(exc.code, int) else 1
    err = capsys.readouterr().err
    return code, err


def _one_clear_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


OPTION_CASES = [
    (["--timeout", "nan"], ["--timeout", "finite", "> 0", "nan"]),
    (["--timeout", "inf"], ["--timeout", "finite", "inf"]),
    (["--timeout", "0"], ["--timeout", "> 0"]),
    (["--timeout", "-1"], ["--timeout", "> 0", "-1"]),
    (["--timeout", "soon"], ["--timeout", "invalid float value"]),
    (["--memory-mb", "nan"], ["--memory-mb", "finite", "nan"]),
    (["--memory-mb", "0"], ["--memory-mb", "> 0"]),
    (["--seeds", "0"], ["--seeds", ">= 1", "got 0"]),
    (["--repeats", "-2"], ["--repeats", ">= 1", "got -2"]),
    (["--jobs", "0"], ["--jobs", ">= 1", "got 0"]),
    (["--size", "0"], ["--size", ">= 100", "got 0"]),
    (["--leakage", "ful"], ["--leakage", "'full'"]),
    (["--param", "epsilon"], ["--param", "KEY=VALUE"]),
    (["--allow-changed"], ["--allow-changed", "only with --resume"]),
]


@pytest.mark.parametrize(("argv", "needles"), OPTION_CASES, ids=lambda a: " ".join(a))
def test_bad_options_are_one_line_before_any_cell(argv, needles, capsys, tmp_path, no_cells):
    out = tmp_path / "run"
    code, err = _cli(
        capsys, "run", "tre_queries", "--backend", "plaintext", "--out", str(out), *argv
    )
    assert code != 0
    _one_clear_line(err, *needles)
    assert "cells" not in no_cells
    assert not out.exists()


def _out_cases(tmp_path: Path) -> list[tuple[str, str]]:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    return [
        ("", "must name a folder"),
        (str(a_file), "is a file"),
        (str(a_file / "run"), "is under the file"),
        ("/proc/pets-out/run", "cannot be written"),
    ]


def test_bad_out_folders_are_one_line(capsys, tmp_path, no_cells):
    for out, says in _out_cases(tmp_path):
        code, err = _cli(capsys, "run", "tre_queries", "--backend", "plaintext", "--out", out)
        assert code == 2, out
        _one_clear_line(err, "--out", says)
    assert "cells" not in no_cells
    assert (tmp_path / "a_file").read_text() == "not a folder"


def test_pets_run_refuses_a_bad_leakage_mode_before_loading_anything(tmp_path, no_cells):
    with pytest.raises(OptionError, match=r"leakage.*'ful' is not a mode; did you mean 'full'"):
        pets.run(["no_such_card"], ["plaintext"], leakage="ful", out=tmp_path / "run")
    with pytest.raises(OptionError, match="timeout"):
        pets.run(["tre_queries"], ["plaintext"], timeout=float("nan"), out=tmp_path / "run")
    with pytest.raises(OptionError, match="seeds"):
        pets.run(["tre_queries"], ["plaintext"], seeds=True, out=tmp_path / "run")
    with pytest.raises(OptionError, match="timeout"):
        pets.runner.RunOptions(timeout_s=float("inf"))
    assert not (tmp_path / "run").exists()


def test_unknown_param_keys_say_did_you_mean_and_list_the_parameters():
    accepted = {"opendp": {"epsilon", "query_epsilon"}, "plaintext": set()}
    with pytest.raises(OptionError) as info:
        check_param_keys({"epsiln": 1.0}, accepted)
    message = str(info.value)
    assert "--param" in message and "did you mean 'epsilon'" in message
    assert "opendp: epsilon, query_epsilon" in message and "plaintext: (none)" in message
    check_param_keys({"epsilon": 1.0}, accepted)  # a key one backend takes is fine
    check_param_keys({"anything": 1}, {**accepted, "not_built_here": None})


def test_plan_cells_refuses_an_unknown_param_key(monkeypatch, scenario_dir):
    registry = Registry.from_entry_points()
    names = {"opendp": {"epsilon", "query_epsilon"}}
    monkeypatch.setattr(pets.runner, "_param_names", lambda registry, backends: names)
    card = load_scenario(scenario_dir / "tre_queries.toml")
    with pytest.raises(OptionError, match="did you mean 'epsilon'"):
        plan_cells([card], ["opendp"], registry, params={"epsiln": 1.0})


def test_repeated_backends_and_scenarios_are_merged_with_a_warning(
    capsys, tmp_path, no_cells, scenario_dir
):
    card = str(scenario_dir / "tre_queries.toml")
    argv = ["run", "tre_queries", card, "tre_queries", "--out", str(tmp_path / "run")]
    argv += ["--backend", "plaintext", "--backend", "plaintext", "--no-progress"]
    with pytest.raises(_NoCells):
        main(argv)
    cells = no_cells["cells"]
    assert len(cells) == len({c.key for c in cells}) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "pets: warning: scenario 'tre_queries' is given more than once; it runs once" in err
    assert "pets: warning: backend 'plaintext' is given more than once; it runs once" in err
    # the same card by id and by path: one cell, with a warning
    assert any("repeat others" in line for line in err)


def test_overlapping_sweeps_give_each_cell_once(scenario_dir, tmp_path):
    text = (scenario_dir / "tre_queries.toml").read_text()
    text += '\n[[sweeps]]\nbackend = "opendp"\nparam = "query_epsilon"\nvalues = [0.1, 0.5]\n'
    path = tmp_path / "tre_queries.toml"
    path.write_text(text)
    card = load_scenario(path)
    with pytest.warns(PlanWarning, match="repeat others"):
        cells = plan_cells([card], ["opendp"], Registry.from_entry_points())
    assert len(cells) == len({c.key for c in cells})


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8", "UTF-16 or binary"),
        ('id = "bad"\n'.encode("utf-16"), "UTF-16 or binary"),
        (b'id = "bad"\ntitle = "caf\xe9"\n', "not UTF-8"),
        (b"id = [unclosed\n", "not valid TOML"),
        (None, "no such card file"),
    ],
    ids=["binary", "utf16", "latin1", "syntax", "missing"],
)
def test_unreadable_card_files_are_one_line(content, says, capsys, tmp_path, no_cells):
    path = tmp_path / "bad.toml"
    if content is not None:
        path.write_bytes(content)
    code, err = _cli(
        capsys, "run", str(path), "--backend", "plaintext", "--out", str(tmp_path / "r")
    )
    assert code == 2
    _one_clear_line(err, str(path), says)


def test_a_misspelled_backend_section_says_did_you_mean(capsys, tmp_path, scenario_dir, no_cells):
    text = (scenario_dir / "tre_queries.toml").read_text()
    path = tmp_path / "tre_queries.toml"
    path.write_text(text.replace("[task]", "[backends.opndp]\nepsilon = 1.0\n\n[task]", 1))
    code, err = _cli(
        capsys, "run", str(path), "--backend", "plaintext", "--out", str(tmp_path / "r")
    )
    assert code == 2
    _one_clear_line(err, "'backends.opndp'", "did you mean 'opendp'?", "backends: ")
    with pytest.raises(CardError, match="did you mean 'opendp'"):
        pets.run([str(path)], ["plaintext"], out=tmp_path / "r2")


def test_a_section_for_a_backend_not_installed_here_is_a_warning(tmp_path, scenario_dir, no_cells):
    text = (scenario_dir / "tre_queries.toml").read_text()
    path = tmp_path / "tre_queries.toml"
    path.write_text(text.replace("[task]", "[backends.acme_quantum_vault]\nx = 1\n\n[task]", 1))
    with pytest.warns(PlanWarning, match="'acme_quantum_vault' is not installed here"):
        with pytest.raises(_NoCells):
            pets.run([str(path)], ["plaintext"], out=tmp_path / "r", progress=False)


def test_ctrl_c_ends_with_one_line_and_code_130_keeping_records(capsys, tmp_path, monkeypatch):
    out = tmp_path / "run"
    record = Record("tre_queries", "plaintext", {}, 300, 0, 0, status="ok", key="k1")

    def interrupted(**kwargs):
        ResultStore(Path(kwargs["out"])).append(record)
        raise KeyboardInterrupt

    monkeypatch.setattr(pets.runner, "run", interrupted)
    code, err = _cli(capsys, "run", "tre_queries", "--backend", "plaintext", "--out", str(out))
    assert code == 130
    _one_clear_line(err, "interrupted", "records already written are kept", str(out), "--resume")
    lines = (out / "records.jsonl").read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["k1"]


def test_no_warning_or_error_for_the_shipped_cards(scenario_dir, no_cells, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(_NoCells):
            pets.run(None, ["plaintext"], out=tmp_path / "r", progress=False)
