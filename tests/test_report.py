"""The report: card requirements, verdicts, Pareto front, curves read from claims,
charts, tolerance of old and new record fields, and ``pets report`` on a real run."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from pets.backends.plaintext import Plaintext
from pets.cli import main
from pets.leakage import evaluate_leakage, rate_result
from pets.records import Record, records_frame
from pets.report import (
    RunEvidence,
    html_report,
    markdown_report,
    requirement_verdicts,
    scorecard,
    scorecard_text,
    utility_curves,
)
from pets.report.charts import (
    backend_colours,
    fitted_slope,
    pareto_chart,
    scaling_chart,
    utility_charts,
)
from pets.report.verdicts import pareto_front
from pets.scenarios import Requirements, load_scenario
from pets.tasks import CardError

from conftest import attack_context
from false_claims import EPSILON_ONE
from report_run import CARD_ID, SECOND_SIZE, session_run


def record(
    backend: str,
    *,
    scenario: str = "toy",
    params: dict | None = None,
    value: float = 0.1,
    risk: float | None = 0.1,
    eps: float | None = None,
    eps_lower: float | None = None,
    size: int = 1000,
    repeat: int = 0,
    wall: float = 0.5,
    wan: float | None = 1.0,
    status: str = "ok",
    higher: bool = False,
    primary: str = "median_relative_error",
    pet_class: str = "dp",
    flags: tuple[str, ...] = (),
    isolation: str = "process",
) -> Record:
    """A record as the harness writes it, with the figures a test chooses."""
    cost = {
        "wall_s": wall,
        "bytes_total": 2048,
        "bytes_by_party": {"a": {"sent": 1024, "received": 0}, "b": {"sent": 0, "received": 1024}},
        "rounds": 1,
    }
    if wan is not None:
        cost["network"] = {"wan": {"modelled_s": wan}}
    headline = {
        "worst_residual_risk": risk,
        "epsilon_claimed": eps,
        "epsilon_lower_bound": eps_lower,
    }
    return Record(
        scenario=scenario,
        backend=backend,
        params=params or {},
        size=size,
        seed=0,
        repeat=repeat,
        status=status,
        error=None if status == "ok" else "boom",
        kind="aggregate",
        pet_class=pet_class,
        card_hash="0" * 64,
        accuracy={primary: value, "primary": primary, "higher_is_better": higher}
        if status == "ok"
        else {},
        cost=cost if status == "ok" else {},
        leakage={
            "claim": {"epsilon": eps, "formal": eps is not None},
            "headline": headline,
            "flags": list(flags),
            "attacks": [],
        }
        if status == "ok"
        else {},
        isolation=isolation,
    )


# -- the [requirements] card table -------------------------------------------------------


def _card_with(tmp_path: Path, scenario_dir: Path, table: str) -> Path:
    path = tmp_path / "federated_risk_model.toml"
    card = (scenario_dir / "federated_risk_model.toml").read_text()
    # a top-level key goes before the tables, a table after them
    path.write_text(f"{table}\n{card}" if not table.startswith("[") else f"{card}\n{table}")
    return path


@pytest.mark.parametrize(
    ("table", "field", "hint"),
    [
        ("[requirements]\nmax_epsilon = 0", "requirements.max_epsilon", "must be > 0"),
        ("[requirements]\nmax_residual_risk = 1.5", "requirements.max_residual_risk", "<= 1"),
        ('[requirements]\nmax_error = "low"', "requirements.max_error", "must be a number"),
        ("[requirements]\nmin_accuracy = -0.1", "requirements.min_accuracy", ">= 0"),
        ("[requirements]\nmax_epsiln = 1", "requirements.max_epsiln", "known fields: max_epsilon"),
        ("requirements = 1", "requirements", "must be a table"),
    ],
)
def test_a_bad_requirement_names_file_field_and_allowed(tmp_path, scenario_dir, table, field, hint):
    path = _card_with(tmp_path, scenario_dir, table)
    with pytest.raises(CardError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert f"field '{field}'" in message
    assert hint in message


def test_cards_state_requirements_some_backends_can_meet(scenario_dir):
    for card_id in ("multi_site_prevalence", "tre_queries"):
        stated = load_scenario(card_id, scenario_dir).requirements.stated()
        assert "max_residual_risk" in stated and "max_error" in stated
    assert load_scenario("federated_risk_model", scenario_dir).requirements.stated() == {}


# -- verdicts and the Pareto front --------------------------------------------------------


def _toy() -> pd.DataFrame:
    return records_frame(
        [
            record("meets", eps=1.0, value=0.1, risk=0.05),
            record("loose", eps=5.0, value=0.05, risk=0.3),
            record("exact", eps=None, value=0.0, risk=1.0, pet_class="he"),
            record("dominated", eps=1.0, value=0.2, risk=0.4),
            record("audited", eps=1.0, eps_lower=3.0, value=0.1, risk=0.05),
            record("slow", eps=1.0, value=0.1, risk=0.05, wan=50.0),
            record("broken", status="failed"),
        ]
    )


def test_verdicts_say_who_meets_every_requirement_and_who_misses_which():
    table = scorecard(_toy())["toy"]
    needs = Requirements(max_epsilon=2, max_residual_risk=0.2, max_error=0.15, max_wan_seconds=10)
    verdicts = requirement_verdicts(table, needs).set_index("backend")
    assert verdicts.loc["meets", "verdict"] == "meets all"
    assert verdicts.loc["loose", "missed"] == ["max_epsilon", "max_residual_risk"]
    assert verdicts.loc["exact", "missed"] == ["max_epsilon", "max_residual_risk"]
    assert verdicts.loc["audited", "missed"] == ["max_epsilon"]  # lower bound above the bound
    assert verdicts.loc["slow", "missed"] == ["max_wan_seconds"]
    assert verdicts.loc["dominated", "missed"] == ["max_residual_risk", "max_error"]
    assert verdicts.loc["broken", "verdict"] == "did not run"
    texts = [c.text for c in verdicts.loc["exact", "checks"]]
    assert "makes no differential-privacy claim" in texts
    # passing rows come first
    assert requirement_verdicts(table, needs)["verdict"].iloc[0] == "meets all"
    assert requirement_verdicts(table, Requirements()).empty


def test_accuracy_bound_in_the_wrong_direction_is_not_checked_not_passed():
    frame = records_frame([record("linker", value=0.9, higher=True, primary="f1")])
    table = scorecard(frame)["toy"]
    verdict = requirement_verdicts(table, Requirements(max_error=0.1)).iloc[0]
    assert verdict["verdict"] == "not all checked"
    assert verdict["checks"][0].met is None and "state min_accuracy" in verdict["checks"][0].text
    meets = requirement_verdicts(table, Requirements(min_accuracy=0.8)).iloc[0]
    assert meets["verdict"] == "meets all"
    both = requirement_verdicts(table, Requirements(min_accuracy=0.95, max_error=0.1)).iloc[0]
    assert [c.requirement for c in both["checks"]] == ["min_accuracy"]
    assert both["missed"] == ["min_accuracy"]


def test_pareto_front_is_the_rows_nothing_beats_on_accuracy_and_risk():
    table = scorecard(_toy())["toy"]
    front = dict(zip(table["backend"], pareto_front(table), strict=True))
    assert front["meets"] and front["loose"] and front["exact"]
    assert front["audited"] and front["slow"]  # the same point as "meets"
    assert not front["dominated"] and not front["broken"]


# -- scorecard figures and curves ---------------------------------------------------------


def test_scorecard_means_and_intervals_over_repeats():
    frame = records_frame(
        [
            record("opendp", value=v, repeat=i, risk=r)
            for i, (v, r) in enumerate([(0.1, 0.2), (0.3, 0.4)])
        ]
    )
    row = scorecard(frame)["toy"].iloc[0]
    assert row["value"] == pytest.approx(0.2)
    assert row["value_low"] < 0.1 and row["value_high"] > 0.3  # t interval, 1 df
    assert row["worst_risk"] == pytest.approx(0.4)
    assert row["runs"] == 2


def test_curves_follow_the_typed_claim_not_a_parameter_name():
    frame = records_frame(
        [
            record("supplier-dp", params={"eps": e}, eps=e, value=1 / e, repeat=r)
            for e in (0.5, 1, 4)
            for r in (0, 1)
        ]
        + [
            record("opendp", scenario="tre", params={"query_epsilon": q}, eps=1.0, value=q)
            for q in (0.1, 0.25)
        ]
        + [record("sdc-round", params={"base": b}, value=0.0, pet_class="sdc") for b in (5, 10)]
    )
    curves = utility_curves(frame)
    supplier = curves[curves["backend"] == "supplier-dp"]
    assert list(supplier["axis"].unique()) == ["epsilon"]
    assert list(supplier["x"]) == [0.5, 1.0, 4.0] and (supplier["runs"] == 2).all()
    budget = curves[curves["scenario"] == "tre"]
    assert list(budget["axis"].unique()) == ["query_epsilon"]
    assert list(budget["x"]) == [0.1, 0.25] and (budget["epsilon"] == 1.0).all()
    assert "sdc-round" not in set(curves["backend"])  # no DP claim, no privacy curve


def _data_ids(svg: str) -> set[str]:
    return {m for m in re.findall(r'<g id="([^"]*data-[^"]*)"', svg)}


def test_charts_are_inline_svg_with_marked_data_series():
    frame = records_frame(
        [record("opendp", params={"epsilon": e}, eps=e, value=1 / e) for e in (0.5, 1, 4)]
        + [
            record(
                "plaintext", value=0.0, risk=1.0, pet_class="baseline", size=n, wall=(n / 1000) ** 2
            )
            for n in (1000, 2000, 4000)
        ]
    )
    colours = backend_colours(["opendp", "plaintext"])
    (curve,) = utility_charts(utility_curves(frame), "toy", colours, Requirements(max_epsilon=1))
    assert curve.svg.startswith("<svg") and "<image" not in curve.svg
    assert len(_data_ids(curve.svg)) == curve.marks == 1
    table = scorecard(frame)["toy"]
    pareto = pareto_chart(table, pareto_front(table), "toy", colours)
    assert pareto is not None and len(_data_ids(pareto.svg)) >= pareto.marks == len(table)
    scaling = scaling_chart(table, "toy", colours)
    assert scaling is not None and "slope 2.00" in scaling.svg
    assert fitted_slope([1, 10, 100], [3, 30, 300]) == pytest.approx(1.0)
    assert pd.isna(fitted_slope([1000], [1.0]))
    # every id is prefixed by its chart, so charts do not collide in one page
    ids = re.findall(r'\bid="([^"]+)"', curve.svg)
    assert ids and all(i.startswith("toy-utility-0-") for i in ids)


def test_old_and_new_record_fields_are_tolerated_and_shown():
    frame = records_frame(
        [
            record("plain-api", isolation="api", flags=("no_traffic_for_inputs",)),
            record("checked", wan=None, isolation=""),
            record("supplier", risk=None),
        ]
    )
    frame["verified"] = [None, True, False]  # a field later records carry
    page = html_report(RunEvidence.from_frame(frame))
    assert page.lower().count("unverified") == 2  # the supplier's badge and its caveat
    assert "supplier: has not passed the conformance kit" in page
    assert "plain-api: ran in the harness&#x27;s own process (isolation api)" in page
    assert "no_traffic_for_inputs" in page and "none of them sent anything" in page
    text = markdown_report(frame.drop(columns=["verified", "isolation"]))
    assert "## toy" in text and "(unverified)" not in text


# -- pets report on a real run folder -----------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return session_run(tmp_path_factory)


def test_pets_report_rebuilds_html_and_markdown_from_the_run_folder(run_dir, capsys):
    for name in ("report.html", "report.md"):
        (run_dir / name).unlink(missing_ok=True)
    assert main(["report", str(run_dir), "--format", "both"]) == 0
    assert "report.html" in capsys.readouterr().out
    page = (run_dir / "report.html").read_text()
    text = (run_dir / "report.md").read_text()
    # self-contained: nothing fetched when opened
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page and "@import" not in page and "url(http" not in page
    assert page.count("<svg") >= 3  # Pareto, privacy-utility, bytes per party
    # the card's requirements give a verdict table in both formats
    assert 'class="verdicts"' in page and "### Requirements and verdicts" in text
    assert re.search(r'data-backend="plaintext" data-verdict="misses"', page)
    assert re.search(r"\| plaintext \(n=1500\) \| misses \|", text)
    # every scorecard row of the run is there, at both sizes for plaintext
    for label in (
        "plaintext (n=1500)",
        f"plaintext (n={SECOND_SIZE})",
        "opendp [epsilon=0.5] (n=1500)",
    ):
        assert label in page
    # the ICO sections and the reproducibility appendix
    assert "Privacy-enhancing technologies (PETs), ICO, June 2023" in page
    assert "What are its risks and known weaknesses?" in page
    assert "git commit" in page and "card multi_site_prevalence" in page
    # no patient identifiers (NHS numbers are ten digits; a commit hash's run of digits
    # between letters is not one)
    assert not re.search(
        r"(?<![\w.])\d{10}(?![\w.])", re.sub(r"<svg.*?</svg>", "", page, flags=re.S)
    )


def test_pets_run_keeps_cards_and_command_so_the_folder_rebuilds_alone(run_dir, tmp_path):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["command"][:2] == ["pets", "run"]
    copy = run_dir / "cards" / f"{CARD_ID}.toml"
    assert copy.exists() and (run_dir / "cards" / f"{CARD_ID}.md").exists()
    moved = tmp_path / "run"
    shutil.copytree(run_dir, moved)
    # the card is no longer where the run found it: the folder's copy is used
    manifest["cards"][CARD_ID]["path"] = str(tmp_path / "gone.toml")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    assert main(["report", str(moved), "--format", "md"]) == 0
    text = (moved / "report.md").read_text()
    assert "*Card:" not in text and "Test bounds." in text


# -- claim checks and risk intervals -------------------------------------------------------


def test_contradicted_claims_name_the_attack_its_lower_bound_and_the_cap(scenario_dir):
    """The leakage of a record is what evaluate_leakage writes for an exact table under a
    claim of epsilon 1: the report names the contradicting attack with its bound and
    cap, and shows the residual risk's interval wherever it shows the risk."""
    context = attack_context(Plaintext, "multi_site_prevalence", scenario_dir, 1500)
    exact = rate_result(
        "differencing",
        "A1",
        "analyst",
        successes=40,
        trials=40,
        baseline=0.5,
        control=0.5,
        control_trials=40,
    )
    noisy = rate_result(
        "differencing",
        "A1",
        "analyst",
        successes=24,
        trials=40,
        baseline=0.5,
        control=0.5,
        control_trials=40,
    )
    capabilities = replace(Plaintext().capabilities, claim=EPSILON_ONE)
    records = []
    for name, found in (("leaky", exact), ("honest", noisy)):
        leakage = evaluate_leakage(
            context.problem,
            context.session,
            capabilities,
            families=[("differencing", lambda _, found=found: [found])],
        )
        base = record(name, eps=1.0, risk=leakage["headline"]["worst_residual_risk"])
        records.append(replace(base, leakage=leakage))
    leaky, honest = (r.leakage for r in records)
    assert set(leaky["flags"]) == {"claim_contradicted", "reveals_individuals"}
    (contradiction,) = leaky["contradictions"]
    assert contradiction["attack"] == "differencing" and contradiction["claim"] == "epsilon"
    assert contradiction["bound"] > contradiction["cap"]
    assert leaky["headline"]["claim_contradicted_by"] == "differencing@analyst"
    assert honest["flags"] == [] and honest["contradictions"] == []

    frame = records_frame(records)
    bound, cap = f"{contradiction['bound']:.3f}", f"{contradiction['cap']:.3f}"
    page = html_report(RunEvidence.from_frame(frame))
    text = markdown_report(frame)
    for out in (page, text):
        assert "the claim is contradicted by differencing on analyst" in out
        sign = ">" if out is text else "&gt;"
        assert f"contradicts ε: lower end {bound} {sign} cap {cap}" in out
        assert "within ε: lower end" in out  # the honest row's check, under its cap
    # the risk interval next to the risk: in the attack tables and the terminal scorecard
    risk_low = f"{leaky['attacks'][0]['residual_risk_low']:.3f}"
    assert f"[{risk_low}, 1]" in text
    assert f"[{risk_low}," in scorecard_text(frame)
