"""Longest expected cells first: times kept between runs, guesses for new cells, and
the order a real run hands its executor."""

from __future__ import annotations

import json

import pets
import pets.runner
from pets.cache import CACHE_ENV
from pets.records import Record
from pets.runner import plan_cells
from pets.scenarios import load_scenario
from pets.schedule import (
    AUDITED_GUESS_S,
    OTHER_GUESS_S,
    CellTimes,
    cell_seconds,
    longest_first,
    signature,
)

from conftest import make_registry


def _cells(scenario_dir, backends, **options):
    scenario = load_scenario("multi_site_prevalence", scenario_dir)
    return plan_cells([scenario], backends, make_registry(), size=300, **options)


def _ok(cell, **cost):
    return cell.record("ok", cost=cost)


def test_known_times_go_longest_first_and_new_audited_cells_before_other_new_ones(
    scenario_dir,
):
    plain, sdc, mpyc, opendp = _cells(
        scenario_dir, ["plaintext", "sdc-suppress", "mpyc", "opendp"], sweep=False
    )
    times = CellTimes(None)
    times.note(sdc, "fast", _ok(sdc, wall_s=40.0))
    times.note(plain, "fast", _ok(plain, wall_s=1.0))
    audited = {opendp.key}

    order = longest_first([plain, sdc, mpyc, opendp], times, "fast", lambda c: c.key in audited)
    assert [c.backend for c in order] == ["sdc-suppress", "opendp", "mpyc", "plaintext"]
    assert times.expected(opendp, "fast", True) == AUDITED_GUESS_S
    # with attacks off no audit runs: a new DP cell is expected to be short
    assert times.expected(opendp, "off", True) == OTHER_GUESS_S
    # ties keep the plan's order
    fresh = CellTimes(None)
    assert longest_first([plain, mpyc, sdc], fresh, "fast", lambda c: False) == [plain, mpyc, sdc]


def test_the_time_is_the_cells_own_work_and_a_failure_is_not_kept(scenario_dir):
    (cell,) = _cells(scenario_dir, ["plaintext"])
    record = _ok(cell, wall_s=1.5, party_startup_s=0.25, party_load_s=0.25)
    record.leakage["cost_s"] = 3.0
    assert cell_seconds(record) == 5.0
    failed = Record(**{**record.to_dict(), "status": "failed", "error": "no"})
    times = CellTimes(None)
    times.note(cell, "fast", failed)
    assert times.seconds == {}
    # seed and repeat do not change the work
    seeds = _cells(scenario_dir, ["plaintext"], seeds=2)
    assert signature(seeds[0], "fast") == signature(seeds[1], "fast")
    assert signature(seeds[0], "fast") != signature(seeds[0], "off")


def test_times_are_kept_in_the_cache_merged_with_another_runs_and_name_nothing(
    scenario_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    plain, mpyc = _cells(scenario_dir, ["plaintext", "mpyc"])
    first = CellTimes.load()
    second = CellTimes.load()  # another run, started at the same time
    first.note(plain, "fast", _ok(plain, wall_s=2.0))
    second.note(mpyc, "fast", _ok(mpyc, wall_s=7.0))
    first.save()
    second.save()
    again = CellTimes.load()
    assert again.expected(plain, "fast", False) == 2.0
    assert again.expected(mpyc, "fast", False) == 7.0
    text = again.path.read_text()
    for name in ("plaintext", "mpyc", "multi_site_prevalence", "england"):
        assert name not in text
    assert (again.path.parent.stat().st_mode & 0o777) == 0o700
    again.path.write_text("{not json")  # a damaged file counts as empty
    assert CellTimes.load().seconds == {}


def test_a_second_run_starts_the_cell_that_took_longest_first(scenario_dir, tmp_path, monkeypatch):
    """Two real runs on two jobs: the first, in plan order, times its cells; the second
    hands its executor the slow cell first. One job at a time keeps the plan's order."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    registry = make_registry()
    registry.add("slow_plaintext", "misbehaving:SlowPlaintext")
    handed: list[list[str]] = []
    real = pets.runner.executor_for

    class Watching:
        def __init__(self, options):
            self.inner = real(options)

        def run(self, cells, options, deliver):
            handed.append([c.backend for c in cells])
            self.inner.run(cells, options, deliver)

    monkeypatch.setattr(pets.runner, "executor_for", Watching)

    def run(name, jobs):
        return pets.run(
            ["multi_site_prevalence"],
            ["plaintext", "sdc-suppress", "slow_plaintext"],
            params={"seconds": 2.0},
            size=300,
            out=tmp_path / name,
            scenario_dir=scenario_dir,
            registry=registry,
            leakage="off",
            jobs=jobs,
            progress=False,
        )

    first = run("first", 2)
    assert (first["status"] == "ok").all(), first[["backend", "error"]]
    second = run("second", 2)
    assert (second["status"] == "ok").all()
    third = run("third", 1)
    assert (third["status"] == "ok").all()
    assert handed[0] == ["plaintext", "sdc-suppress", "slow_plaintext"]
    assert handed[1][0] == "slow_plaintext"
    assert handed[2] == ["plaintext", "sdc-suppress", "slow_plaintext"]
    kept = json.loads((tmp_path / "cache" / "cell_times" / "times.json").read_text())
    assert len(kept) == 3 and max(kept.values()) >= 2.0


def test_the_runner_starts_a_new_cell_with_a_dp_claim_first_only_when_it_is_audited(
    scenario_dir, tmp_path, monkeypatch
):
    """With no times kept, the runner reads each backend's declared claim: an ``opendp``
    cell (epsilon claimed) goes before ``plaintext`` when attacks are on, and the plan's
    order stands with attacks off. The executor only notes the order here."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    handed: list[list[str]] = []

    class Noting:
        def __init__(self, options):
            pass

        def run(self, cells, options, deliver):
            handed.append([c.backend for c in cells])

    monkeypatch.setattr(pets.runner, "executor_for", Noting)
    for leakage in ("fast", "off"):
        pets.run(
            ["multi_site_prevalence"],
            ["plaintext", "opendp"],
            params={"epsilon": 1.0},
            size=300,
            out=tmp_path / leakage,
            scenario_dir=scenario_dir,
            leakage=leakage,
            jobs=2,
            progress=False,
        )
    assert handed == [["opendp", "plaintext"], ["plaintext", "opendp"]]


def test_past_the_limit_the_cells_timed_longest_ago_are_forgotten_first(
    scenario_dir, tmp_path, monkeypatch
):
    import pets.schedule

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(pets.schedule, "_MAX_ENTRIES", 2)
    plain, mpyc, sdc = _cells(scenario_dir, ["plaintext", "mpyc", "sdc-suppress"])
    for cell, seconds in ((plain, 1.0), (mpyc, 2.0), (plain, 3.0), (sdc, 4.0)):
        times = CellTimes.load()
        times.note(cell, "fast", _ok(cell, wall_s=seconds))
        times.save()
    kept = CellTimes.load()
    assert kept.expected(plain, "fast", False) == 3.0  # timed again: kept
    assert kept.expected(sdc, "fast", False) == 4.0
    assert signature(mpyc, "fast") not in kept.seconds  # the oldest: forgotten


def test_a_cache_that_is_not_a_folder_keeps_no_times_and_the_run_goes_on(
    scenario_dir, tmp_path, monkeypatch
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocker))
    times = CellTimes.load()
    assert times.path is None
    (cell,) = _cells(scenario_dir, ["plaintext"])
    times.note(cell, "fast", _ok(cell, wall_s=1.0))
    times.save()  # nothing to write to: nothing written, no error
    assert blocker.read_text() == "not a folder"
