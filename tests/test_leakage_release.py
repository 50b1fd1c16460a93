"""Release attacks (singling out, linkability, attribute inference, distance to closest
record, membership inference) on real runs of the research data release card."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from functools import cache

import numpy as np
import pandas as pd
import pytest

from pets.backends.release import Deidentified, Raw
from pets.backends.sdc import SdcKanon
from pets.backends.synth.copula import SynthCopula
from pets.backends.synth.mst import SynthDP
from pets.data import generate_cohort
from pets.leakage import release, wilson_interval
from pets.session import Session
from pets.tasks import ReleaseOutput

from conftest import SCENARIOS, context_for, solve_card

CARD = "research_data_release"
QUICK = 5_000  # the card's quick size

BACKENDS = {
    "raw": (Raw, {}),
    "deidentified": (Deidentified, {}),
    "sdc-kanon": (SdcKanon, {}),
    "synth-copula": (SynthCopula, {"seed": 0}),
    "synth-dp": (SynthDP, {"epsilon": 1.0, "seed": 0}),
}


def _context(backend_cls, params, output, problem, session, attackers=("A0", "A1", "A2", "A3")):
    return context_for(problem, session, output, lambda: backend_cls(**params), attackers=attackers)


@cache
def _run(name: str):
    """Run one backend on the card once per test session; return (output, problem, session)."""
    backend_cls, params = BACKENDS[name]
    output, _, _, problem, session = solve_card(backend_cls(**params), CARD, SCENARIOS, QUICK)
    return output, problem, session


@cache
def _attacked(name: str):
    """The release attacks on one backend's release, by attack and mode/secret."""
    backend_cls, params = BACKENDS[name]
    output, problem, session = _run(name)
    results = release.attack(_context(backend_cls, params, output, problem, session))
    return results


def _find(results, attack, **extra):
    found = [
        r
        for r in results
        if r.attack == attack and all(r.extra.get(k) == v for k, v in extra.items())
    ]
    assert len(found) == 1, (attack, extra, [r.attack for r in results])
    return found[0]


@pytest.mark.parametrize("name", ["raw", "deidentified"])
def test_real_rows_single_out_link_and_reveal(name):
    results = _attacked(name)
    for mode in ("multivariate", "univariate"):
        single = _find(results, "singling_out", mode=mode)
        assert single.success_rate > 0.95
        assert single.residual_risk > 0.8
        assert single.control_rate < 0.5
    link = _find(results, "linkability")
    assert link.residual_risk > 0.4
    assert link.control_rate < 0.05
    member = _find(results, "membership_inference")
    assert member.extra["auc"] > 0.99 and member.residual_risk > 0.95
    dcr = _find(results, "distance_to_closest_record")
    assert dcr.diagnostic and dcr.residual_risk is None
    assert dcr.extra["exact_copies_members"] == 1.0
    assert _find(results, "attribute_inference", secret="t2_diabetes").residual_risk > 0.3


@pytest.mark.parametrize("name", ["synth-copula", pytest.param("synth-dp", marks=pytest.mark.slow)])
def test_synthetic_releases_leak_less_than_real_rows(name):
    raw = _attacked("raw")
    results = _attacked(name)
    for mode in ("multivariate", "univariate"):
        single = _find(results, "singling_out", mode=mode)
        assert single.residual_risk < 0.15
        assert single.residual_risk < _find(raw, "singling_out", mode=mode).residual_risk - 0.6
    assert _find(results, "linkability").residual_risk < 0.05
    member = _find(results, "membership_inference")
    assert 0.4 < member.extra["auc"] < 0.6
    assert member.residual_risk < 0.1
    assert _find(results, "distance_to_closest_record").extra["exact_copies_members"] < 0.01


def test_k_anonymity_reads_bands_and_stops_linkage_on_demographics():
    results = _attacked("sdc-kanon")
    generalised = results[0].extra["generalised"]
    assert any("bands of width" in g for g in generalised)
    # Clinical columns are released as they are: rows are still singled out and members
    # found, but the demographic half no longer points to one row.
    assert _find(results, "singling_out", mode="univariate").residual_risk > 0.9
    assert _find(results, "membership_inference").extra["auc"] > 0.9
    link = _find(results, "linkability")
    assert link.residual_risk < _find(_attacked("raw"), "linkability").residual_risk / 2


@pytest.mark.parametrize("name", list(BACKENDS))
def test_every_rate_has_its_wilson_interval(name):
    results = _attacked(name)
    assert {r.attacker for r in results} == {"A0", "A1"}
    for r in results:
        assert r.applicable, r.note
        k = round(r.success_rate * r.trials)
        assert k == pytest.approx(r.success_rate * r.trials)
        _, low, high = wilson_interval(k, r.trials)
        assert (r.ci_low, r.ci_high) == pytest.approx((low, high))
        assert r.ci_low <= r.success_rate <= r.ci_high
        assert r.cost_s >= 0
        if not r.diagnostic:
            assert 0.0 <= r.residual_risk <= 1.0
            assert r.baseline is not None


