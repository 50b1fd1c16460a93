"""``pets bench``: the ratio table and its records, size sweeps and their slopes, and
one-line errors. Nothing here asserts a speed (figures go in tests/benchmarks)."""

from __future__ import annotations

import math
import os
import platform
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

import pets
from pets.bench import MEASUREMENTS, BenchSettings, ScalingError, fit_scaling, read_measurements
from pets.cli import main
from pets.options import OptionError
from pets.records import ResultStore
from pets.registry import Registry
from pets.runner import plan_cells
from pets.scenarios import load_scenario
from pets.tasks import CardError

CARD = "multi_site_prevalence"


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_quick_bench_prints_ratios_and_records_them(tmp_path, capsys, monkeypatch, scenario_dir):
    monkeypatch.setenv("PETS_SCENARIOS", str(scenario_dir))
    out = tmp_path / "bench"
    assert main(["bench", "--quick", "--only", "cohort_rate", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("measurement"))
    assert "numerator" in header and "denominator" in header and "ratio" in header
    (row,) = [line for line in text.splitlines() if line.startswith("cohort_rate ")]
    (line,) = read_measurements(out)
    assert line["name"] == "cohort_rate"
    top, bottom = line["numerator"], line["denominator"]
    assert line["ratio"] == pytest.approx(top["seconds"] / bottom["seconds"], rel=1e-12)
    assert f"{line['ratio']:.3g}x" in row
    for side in (top, bottom):
        assert len(side["samples"]) == line["repeats"] == 2  # --quick: two repeats
        assert side["seconds"] == pytest.approx(statistics.median(side["samples"]))
    assert line["size"] == 100_000
    assert line["figures"]["patients_per_s"] == pytest.approx(100_000 / top["seconds"])
    assert line["machine"]["cores"] == os.cpu_count()
    assert line["machine"]["python"] == platform.python_version()
    manifest = ResultStore(out).read_manifest()
    assert manifest["kind"] == "bench" and manifest["options"]["only"] == ["cohort_rate"]


def test_size_sets_the_harness_cells_and_nothing_else():
    settings = BenchSettings.for_mode(quick=True, cell_size=1_000_000)
    assert settings.cell_size == 1_000_000
    assert settings == replace(BenchSettings.for_mode(quick=True), cell_size=1_000_000)
    assert BenchSettings.for_mode(quick=False, cell_size=300).cell_size == 300
    assert BenchSettings.for_mode(quick=False).cell_size == 20_000
    for bad in (0, 50, 2.5, float("nan"), "1000"):  # refused, never swapped for the default
        with pytest.raises(OptionError, match="size"):
            BenchSettings.for_mode(quick=True, cell_size=bad)


def test_the_command_passes_size_to_the_run(tmp_path, monkeypatch):
    import pets.bench

    seen: list[BenchSettings] = []
    monkeypatch.setattr(
        pets.bench, "run_bench", lambda names, settings, out: seen.append(settings) or []
    )
    argv = ["bench", "--quick", "--only", "secure_vs_pandas", "--size", "1000000"]
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert [s.cell_size for s in seen] == [1_000_000]


def test_every_measurement_is_offered_by_the_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in MEASUREMENTS:
        assert name in text


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["bench", "--only", "cohort_rat"], "did you mean 'cohort_rate'"),
        (["bench", "--repeats", "0"], "--repeats (repeats): must be a whole number"),
        (["bench", "--repeats", "two"], "argument --repeats: invalid int value"),
        (["bench", "--backend", "mpyc"], "--backend: applies only with --scaling"),
        (["bench", "--scaling", "no/such/place"], "neither a run folder nor a scenario card"),
        (["bench", "--scaling", CARD], "field 'data.sizes' is missing"),
        (["bench", "--scaling", CARD, "--only", "cohort_rate"], "--only: does not apply"),
        (
            ["bench", "--size", "50"],
            "--size (size): must be a whole number of patients >= 100, got 50",
        ),
        (["bench", "--scaling", CARD, "--size", "1000"], "--size: does not apply"),
        (["run", CARD, "--sizes", "1000,500"], "500 is out of order"),
        (["run", CARD, "--sizes", "1000,1000"], "1000 is repeated"),
        (["run", CARD, "--sizes", "1000,x"], "argument --sizes: takes whole numbers"),
        (["run", CARD, "--sizes", "50,1000"], "at least 100 patients, got 50"),
        (["run", CARD, "--size", "300", "--sizes", "300,600"], "either --size or --sizes"),
    ],
)
def test_bad_options_are_one_line(argv, expected, tmp_path, capsys, monkeypatch, scenario_dir):
    monkeypatch.setenv("PETS_SCENARIOS", str(scenario_dir))
    monkeypatch.chdir(tmp_path)  # nothing may be written, but never into the checkout
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    assert expected in _one_line(capsys.readouterr().err)
    assert not list(tmp_path.iterdir())


