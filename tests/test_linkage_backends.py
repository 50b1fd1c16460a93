"""PSI and hashed-identifier linkage: exact matches, honest claims, what crosses."""

from __future__ import annotations

import hashlib

import pytest

from pets.backends.hashing import KEY_HOLDER, HashSalted, HashSha256, HmacKeyed
from pets.backends.psi import PsiEcdh
from pets.leakage import evaluate_leakage
from pets.scenarios import build_problem, load_scenario
from pets.tasks import TASK_KINDS

from conftest import solve_problem

SIZE = 20_000


def _linkage(backend, card_path, size=SIZE):
    card = load_scenario(card_path)
    problem = build_problem(card, size, seed=0)
    output, session = solve_problem(backend, problem)
    kind = TASK_KINDS["linkage"]
    reference = kind.reference(problem)
    return output, reference, kind.score(output, reference, problem), problem, session


@pytest.fixture
def cardinality_card(tmp_path, scenario_dir):
    text = (scenario_dir / "trial_recruitment_linkage.toml").read_text()
    text = text.replace('reveal = "intersection"', 'reveal = "cardinality"')
    text = text.replace(
        'statistics = [{ party = "gp_federation", column = "hba1c", stat = "mean" }]', ""
    )
    path = tmp_path / "trial_recruitment_linkage.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "backend",
    [PsiEcdh(), PsiEcdh(data_structure="gcs"), HashSha256(), HashSalted(), HmacKeyed()],
    ids=["psi-raw", "psi-gcs", "sha256", "salted", "hmac"],
)
def test_linkage_is_exact(backend, scenario_dir):
    out, ref, acc, _, _ = _linkage(backend, scenario_dir / "trial_recruitment_linkage.toml")
    assert ref.cardinality > 0
    assert acc.metrics["precision"] == 1.0
    assert acc.metrics["recall"] == 1.0
    assert out.statistics["hba1c_mean"] == pytest.approx(ref.statistics["hba1c_mean"], rel=1e-12)


@pytest.mark.parametrize("structure", ["raw", "gcs", "bloom"])
def test_psi_cardinality_is_exact_and_reveals_no_identifiers(structure, cardinality_card):
    out, ref, acc, problem, session = _linkage(PsiEcdh(data_structure=structure), cardinality_card)
    assert out.matches is None
    assert ref.cardinality > 0
    if structure == "bloom":  # a Bloom filter can only add false matches (rarely one)
        assert ref.cardinality <= out.cardinality <= ref.cardinality + 1
    else:
        assert out.cardinality == ref.cardinality
    assert acc.primary == "cardinality_error"
    leakage = evaluate_leakage(problem, session, PsiEcdh().capabilities)
    assert leakage["headline"]["worst_residual_risk"] < 0.05
    assert leakage["flags"] == []


def test_psi_claim_states_what_leaks():
    claim = PsiEcdh().capabilities.claim
    assert claim.formal
    assert "set sizes" in claim.declared_leakage
    assert "intersection cardinality" in claim.declared_leakage


def test_psi_rejects_bad_parameters():
    with pytest.raises(ValueError, match="allowed: raw, gcs, bloom"):
        PsiEcdh(data_structure="cuckoo").capabilities  # noqa: B018


def test_unsalted_tokens_are_recomputable_by_anyone(scenario_dir):
    _, _, _, problem, session = _linkage(
        HashSha256(), scenario_dir / "trial_recruitment_linkage.toml"
    )
    (payload,) = session.received_bytes(problem.task.recipient)
    gp = problem.party_data["gp_federation"]
    eligible = gp.query("age >= 40 and age <= 75 and hba1c > 48")["nhs_number"]
    # the other holder's identifiers are not on the wire, but their hashes are
    some = int(eligible.iloc[0])
    assert str(some).encode() not in payload
    assert hashlib.sha256(str(some).encode()).hexdigest().encode() in payload


def test_hashing_claims_are_heuristic():
    for backend in (HashSha256(), HashSalted(), HmacKeyed()):
        claim = backend.capabilities.claim
        assert not claim.formal
        assert claim.epsilon is None and claim.security_bits is None


def test_key_holder_sees_identifiers_and_the_claim_says_so(scenario_dir):
    _, _, _, problem, session = _linkage(
        HmacKeyed(), scenario_dir / "trial_recruitment_linkage.toml"
    )
    assert KEY_HOLDER in session.party_names
    leakage = evaluate_leakage(problem, session, HmacKeyed().capabilities)
    at_key_holder = next(
        a for a in leakage["attacks"] if a["observer"] == KEY_HOLDER and a["applicable"]
    )
    assert at_key_holder["residual_risk"] > 0.3
    # the exposure sample is drawn from every patient, not only the eligible ones the key
    # holder sees, so its interval straddles the flag's threshold; the identifiers it
    # receives are re-identified outright
    assert "reidentifies" in leakage["flags"]
    assert "claim_contradicted" not in leakage["flags"]  # "inputs" is declared
