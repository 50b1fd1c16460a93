"""The party runtime on its own: codec round trips, deadlocks, crashes, scratch folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pets.api import AggregateOutput, LinkageOutput, LogisticModel, QueryOutput
from pets.backends.plaintext import Plaintext
from pets.runtime.codec import CodecError, decode_task, decode_value, encode_task, encode_value
from pets.runtime.harness import PartyProgramError, runner_for
from pets.scenarios import build_problem, load_scenario
from pets.tasks import TASK_KINDS

from misbehaving import Crashing, Deadlocking, ScratchWriter, SlowToBuild, WrongOutput

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def problem():
    return build_problem(load_scenario("multi_site_prevalence"), 600, seed=0)


def _run(backend, problem, **kwargs):
    runner = runner_for(backend, TASK_KINDS["aggregate"].output_type)
    return runner.run(problem.task, problem.party_data)


def test_outputs_and_tasks_cross_as_data_and_back(problem):
    table = pd.DataFrame({"n": [1.0, 2.0]}, index=pd.Index(["a", "b"], name="sex"))
    values = [
        AggregateOutput(table),
        LogisticModel(coef=np.array([0.5, -1.0]), intercept=0.25, features=("age", "bmi")),
        LinkageOutput(matches=frozenset({3, 1}), cardinality=2, statistics={"hba1c_mean": 50.0}),
        QueryOutput(answers=(1.5, None, np.array([1.0, 2.0])), refused={1: "small cell"}),
    ]
    for value in values:
        back = decode_value(encode_value(value), type(value))
        assert type(back) is type(value)
    assert decode_value(encode_value(values[0])).table.equals(table)
    assert decode_value(encode_value(values[3])).refused == {1: "small cell"}
    assert decode_task(encode_task(problem.task)) == problem.task
    with pytest.raises(CodecError, match="expected LogisticModel"):
        decode_value(encode_value(values[0]), LogisticModel)
    with pytest.raises(CodecError):
        decode_value(b"\x00\x01garbage")


def test_parties_waiting_on_each_other_are_a_deadlock_not_a_hang(problem):
    with pytest.raises(PartyProgramError, match="deadlocked") as info:
        _run(Deadlocking(), problem)
    assert info.value.status == "failed"


def test_a_party_that_dies_fails_the_run_with_its_signal(problem):
    with pytest.raises(PartyProgramError, match="signal 9") as info:
        _run(Crashing(), problem)
    assert info.value.status == "party_failed"


def test_an_output_of_the_wrong_type_is_refused(problem):
    with pytest.raises(PartyProgramError, match="not a valid AggregateOutput"):
        _run(WrongOutput(), problem)


def test_each_run_gets_a_scratch_folder_that_is_removed(problem, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    run = _run(ScratchWriter(), problem)
    assert isinstance(run.output, AggregateOutput)
    assert list(tmp_path.iterdir()) == []
    assert run.startup_s > 0 and set(run.party_costs) == set(problem.task.party_names)


def test_the_protocol_clock_starts_when_every_party_holds_its_data_and_misses_no_backend_code(
    problem,
):
    """Handing out the data is timed apart (``load_s``); a backend that works in its
    constructor (outside ``run_party``) still has that work inside ``wall_s``: it is
    built only after the clock starts, in every party."""
    plain = _run(Plaintext(), problem)
    assert plain.load_s > 0 and plain.startup_s > 0
    slow = _run(SlowToBuild(seconds=1.5), problem)
    assert slow.wall_s >= 1.5  # the constructor's work, in the timed window
    assert slow.load_s < 1.5  # and not in the data's hand-out
    assert slow.output.table.equals(plain.output.table)


def test_a_long_temporary_folder_does_not_break_the_fork_server(tmp_path):
    deep = tmp_path / ("x" * 60) / ("y" * 60)
    deep.mkdir(parents=True)
    code = (
        "from pets.backends.plaintext import Plaintext\n"
        "from pets.runtime.harness import runner_for\n"
        "from pets.scenarios import build_problem, load_scenario\n"
        "from pets.tasks import TASK_KINDS\n"
        "p = build_problem(load_scenario('multi_site_prevalence'), 300, seed=0)\n"
        "r = runner_for(Plaintext(), TASK_KINDS['aggregate'].output_type)\n"
        "print(type(r.run(p.task, p.party_data).output).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "TMPDIR": str(deep)},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.stdout.strip() == "AggregateOutput", out.stderr[-2000:]