def _card_with(tmp_path: Path, scenario_dir: Path, sizes: str) -> Path:
    text = (scenario_dir / f"{CARD}.toml").read_text()
    text = text.replace("quick_size = 20_000", f"quick_size = 20_000\nsizes = {sizes}")
    path = tmp_path / f"{CARD}.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("sizes", "problem"),
    [
        ("[1_000, 500]", "500 is out of order"),
        ("[1_000, 1_000]", "1000 is repeated"),
        ("[50, 1_000]", "at least 100 patients, got 50"),
        ('["1000"]', "whole numbers of patients, got '1000'"),
        ("[1_000, 2.5]", "whole numbers of patients, got 2.5"),
        ("[]", "needs at least one size"),
        ("1_000", "must be a list"),
    ],
)
def test_a_bad_card_sizes_names_file_and_field(tmp_path, scenario_dir, sizes, problem):
    path = _card_with(tmp_path, scenario_dir, sizes)
    with pytest.raises(CardError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: field 'data.sizes': ")
    assert problem in message and "\n" not in message


def test_card_sizes_plan_one_cell_per_size(tmp_path, scenario_dir):
    card = load_scenario(_card_with(tmp_path, scenario_dir, "[1_000, 10_000, 100_000]"))
    assert card.data.sizes == (1_000, 10_000, 100_000)
    registry = Registry.from_entry_points()

    def sizes(**options) -> list[int]:
        return [c.size for c in plan_cells([card], ["plaintext"], registry, **options)]

    assert sizes() == [1_000, 10_000, 100_000]
    assert sizes(sizes=[300, 600]) == [300, 600]
    assert sizes(size=2_000) == [2_000]
    assert sizes(quick=True) == [20_000]
    plain = load_scenario(CARD, scenario_dir)
    assert plain.data.sizes == ()
    assert [c.size for c in plan_cells([plain], ["plaintext"], registry)] == [200_000]


def test_pets_run_sizes_is_checked_before_anything_runs(tmp_path):
    with pytest.raises(OptionError, match="either --size or --sizes"):
        pets.run([CARD], ["plaintext"], size=300, sizes=[300, 600], out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_scaling_fits_the_slope_of_a_size_sweep(tmp_path, capsys, monkeypatch, scenario_dir):
    monkeypatch.setenv("PETS_SCENARIOS", str(scenario_dir))
    folder = tmp_path / "sweep"
    frame = pets.run(
        [CARD], ["plaintext"], sizes=[300, 600], leakage="off", out=folder, progress=False, jobs=2
    )
    assert sorted(frame["size"]) == [300, 600] and set(frame["status"]) == {"ok"}
    assert ResultStore(folder).read_manifest()["sizes"] == [300, 600]
    (fit,) = fit_scaling(ResultStore(folder).read())
    walls = {r.size: r.cost["wall_s"] for r in ResultStore(folder).read()}
    expected = math.log(walls[600] / walls[300]) / math.log(2)
    assert fit.sizes == (300, 600) and fit.wall_slope == pytest.approx(expected)
    assert fit.bytes_slope is not None  # plaintext ships its rows: bytes grow with size
    assert main(["bench", "--scaling", str(folder)]) == 0
    text = capsys.readouterr().out
    (row,) = [line for line in text.splitlines() if line.startswith(CARD)]
    assert "plaintext" in row and "300, 600" in row and f"{expected:.2f}" in row

    one = ResultStore(tmp_path / "one")
    one.append(next(r for r in ResultStore(folder).read() if r.size == 300))
    with pytest.raises(ScalingError, match="one size at most"):
        fit_scaling(one.read())
    assert main(["bench", "--scaling", str(one.root)]) == 2
    assert "a slope needs at least two" in _one_line(capsys.readouterr().err)
