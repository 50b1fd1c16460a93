"""Scenario cards: the six load; a wrong field fails naming file, field and allowed values."""

from __future__ import annotations

import re
import shutil

import pytest

from pets.scenarios import build_problem, find_scenarios, load_scenario
from pets.tasks import TASK_KINDS, CardError

from conftest import CARD_IDS


def test_the_six_cards_load_with_stories(scenario_dir):
    found = find_scenarios(scenario_dir)
    assert set(CARD_IDS) <= set(found)
    kinds = set()
    for sid in CARD_IDS:
        card = load_scenario(sid, scenario_dir)
        kinds.add(card.kind)
        assert card.story is not None and card.story.read_text().startswith("# ")
        assert card.data.quick_size < card.data.size
        assert card.questions
        assert len(card.card_hash) == 64
    assert kinds == set(TASK_KINDS)


def _edited(tmp_path, scenario_dir, card_id, old, new):
    text = (scenario_dir / f"{card_id}.toml").read_text()
    assert old in text, old
    path = tmp_path / f"{card_id}.toml"
    path.write_text(text.replace(old, new, 1))
    shutil.copy(scenario_dir / f"{card_id}.md", tmp_path)
    return path


@pytest.mark.parametrize(
    ("card_id", "old", "new", "field", "hint"),
    [
        (
            "multi_site_prevalence",
            'method = "column"',
            'method = "colum"',
            "data.split.method",
            "allowed: column, catchment, overlap, whole",
        ),
        (
            "multi_site_prevalence",
            'stat = "mean" }',
            'stat = "median" }',
            "task.measures[0].stat",
            "allowed: count, sum, mean",
        ),
        (
            "multi_site_prevalence",
            'kind = "aggregate"',
            'kind = "aggregation"',
            "kind",
            "allowed: aggregate, linkage",
        ),
        ("multi_site_prevalence", "size = 200_000", 'size = "big"', "data.size", "an integer"),
        (
            "multi_site_prevalence",
            'group_by = ["age_band"',
            'group_by = ["age_bnd"',
            "task.group_by",
            "'age_bnd' is not allowed",
        ),
        (
            "federated_risk_model",
            "trust_e = 0.08",
            "trust_z = 0.08",
            "data.split.shares.trust_z",
            "is not a party",
        ),
        (
            "federated_risk_model",
            "C = 1.0",
            "C = 1.0\nlearning_rate = 0.1",
            "task.learning_rate",
            "not a known field",
        ),
        (
            "tre_queries",
            'kind = "histogram"',
            'kind = "median"',
            "task.queries[6].kind",
            "allowed: count, sum, mean, histogram",
        ),
        (
            "trial_recruitment_linkage",
            'role = "data_holder"',
            'role = "hospital"',
            "parties[0].role",
            "allowed: data_holder",
        ),
        (
            "research_data_release",
            'recipient = "researcher"',
            'recipient = "public"',
            "task.recipient",
            "allowed: custodian, researcher",
        ),
    ],
)
def test_a_bad_field_names_file_field_and_allowed(
    tmp_path, scenario_dir, card_id, old, new, field, hint
):
    path = _edited(tmp_path, scenario_dir, card_id, old, new)
    with pytest.raises(CardError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert f"field '{field}'" in message
    assert hint in message


def test_syntax_error_and_unknown_id(tmp_path, scenario_dir):
    path = tmp_path / "broken.toml"
    path.write_text("id = \n")
    with pytest.raises(CardError, match=re.escape(str(path))):
        load_scenario(path)
    with pytest.raises(KeyError, match="did you mean 'tre_queries'"):
        load_scenario("tre_query", scenario_dir)


@pytest.mark.parametrize("card_id", CARD_IDS)
def test_problem_is_deterministic_and_private_data_is_split(scenario_dir, card_id):
    card = load_scenario(card_id, scenario_dir)
    a = build_problem(card, 2000, seed=3)
    b = build_problem(card, 2000, seed=3)
    assert a.task == b.task
    assert a.task.scenario == card_id
    assert set(a.party_data) <= set(a.task.party_names)
    for name, value in a.party_data.items():
        if hasattr(value, "equals"):
            assert value.equals(b.party_data[name])
    assert a.sensitive, "every card must give the transcript check something to look for"
