"""The ``syft`` backend: a real PySyft 0.9.5 datasite, offline, in an environment of its
own (built here by ``pets env sync`` from the package index), reached by the researcher
only over HTTP through the harness's relay, under each approval policy of the card."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import pets
from pets.api import UnsupportedTask
from pets.backends.acro_backend import Acro
from pets.backends.pysyft import Accountant, Syft, declared, dp_query_code, mock_of, query_code
from pets.envs import ENV_CACHE_VARIABLE, MARKER, EnvSpec, env_state, sync_backends
from pets.scenarios import build_problem, load_scenario
from pets.tasks import answer_query, cell_grid, local_aggregate, select_rows
from pets.testing import check_backend

from conftest import SCENARIOS, make_registry

SIZE = 4_000
#: The query card's policies the default suite runs (``acro`` and the prevalence card's
#: datasite per nation run under ``-m slow``).
POLICIES = ("approve_all", "min_cell_size", "dp")


@pytest.fixture(scope="session")
def syft_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The syft backend's environment, built once per session into a fresh cache."""
    root = tmp_path_factory.mktemp("syft-envs")
    lines: list[str] = []
    assert sync_backends(make_registry(), ["syft"], root=root, progress=lines.append) == 0
    assert any("building" in line for line in lines), lines
    return root


def _run_syft(syft_env: Path, out: Path, card: str, backends: list[str], **options) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_CACHE_VARIABLE, str(syft_env))
        pets.run(
            [card],
            backends,
            size=SIZE,
            out=out,
            scenario_dir=SCENARIOS,
            progress=False,
            leakage="off",
            **options,
        )


def _by_label(*folders: Path) -> dict[str, dict]:
    """The records of ``folders`` by ``card/backend[policy]`` (opendp only at a quarter
    of the budget per query)."""
    found: dict[str, dict] = {}
    for folder in folders:
        for line in (folder / "records.jsonl").read_text().splitlines():
            record = json.loads(line)
            label = record["backend"]
            if label == "syft":
                label = f"syft[{record['params']['policy']}]"
            if label == "opendp" and record["params"].get("query_epsilon") != 0.25:
                continue
            found[f"{record['scenario']}/{label}"] = record
    return found


