"""Linkage attacks (dictionary re-identification, cardinality probing) and the
vectorised transcript search, on real runs of the linkage card's backends."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pets.backends.hashing import HashSalted, HashSha256, HmacKeyed
from pets.backends.plaintext import Plaintext
from pets.backends.psi import PsiEcdh
from pets.data import nhs_number_is_valid
from pets.leakage import EFFORT, AttackContext, evaluate_leakage, linkage, transcript
from pets.scenarios import build_problem, load_scenario
from pets.session import Session
from pets.tasks.linkage import candidate_identifiers
from pets.wire import pack

from conftest import attack_context

CARD = "trial_recruitment_linkage"
QUICK = 20_000


def _context(
    backend_cls, scenario_dir, *, size=QUICK, attackers=("A0", "A1", "A2", "A3"), effort=None
):
    return attack_context(backend_cls, CARD, scenario_dir, size, attackers=attackers, effort=effort)


def _by_observer(results, attack):
    return {r.observer: r for r in results if r.attack == attack}


@pytest.fixture
def cardinality_dir(tmp_path, scenario_dir):
    """The linkage card with ``reveal = "cardinality"`` and no statistics over the other
    holder's columns (which PSI could not give without revealing the matches)."""
    text = (scenario_dir / f"{CARD}.toml").read_text()
    assert 'reveal = "intersection"' in text
    text = text.replace('reveal = "intersection"', 'reveal = "cardinality"')
    text = "\n".join(
        "statistics = []" if line.startswith("statistics =") else line for line in text.splitlines()
    )
    (tmp_path / f"{CARD}.toml").write_text(text)
    return tmp_path


# -- the dictionary --------------------------------------------------------------------
def test_dictionary_holds_every_number_and_as_many_valid_decoys(scenario_dir):
    problem = build_problem(load_scenario(CARD, scenario_dir), 4000, seed=0)
    dictionary = problem.evaluation["dictionary"]
    held = np.unique(np.concatenate([f["nhs_number"] for f in problem.party_data.values()]))
    assert np.isin(held, dictionary).all()
    assert dictionary.size == 2 * held.size  # the other party's list is not handed over
    assert nhs_number_is_valid(dictionary).all()
    assert np.unique(dictionary).size == dictionary.size
    again = candidate_identifiers([held], np.random.default_rng(1), decoys=10)
    assert again.size == held.size + 10


# -- dictionary re-identification -------------------------------------------------------
@pytest.mark.parametrize(
    ("backend_cls", "scheme"),
    [(HashSha256, "sha256"), (HashSalted, "sha256(salt0+id)")],
)
def test_unkeyed_hashes_are_reversed_by_the_recipient(backend_cls, scheme, scenario_dir):
    context = _context(backend_cls, scenario_dir)
    results = linkage.attack(context)
    recipient = _by_observer(results, "dictionary_reidentification")["cancer_registry"]
    assert recipient.success_rate >= 0.9
    assert recipient.ci_low >= 0.9
    assert recipient.control_rate < 0.01  # decoys nobody holds are not "recovered"
    assert recipient.residual_risk >= 0.9
    assert recipient.extra["by_scheme"][scheme] >= 0.9
    assert recipient.extra["by_scheme"]["plain"] == 0.0
    assert recipient.trials > 100
    record = json.dumps(recipient.to_dict())  # JSON-ready, and no identifier in it
    assert not any(str(v) in record for v in context.problem.evaluation["dictionary"][:50])
    probing = _by_observer(results, "cardinality_probing")["cancer_registry"]
    assert probing.applicable is False and "already learns" in probing.note


@pytest.mark.parametrize("backend_cls", [HmacKeyed, PsiEcdh])
def test_keyed_hash_and_psi_resist_the_recipients_dictionary(backend_cls, scenario_dir):
    context = _context(backend_cls, scenario_dir)
    results = _by_observer(
        linkage.dictionary_reidentification(context), "dictionary_reidentification"
    )
    for observer in ("cancer_registry", "gp_federation"):
        assert results[observer].applicable
        assert results[observer].success_rate < 0.01
        assert results[observer].ci_high < 0.05
    if backend_cls is HmacKeyed:  # the key holder receives every number in the clear
        assert results["linkage_key_holder"].success_rate == 1.0
        assert results["linkage_key_holder"].extra["by_scheme"] == {"plain": 1.0}


def test_plaintext_recipient_recovers_numbers_in_the_clear(scenario_dir):
    results = _by_observer(
        linkage.dictionary_reidentification(_context(Plaintext, scenario_dir)),
        "dictionary_reidentification",
    )
    assert results["cancer_registry"].extra["by_scheme"]["plain"] == 1.0
    assert results["gp_federation"].applicable is False  # it received nothing


def test_each_observer_tries_its_own_salts(scenario_dir):
    """Two parties each receive the other's numbers hashed under a different salt."""
    problem = build_problem(load_scenario(CARD, scenario_dir), 4000, seed=0)
    session = Session(problem.task.parties, problem.party_data)
    salts = {"cancer_registry": b"first salt", "gp_federation": b"another salt"}
    for sender, receiver in (
        ("gp_federation", "cancer_registry"),
        ("cancer_registry", "gp_federation"),
    ):
        ids = problem.party_data[sender]["nhs_number"]
        tokens = [hashlib.sha1(salts[receiver] + str(v).encode()).hexdigest() for v in ids]
        with session.as_party(sender) as party:
            party.send(receiver, salts[receiver], tag="salt")
            party.send(receiver, "\n".join(tokens).encode(), tag="tokens")
    context = AttackContext(
        problem=problem,
        session=session,
        output=None,
        claim=HashSalted().capabilities.claim,
        attackers=("A2",),
        effort=EFFORT["fast"],
        rng=np.random.default_rng(0),
    )
    results = _by_observer(linkage.attack(context), "dictionary_reidentification")
    for observer in salts:
        assert results[observer].success_rate == 1.0
        assert results[observer].extra["by_scheme"]["sha1(salt0+id)"] == 1.0
        assert results[observer].control_rate == 0.0