def test_results_carry_no_patient_values():
    output, problem, _ = _run("raw")
    assert "nhs_number" in output.table.columns  # the raw release does carry them
    text = json.dumps([r.to_dict() for r in _attacked("raw")])
    assert not re.search(r"(?<![\d.])\d{10}(?!\d)", text)  # no 10-digit integer at all
    (frame,) = problem.party_data.values()
    numbers = set(frame["nhs_number"].astype(str)) | set(
        problem.evaluation["holdout"]["nhs_number"].astype(str)
    )
    assert not any(n in text for n in numbers)
    bmi = {repr(float(v)) for v in frame["bmi"].head(200)}
    assert not any(v in text for v in bmi)


def test_independent_release_scores_no_risk():
    """A release of other patients from the same population: every attack should find
    about what the control finds (this is where the size correction matters)."""
    _, problem, session = _run("raw")
    (frame,) = problem.party_data.values()
    stranger = ReleaseOutput(generate_cohort(len(frame), seed=987))
    results = release.attack(_context(Raw, {}, stranger, problem, session))
    for r in results:
        if not r.diagnostic:
            assert r.residual_risk < 0.12, (r.attack, r.extra.get("mode"), r.residual_risk)
    single = _find(results, "singling_out", mode="multivariate")
    # The uncorrected control (on the smaller held-out set) would report risk here.
    assert single.extra["control_rate_observed"] < single.control_rate


def test_attacks_only_releases_and_their_attacker_models():
    output, problem, session = _run("raw")
    other = replace(problem, task=replace(problem.task, kind="aggregate"))
    assert release.attack(_context(Raw, {}, output, other, session)) == []
    assert release.attack(_context(Raw, {}, output, problem, session, attackers=("A2",))) == []
    only_a1 = release.attack(_context(Raw, {}, output, problem, session, attackers=("A1",)))
    assert {r.attack for r in only_a1} == {"linkability", "attribute_inference"}
    nothing = release.attack(
        _context(Raw, {}, None, problem, Session(problem.task.parties, problem.party_data))
    )
    assert nothing and all(not r.applicable and r.success_rate is None for r in nothing)
    tiny = replace(problem, evaluation={"holdout": problem.evaluation["holdout"].head(5)})
    few = release.attack(_context(Raw, {}, output, tiny, session))
    assert {r.attack for r in few if r.applicable} == {"singling_out"}
    assert {r.attack for r in few if not r.applicable} == {
        "distance_to_closest_record",
        "membership_inference",
        "linkability",
        "attribute_inference",
    }


def test_generalised_text_bands_and_merged_categories_are_matched():
    original = pd.DataFrame(
        {
            "age": np.array([23, 47, 47, 81], dtype=np.int16),
            "ethnicity": pd.Categorical(["White", "Asian", "Black", "White"]),
            "bmi": np.array([22.0, 31.5, 27.0, 19.0]),
        }
    )
    control = original.iloc[:2].assign(age=np.array([5, 90], dtype=np.int16))
    published = pd.DataFrame(
        {
            "age": ["20-29", "40-49", "40-49", "80+"],
            "ethnicity": ["White", "Not White", "Not White", "White"],
            "bmi": original["bmi"],
        }
    )
    view = release.attacker_view(published, original, control, ["age", "ethnicity", "bmi"])
    assert view.columns == ["age", "ethnicity", "bmi"]
    assert list(view.original[:, 0]) == [24.5, 44.5, 44.5, 80.0]
    assert view.control[1, 0] == 80.0  # 90 is in "80+"
    assert np.isnan(view.control[0, 0])  # 5 is in no released band
    # Asian and Black both read as "Not White": the same code as the released cells.
    assert view.original[1, 1] == view.original[2, 1] == view.release[1, 1]
    assert view.original[0, 1] == view.release[0, 1] != view.release[1, 1]
    # Every original row is at distance zero from its own released row.
    d = release.gower_distances(view.scaled(view.original), view.scaled(view.release), view.numeric)
    assert np.allclose(np.diag(d), 0.0)
    # Numeric bands published as middles (sdc-kanon's way) are read the same way.
    middles = published.assign(age=[24.5, 44.5, 44.5, 84.5])
    banded = release.attacker_view(middles, original, control, ["age"])
    assert list(banded.original[:, 0]) == [24.5, 44.5, 44.5, 84.5]
    assert banded.control[1, 0] == 84.5 and np.isnan(banded.control[0, 0])
    assert (
        banded.generalised
        and not release.attacker_view(original, original, control, ["age"]).generalised
    )


def test_control_rate_at_size_follows_the_poisson_model():
    rng = np.random.default_rng(3)
    m, n = 1_000, 4_000
    weights = rng.gamma(0.8, 1 / 3_000, size=20_000)
    counts = rng.poisson(m * weights)
    expected = float(np.mean(n * weights * np.exp(-n * weights)))
    assert release.control_rate_at_size(counts, m, n) == pytest.approx(expected, abs=0.02)
    assert release.control_rate_at_size(counts, m, m) == pytest.approx(np.mean(counts == 1))
    assert release.control_rate_at_size(np.zeros(50, int), m, n) < 0.01
