"""Per-person exposure in releases: copies of real records and membership at a low
false-positive rate, on synthesisers that slip real rows into their release (installed
by import target, as a supplier's plugin is) and on the honest built-in synthesisers."""

from __future__ import annotations

import json

import pytest

import pets
from pets.leakage.rates import difference_interval
from pets.leakage.release.exposure import COPY_THRESHOLD, FPR_MULTIPLE, TARGET_FPR

PLANTED = ("copies_verbatim", "copies_reencoded", "copies_perturbed")
HONEST = ("synth-copula", "synth-dp")


@pytest.fixture(scope="module")
def release_run(tmp_path_factory):
    """One quick run of the release card: the planted copiers and the honest synthesisers."""
    from conftest import SCENARIOS, make_registry

    frame = pets.run(
        ["research_data_release"],
        [*PLANTED, *HONEST],
        quick=True,
        out=tmp_path_factory.mktemp("exposure"),
        registry=make_registry(),
        scenario_dir=SCENARIOS,
        progress=False,
    )
    assert (frame["status"] == "ok").all(), frame[["backend", "error"]].to_string()
    return frame


def _attacks(row, name):
    return [a for a in json.loads(row["leakage.attacks"]) if a["attack"] == name]


@pytest.mark.parametrize("backend", PLANTED)
def test_a_few_copied_rows_are_flagged_in_every_encoding(release_run, backend):
    (row,) = [r for _, r in release_run.iterrows() if r["backend"] == backend]
    flags = json.loads(row["leakage.flags"])
    assert "copies_records" in flags
    copies = {a["match"]: a for a in _attacks(row, "record_copies")}
    match = "near" if backend == "copies_perturbed" else "exact"
    assert copies[match]["excess_low"] > COPY_THRESHOLD
    assert copies[match]["flag"] == "copies_records"
    # the average figures stay near an honest synthesiser's: the tail is what shows
    (member,) = _attacks(row, "membership_inference")
    assert member["auc"] < 0.6
    (low,) = _attacks(row, "membership_at_low_fpr")
    assert low["fpr_target"] == TARGET_FPR
    assert low["tpr_low"] > FPR_MULTIPLE * low["fpr_high"]
    assert "reveals_membership" in flags


@pytest.mark.parametrize("backend", HONEST)
def test_honest_synthesisers_copy_nobody(release_run, backend):
    rows = [r for _, r in release_run.iterrows() if r["backend"] == backend]
    assert rows
    for row in rows:
        assert "copies_records" not in json.loads(row["leakage.flags"])
        for result in _attacks(row, "record_copies"):
            assert result["excess_low"] <= COPY_THRESHOLD
            assert "flag" not in result
        (low,) = _attacks(row, "membership_at_low_fpr")
        assert low["tpr_low"] <= FPR_MULTIPLE * low["fpr_high"]
        assert "flag" not in low


def test_newcombe_interval_matches_the_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 - 48/80,
    # hybrid score interval (method 10) 0.0524 to 0.3339
    diff, low, high = difference_interval(56, 70, 48, 80)
    assert diff == pytest.approx(0.2)
    assert low == pytest.approx(0.0524, abs=1e-4)
    assert high == pytest.approx(0.3339, abs=1e-4)