def test_hex_tokens_cut_back_to_back_digests():
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(5)]
    run = ("".join(digests)).upper().encode()
    found = linkage.hex_tokens(b"\x00\x01" + run + b"\xff" + b"a" + digests[0][:31].encode())
    assert set(digests) <= found
    framed = pack(pd.DataFrame({"t": digests, "x": np.arange(5.0)}))
    assert set(digests) <= linkage.wire_strings([framed, b"not a message"])


# -- cardinality probing ----------------------------------------------------------------
#: Twenty probes, whatever a rerun costs: each rerun starts the parties' processes afresh.
PROBES = replace(EFFORT["fast"], targets=20, probe_seconds=600)


@pytest.mark.parametrize("backend_cls", [HashSha256, PsiEcdh])
def test_repeated_cardinalities_reveal_membership(backend_cls, cardinality_dir):
    context = _context(backend_cls, cardinality_dir, effort=PROBES)
    assert context.output.matches is None  # the recipient learns only a count
    (result,) = linkage.cardinality_probing(context)
    assert result.applicable
    assert result.trials >= 20 and result.trials % 2 == 0
    assert result.success_rate >= 0.9
    assert result.baseline == 0.5
    assert result.residual_risk >= 0.8
    assert context.reruns == result.trials + 1  # one base run, one run per probe


class _CountBlind(HashSha256):
    """Reports no intersection at all: a cardinality that carries no information."""

    def run_party(self, context):
        out = super().run_party(context)
        return None if out is None else replace(out, cardinality=0)


def test_probing_an_uninformative_count_scores_the_baseline(cardinality_dir):
    context = _context(_CountBlind, cardinality_dir)
    (result,) = linkage.cardinality_probing(context)
    assert result.success_rate == 0.5  # balanced targets: "never a member" is half right
    assert result.residual_risk == 0.0


def test_probing_without_a_rerun_oracle_says_so(cardinality_dir):
    context = replace(_context(HashSha256, cardinality_dir), rerun=None)
    (result,) = linkage.cardinality_probing(context)
    assert result.applicable is False and "rerun" in result.note


def test_linkage_attacks_need_linkage_and_a2(scenario_dir):
    assert linkage.attack(_context(HashSha256, scenario_dir, attackers=("A1",))) == []
    problem = build_problem(load_scenario("multi_site_prevalence", scenario_dir), 1000, seed=0)
    other = AttackContext(
        problem=problem,
        session=Session(problem.task.parties, problem.party_data),
        output=None,
        claim=HashSha256().capabilities.claim,
        attackers=("A2",),
        effort=EFFORT["fast"],
        rng=np.random.default_rng(0),
    )
    assert linkage.attack(other) == []


# -- transcript exposure, vectorised ---------------------------------------------------
def test_scan_finds_patterns_at_every_alignment():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 2**63, size=9, dtype=np.int64).astype(np.uint64)
    hay = bytearray(rng.bytes(1000))
    for k, v in enumerate(values[:8]):  # one pattern starting at each offset modulo 8
        at = 100 * k + k
        hay[at : at + 8] = int(v).to_bytes(8, "little")
    found = transcript.scan(bytes(hay), values.tolist(), 8)
    assert found == set(values[:8].tolist())
    small = [int.from_bytes(bytes(hay[501:505]), "little"), 0xDEADBEEF]
    assert transcript.scan(bytes(hay), small, 4) >= {small[0]}


def test_text_is_matched_as_whole_numbers():
    tokens = transcript.text_tokens(b'{"a": [4123456789.0, 61.25, -3.5e-05], "b": "x77y"}')
    assert {b"4123456789.0", b"61.25", b"-3.5e-05", b"77"} <= tokens
    ids = np.asarray([4123456789, 4123456788], dtype=np.int64)
    results = transcript.transcript_exposure(
        {"reader": [b"[4123456789.0, 41234567881]"]}, {"holder": {"nhs_number": ids}}
    )
    # the first as <n>.0; the second only inside a longer run of digits, which is no match
    assert results[0]["by_column"]["holder.nhs_number"] == 0.5


def test_transcript_attack_returns_results_per_party(scenario_dir):
    context = _context(HmacKeyed, scenario_dir)
    results = {r.observer: r for r in transcript.attack(context)}
    assert set(results) == {"cancer_registry", "gp_federation", "linkage_key_holder"}
    holder = results["linkage_key_holder"]
    assert holder.attack == "transcript_exposure" and holder.attacker == "A2"
    assert holder.success_rate > 0.5  # the registry's numbers reach it in the clear
    assert holder.extra["bytes_searched"] > 0
    assert set(holder.extra["by_column"]) == {
        "cancer_registry.nhs_number",
        "gp_federation.nhs_number",
    }
    assert results["cancer_registry"].success_rate == 0.0

    plain = _context(Plaintext, scenario_dir)
    leak = evaluate_leakage(
        plain.problem,
        plain.session,
        Plaintext().capabilities,
        attackers=("A1",),  # no A2 on the card: transcript exposure runs all the same
        families=[("transcript_exposure", transcript.attack), ("linkage", linkage.attack)],
    )
    assert leak["flags"] == ["exposes_inputs"]  # plaintext declares its inputs leak
    assert {a["attack"] for a in leak["attacks"]} == {"transcript_exposure"}
