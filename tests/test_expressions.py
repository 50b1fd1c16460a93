"""Cards are data: row filters are parsed by our own grammar at load and never run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pets.data import COLUMNS, generate_cohort
from pets.expressions import ExpressionError, parse_filter, select_rows
from pets.scenarios import build_problem, find_scenarios, load_scenario
from pets.tasks import CardError


def _card_filters(card) -> list[tuple[str, str]]:
    """Every row filter a loaded card holds, as (field, text)."""
    found = []
    if card.data.filter:
        found.append(("data.filter", card.data.filter))
    for party, entry in card.data.split.get("parties", {}).items():
        if entry.get("query"):
            found.append((f"data.split.parties.{party}.query", entry["query"]))
    for party, text in card.task_params.get("criteria", {}).items():
        found.append((f"task.criteria.{party}", text))
    for i, query in enumerate(card.task_params.get("queries", ())):
        if query.get("filter"):
            found.append((f"task.queries[{i}].filter", query["filter"]))
    return found


def test_every_card_filter_selects_what_dataframe_query_selected(scenario_dir):
    frame = generate_cohort(4000, seed=3)
    found = [f for sid in find_scenarios(scenario_dir) for f in _card_filters(load_scenario(sid))]
    # the cards hold data filters, a split query, linkage criteria and workload filters
    kinds = {field.split(".")[1].split("[")[0] for field, _ in found}
    assert kinds >= {"filter", "split", "criteria", "queries"}
    assert len(found) >= 10
    for field, text in found:
        mask = parse_filter(text, COLUMNS).mask(frame)
        expected = frame.index.isin(frame.query(text).index)
        assert mask.any(), (field, text)
        np.testing.assert_array_equal(mask, expected, err_msg=f"{field}: {text}")


@pytest.mark.parametrize(
    "text",
    [
        "age > 1 and (sex == 'F' or nation in ['Wales', 'Scotland'])",
        "not (hba1c > 48) or 40 <= age < 50",
        "nation not in ['England'] and age_band >= '65-74'",
        "-1 < bmi and deprivation_decile != 3",
    ],
)
def test_the_grammar_agrees_with_pandas_query(text):
    frame = generate_cohort(2000, seed=1)
    mask = parse_filter(text, COLUMNS).mask(frame)
    np.testing.assert_array_equal(mask, frame.index.isin(frame.query(text).index))
    assert select_rows(frame, text).index.equals(frame.query(text).index)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("nhs_number.to_csv('LEAK')", "call"),
        ("age > 1 and nhs_number.to_csv('LEAK') == None", "call"),
        ("@pd.io.common.os.system('touch LEAK')", "not an expression of the grammar"),
        ("__import__('os').system('touch LEAK')", "call"),
        ("age.values > 1", "attribute access"),
        ("__class__ == 1", "'__class__'"),
        ("age[0] > 1", "subscripts"),
        ("age + 1 > 3", "arithmetic"),
        ("(lambda: 1)() == 1", "call"),
        ("age is None", "'is'"),
        ("age in nation", "'in' without"),
        ("age", "not true/false"),  # refused when applied: a bare number column
    ],
)
def test_code_in_a_filter_is_refused(text, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = text.replace("LEAK", str(tmp_path / "leak.csv"))
    frame = generate_cohort(200, seed=0)
    with pytest.raises(ExpressionError, match="filter") as info:
        parse_filter(text, COLUMNS).mask(frame)
    assert says in str(info.value)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def _variant(scenario_dir: Path, tmp_path: Path, card_id: str, old: str, new: str) -> Path:
    text = (scenario_dir / f"{card_id}.toml").read_text()
    assert old in text
    path = tmp_path / f"{card_id}.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("card_id", "old", "field"),
    [
        ("federated_risk_model", '"admissions_prior_year >= 1"', "data.filter"),
        ("trial_recruitment_linkage", '"cancer == 1"', "data.split.parties.cancer_registry.query"),
        (
            "trial_recruitment_linkage",
            '"age >= 40 and age <= 75 and hba1c > 48"',
            "task.criteria.gp_federation",
        ),
        ("tre_queries", '"t2_diabetes == 1"', "task.queries[0].filter"),
    ],
)
def test_a_card_that_calls_a_method_is_refused_at_load_and_writes_nothing(
    scenario_dir, tmp_path, card_id, old, field
):
    leak = tmp_path / "out" / "nhs.csv"
    leak.parent.mkdir()
    hostile = f"\"nhs_number.to_csv('{leak}') == None\""
    path = _variant(scenario_dir, tmp_path, card_id, old, hostile)
    with pytest.raises(CardError) as info:
        load_scenario(path)
    message = str(info.value)
    assert str(path) in message and f"'{field}'" in message
    assert "call" in message and "allowed:" in message
    assert not leak.exists()


def test_a_misspelled_filter_column_says_did_you_mean(scenario_dir, tmp_path):
    path = _variant(
        scenario_dir, tmp_path, "federated_risk_model", "admissions_prior_year >=", "admisions >="
    )
    with pytest.raises(CardError, match="did you mean 'admissions_prior_year'") as info:
        load_scenario(path)
    assert "'data.filter'" in str(info.value) and "columns: nhs_number" in str(info.value)


def test_a_misspelled_split_column_is_refused_at_load(scenario_dir, tmp_path):
    path = _variant(scenario_dir, tmp_path, "multi_site_prevalence", '"nation"', '"nashun"')
    with pytest.raises(CardError, match=r"data\.split\.column.*'nashun' is not allowed.*nation"):
        load_scenario(path)


def test_a_filter_that_leaves_no_patient_is_a_card_error_naming_it(scenario_dir, tmp_path):
    path = _variant(
        scenario_dir,
        tmp_path,
        "federated_risk_model",
        '"admissions_prior_year >= 1"',
        '"age > 200"',
    )
    card = load_scenario(path)
    with pytest.raises(CardError, match=r"'data.filter': 'age > 200' leaves 0 of 300 patients"):
        build_problem(card, 300, 0)


def test_a_filter_received_over_the_wire_is_parsed_not_run(tmp_path):
    """A custodian applies a researcher's workload filter with select_rows: a hostile
    researcher cannot make it run code either."""
    frame = generate_cohort(200, seed=0)
    with pytest.raises(ExpressionError, match="call"):
        select_rows(frame, f"nhs_number.to_csv('{tmp_path / 'x.csv'}') == None")
    assert list(tmp_path.iterdir()) == []