@pytest.fixture(scope="module")
def records(syft_env: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """tre_queries: syft approving all and checking cell sizes, and plaintext; then the
    dp policy at a quarter of the budget per query, beside opendp at the same."""
    out = tmp_path_factory.mktemp("syft-run")
    policy = {"policy": "approve_all"}
    _run_syft(syft_env, out / "run", "tre_queries", ["syft", "plaintext"], params=policy)
    policy = {"policy": "min_cell_size"}
    _run_syft(syft_env, out / "run", "tre_queries", ["syft"], params=policy, resume=True)
    _run_syft(
        syft_env,
        out / "dp",
        "tre_queries",
        ["syft", "opendp"],
        params={"policy": "dp", "epsilon": 1.0, "query_epsilon": 0.25},
    )
    return _by_label(out / "run", out / "dp")


@pytest.fixture(scope="module")
def site_records(syft_env: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """multi_site_prevalence (a datasite per nation): syft under each policy of the
    card's sweep, sdc-suppress without secondary suppression, and plaintext; and
    tre_queries under ACRO's checks."""
    out = tmp_path_factory.mktemp("syft-sites")
    _run_syft(
        syft_env,
        out / "run",
        "multi_site_prevalence",
        ["syft", "sdc-suppress", "plaintext"],
        params={"secondary": False},
    )
    _run_syft(syft_env, out / "acro", "tre_queries", ["syft"], params={"policy": "acro"})
    return _by_label(out / "run", out / "acro")


@pytest.fixture(scope="module")
def problem():
    scenario = load_scenario(SCENARIOS / "tre_queries.toml")
    return build_problem(scenario, size=SIZE, seed=0)


def _errors(record: dict) -> dict[str, float]:
    accuracy = record["accuracy"]
    return {k.split(".", 1)[1]: v for k, v in accuracy.items() if k.startswith("relative_error.")}


def test_every_policy_ran_in_the_syft_environment(records, syft_env):
    _ran_in_the_syft_environment(records, [f"tre_queries/syft[{p}]" for p in POLICIES])


@pytest.mark.slow  # a datasite per nation, and ACRO's checks: about a minute more
def test_every_site_policy_ran_in_the_syft_environment(site_records, syft_env):
    policies = ("approve_all", "min_cell_size")
    labels = [f"multi_site_prevalence/syft[{p}]" for p in policies]
    _ran_in_the_syft_environment(site_records, [*labels, "tre_queries/syft[acro]"])


def _ran_in_the_syft_environment(records: dict[str, dict], labels: list[str]) -> None:
    for label in labels:
        record = records[label]
        assert record["status"] == "ok", record["error"]
        assert record["isolation"] == "process"
        party_env = record["environment"]["party_environment"]
        assert party_env["packages"]["syft"] == "0.9.5"
        # the parties ran beside numpy 1.24; the harness kept its own numpy
        assert party_env["packages"]["numpy"] == "1.24.4"
        assert record["environment"]["packages"]["numpy"] == np.__version__ != "1.24.4"
        # the researcher's HTTP traffic crossed the harness's relay and was metered
        assert record["cost"]["bytes_total"] > 100_000


def test_approve_all_answers_equal_plaintext(records):
    syft, plain = records["tre_queries/syft[approve_all]"], records["tre_queries/plaintext"]
    assert syft["accuracy"]["fraction_answered"] == 1.0
    assert set(_errors(syft).values()) == {0.0}
    assert _errors(syft) == _errors(plain)
    assert "withheld" not in syft["accuracy"]


def test_min_cell_size_withholds_exactly_the_small_cells(records, problem):
    record = records["tre_queries/syft[min_cell_size]"]
    frame = problem.party_data["custodian"]
    small = set()
    for query in problem.task.params["queries"]:
        rows = len(select_rows(frame, query.get("filter", "")))
        answer = answer_query(frame, query)
        if rows < 10 or (query["kind"] == "histogram" and (np.asarray(answer) < 10).any()):
            small.add(query["id"])
    assert small, "the card has a small cell (COPD, 85+, decile 1)"
    withheld = record["accuracy"]["withheld"]
    assert set(withheld) == small
    assert all("fewer than 10 patients" in reason for reason in withheld.values())
    errors = _errors(record)
    assert {q for q, e in errors.items() if e == 1.0} == small
    assert {e for q, e in errors.items() if q not in small} == {0.0}
    assert record["accuracy"]["fraction_answered"] == pytest.approx(1 - len(small) / 10)


@pytest.mark.slow
def test_a_datasite_per_nation_gives_plaintexts_table_when_all_is_approved(site_records):
    syft = site_records["multi_site_prevalence/syft[approve_all]"]
    plain = site_records["multi_site_prevalence/plaintext"]
    assert syft["accuracy"]["fraction_released"] == plain["accuracy"]["fraction_released"]
    assert syft["accuracy"]["max_relative_error"] == pytest.approx(0.0, abs=1e-9)
    # four nations' datasites and the analyst: one environment, five PySyft processes
    assert {"england", "wales", "scotland", "northern_ireland", "analyst"} <= set(
        syft["cost"]["by_party"]
    )


@pytest.mark.slow
def test_checking_each_site_withholds_every_cell_small_at_any_site(site_records):
    record = site_records["multi_site_prevalence/syft[min_cell_size]"]
    suppress = site_records["multi_site_prevalence/sdc-suppress"]
    scenario = load_scenario(SCENARIOS / "multi_site_prevalence.toml")
    problem = build_problem(scenario, size=SIZE, seed=record["seed"])
    group_by = list(problem.task.params["group_by"])
    grid = cell_grid(problem.task)
    sites = [
        local_aggregate(problem.party_data[h], problem.task)["n"]
        for h in problem.task.parties_with_role("data_holder")
    ]
    small_somewhere = np.any([(n > 0) & (n < 10) for n in sites], axis=0)
    pooled = np.sum(sites, axis=0)
    # values defined per cell: n, and each mean where the pooled cell has patients
    means = len(problem.task.params["measures"])
    defined = 1 + means * (pooled > 0)
    expected = defined[~small_somewhere].sum() / defined.sum()
    assert len(grid) == len(pooled) and group_by
    # a pooled cell is released only if no site had to suppress it, and exactly
    assert record["accuracy"]["fraction_released"] == pytest.approx(expected)
    assert record["accuracy"]["max_absolute_error"] == pytest.approx(0.0, abs=1e-9)
    assert 0 < expected < suppress["accuracy"]["fraction_released"]


def test_the_acro_and_dp_policies_are_for_queries():
    (sweep,) = load_scenario(SCENARIOS / "multi_site_prevalence.toml").sweeps_for("syft")
    assert set(sweep.values) == {"approve_all", "min_cell_size"}  # the card sweeps no other
    context = SimpleNamespace(task=SimpleNamespace(kind="aggregate"), network=None)
    with pytest.raises(UnsupportedTask, match="the acro policy decides query outputs"):
        Syft(policy="acro").run_party(context)
    # dp too: its formal claim would otherwise stand over exact site tables
    with pytest.raises(UnsupportedTask, match=r"the dp policy decides query outputs.*opendp"):
        Syft(policy="dp").run_party(context)


def test_the_dp_policy_answers_within_the_budget_as_opendp_does(records):
    syft, opendp = records["tre_queries/syft[dp]"], records["tre_queries/opendp"]
    assert syft["leakage"]["claim"]["epsilon"] == 1.0
    # four queries of 0.25 fit in epsilon 1; the data owner denies the other six
    assert syft["accuracy"]["fraction_answered"] == opendp["accuracy"]["fraction_answered"] == 0.4
    withheld = syft["accuracy"]["withheld"]
    assert len(withheld) == 6
    assert all("privacy budget (epsilon 1) is spent" in r for r in withheld.values())
    answered = [e for q, e in _errors(syft).items() if q not in withheld]
    assert len(answered) == 4 and all(np.isfinite(answered)) and max(answered) > 0  # noisy


def _template_review(source: str, budget: float = 1.0) -> str:
    frame = pd.DataFrame({"t2_diabetes": [0, 1, 1]})
    ran: list[int] = []
    reason = Accountant(budget).review(frame, source, lambda: ran.append(1))
    assert not ran, "a DP request is never run before approval: a run spends budget"
    return reason


def test_the_dp_data_owner_approves_only_its_template_within_the_budget():
    query = {"id": "q", "kind": "count", "filter": "t2_diabetes == 1"}
    accountant = Accountant(0.25)
    frame = pd.DataFrame({"t2_diabetes": [0, 1, 1]})
    template = dp_query_code("q0", query, 0.1)
    assert accountant.review(frame, template, lambda: None) == ""
    assert accountant.review(frame, template, lambda: None) == ""
    assert "budget (epsilon 0.25) is spent" in accountant.review(frame, template, lambda: None)
    # a declaration that understates what the code spends
    louder = template.replace("spec['epsilon'])(rows)", "spec['epsilon'] * 100)(rows)")
    assert louder != template
    assert "not the approved DP template" in _template_review(louder)
    # the exact answer, declared as a DP release
    exact = template.replace(
        "    return list(released) if histogram else released[0]", "    return float(len(rows))"
    )
    assert "not the approved DP template" in _template_review(exact)
    # no DP mechanism declared at all
    assert "declares no release" in _template_review(query_code("q0", query))


def test_a_second_sync_is_a_no_op(syft_env):
    spec = EnvSpec.of("syft", Syft().capabilities.requirements)
    state = env_state(spec, syft_env)
    assert state.status == "current"
    marker = (state.path / MARKER).stat().st_mtime_ns
    lines: list[str] = []
    assert sync_backends(make_registry(), ["syft"], root=syft_env, progress=lines.append) == 0
    assert lines == [f"syft: up to date ({state.path})"]
    assert (state.path / MARKER).stat().st_mtime_ns == marker


def test_without_its_environment_syft_is_unsupported_and_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_CACHE_VARIABLE, str(tmp_path / "empty"))
    pets.run(
        ["tre_queries"],
        ["syft"],
        size=1_000,
        out=tmp_path / "run",
        params={"policy": "approve_all"},
        scenario_dir=SCENARIOS,
        progress=False,
        leakage="off",
    )
    (record,) = [
        json.loads(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()
    ]
    assert record["status"] == "unsupported"
    assert "`pets env sync syft`" in record["error"]


def test_the_mock_holds_nothing_of_the_rows(problem):
    frame = problem.party_data["custodian"]
    mock = mock_of(frame)
    assert list(mock.columns) == list(frame.columns)
    for column in frame.columns:
        kinds = {
            str(d) if str(d) == "category" else d.kind
            for d in (frame[column].dtype, mock[column].dtype)
        }
        assert len(kinds) == 1, column
    # no identifier of the rows, and categories of its own, not the table's
    assert not set(mock["nhs_number"]) & set(frame["nhs_number"])
    assert set(mock["postcode_district"].cat.categories) == set(mock["postcode_district"])
    # two mocks are two fresh draws, not a function of the rows
    assert not mock.equals(mock_of(frame))


def test_the_researchers_code_computes_what_it_declares(problem):
    frame = problem.party_data["custodian"]
    for i, query in enumerate(problem.task.params["queries"]):
        source = query_code(f"q{i}", query)
        assert declared(source) == dict(query)
        namespace: dict = {}
        exec(compile(source, "<test>", "exec"), namespace)
        np.testing.assert_allclose(
            np.asarray(namespace[f"q{i}"](frame), dtype=float),
            np.asarray(answer_query(frame, query), dtype=float),
        )


def test_the_data_owner_denies_code_that_computes_something_else(problem):
    frame = problem.party_data["custodian"]
    query = problem.task.params["queries"][0]
    with pytest.raises(ValueError, match="does not compute the query it declares"):
        Syft().decide(frame, query, answer_query(frame, query) + 1)
    assert declared("def q(rows):\n    return len(rows)\n") is None


def test_policies_and_sizes_are_checked_when_capabilities_are_read():
    with pytest.raises(ValueError, match="policy must be one of approve_all"):
        Syft(policy="approve_some").capabilities  # noqa: B018
    with pytest.raises(ValueError, match="min_cell_size"):
        Syft(min_cell_size=0).capabilities  # noqa: B018
    assert isinstance(Syft().acro(), Acro) and Syft().acro().suppress is False


@pytest.mark.slow  # about 100 s; the kit's own tests run it on every built-in backend
def test_syft_passes_the_conformance_kit_in_its_environment(syft_env, monkeypatch):
    monkeypatch.setenv(ENV_CACHE_VARIABLE, str(syft_env))
    results = check_backend("syft")
    failed = [f"{r.check}: {r.message}" for r in results if r.status == "failed"]
    assert not failed, failed
    assert sum(r.status == "passed" for r in results) >= len(results) // 2
