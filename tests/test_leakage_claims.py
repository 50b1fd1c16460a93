"""Every claim against every attack, and flags on interval bounds.

The caps are checked against their closed forms; backends whose claim their output
contradicts (tests/false_claims.py) are installed by import target, as a supplier's
plugin is, and run through :func:`pets.run`, each party in its own process: each must
end with ``claim_contradicted`` naming the attack that shows it. Honest built-ins, run
the same way, must not.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

import pets
from pets.api import Claim
from pets.backends.plaintext import Plaintext
from pets.leakage import evaluate_leakage, rate_result
from pets.leakage.claims import (
    ClaimCheck,
    auc_cap,
    balanced_accuracy_cap,
    check_claim,
    epsilon_rate_cap,
    max_advantage,
)
from pets.registry import Registry

from conftest import SCENARIOS, attack_context
from false_claims import EPSILON_ONE, FALSE_CLAIMS

ANONYMOUS_NOTHING = Claim(formal=True, declared_leakage=())


def test_caps_match_their_closed_forms():
    for eps in (0.1, 1.0, 5.0):
        e = math.exp(eps)
        assert max_advantage(eps) == pytest.approx((e - 1) / (e + 1))
        assert balanced_accuracy_cap(eps) == pytest.approx(e / (1 + e))
        # with delta = 0 the largest AUC is the balanced-accuracy cap, e^eps / (1 + e^eps)
        assert auc_cap(eps) == pytest.approx(e / (1 + e))
        assert auc_cap(eps, 1e-6) == pytest.approx(auc_cap(eps), abs=1e-5)
        assert auc_cap(eps, 0.05) > auc_cap(eps)
        # a control of one half: the bound through the complement is the tighter one
        assert epsilon_rate_cap(0.5, eps) == pytest.approx(min(1, e / 2, 1 - 0.5 / e))
    assert epsilon_rate_cap(0.01, 1.0) == pytest.approx(math.e * 0.01)
    assert epsilon_rate_cap(0.5, 50.0) == 1.0
    assert max_advantage(1.0, 0.5) == pytest.approx((math.e - 1 + 1) / (math.e + 1))


def _attack(attack, successes, trials, *, baseline=0.5, control=None, **extra):
    return rate_result(
        attack,
        "A1",
        "analyst",
        successes=successes,
        trials=trials,
        baseline=baseline,
        control=control,
        **extra,
    )


def _result(*args, **kwargs):
    return _attack(*args, **kwargs).to_dict()


def test_an_epsilon_claim_caps_every_attack_by_the_interval_lower_end():
    exact = _result("differencing", 40, 40, control=0.5, control_trials=40)
    claim = Claim(epsilon=1.0, delta=0.0, formal=True)
    (check,) = check_claim(claim, [exact])
    assert check.claim == "epsilon" and check.contradicted
    assert check.bound == pytest.approx(exact["ci_low"])  # 0.912, not the point 1.0
    assert check.cap == pytest.approx(epsilon_rate_cap(check.reference, 1.0))
    assert check.reference > 0.5  # the control's upper end, not its point
    # the same attack does not contradict a claim of epsilon 3, which allows it
    assert not check_claim(Claim(epsilon=3.0, formal=True), [exact])[0].contradicted
    # membership scored as balanced accuracy: 0.99 of 400 against e / (1 + e) = 0.73
    member = _result("membership_inference", 396, 400, auc=1.0)
    (check,) = check_claim(claim, [member])
    assert check.statistic == "balanced_accuracy" and check.contradicted
    assert check.cap == pytest.approx(balanced_accuracy_cap(1.0))
    # noise around the control is no contradiction even at a small epsilon
    noisy = _result("differencing", 26, 40, control=0.45, control_trials=40)
    assert not check_claim(Claim(epsilon=0.1, formal=True), [noisy])[0].contradicted
    # model extraction recovers the supplier's weights, not a patient: epsilon does not cap it
    extracted = _result("model_extraction", 14, 14, baseline=0.0, control=0.0)
    assert check_claim(Claim(epsilon=0.1, formal=True), [extracted]) == []


def test_declared_leakage_caps_what_it_does_not_declare():
    reidentified = _result("dictionary_reidentification", 200, 200, baseline=0.0, control=0.0)
    (check,) = check_claim(ANONYMOUS_NOTHING, [reidentified])
    assert check.claim == "declared_leakage" and check.contradicted
    assert "nothing" in check.basis
    # declared pseudonymised identifiers admit it; so does an informal claim (no check)
    assert (
        check_claim(
            Claim(formal=True, declared_leakage=("pseudonymised identifiers",)), [reidentified]
        )
        == []
    )
    assert check_claim(Claim(formal=False, declared_leakage=()), [reidentified]) == []
    # an exact aggregate's differencing is what "output" declares; re-identification is not
    differencing = _result("differencing", 40, 40, control=0.5, control_trials=40)
    output_only = Claim(formal=True, declared_leakage=("output",))
    assert check_claim(output_only, [differencing]) == []
    assert check_claim(output_only, [reidentified])[0].contradicted
    # nothing declared: no attack above its control
    assert check_claim(ANONYMOUS_NOTHING, [differencing])[0].contradicted
    at_control = _result("differencing", 21, 40, control=0.5, control_trials=40)
    assert not check_claim(ANONYMOUS_NOTHING, [at_control])[0].contradicted


def test_noise_of_no_stated_size_declares_nothing():
    """A supplier declaring "noisy output" without an epsilon, with an exact output,
    cannot use the word to admit differencing."""
    exact = _result("differencing", 40, 40, control=0.5, control_trials=40)
    noisy_words = Claim(formal=True, declared_leakage=("noisy output", "noisy model updates"))
    (check,) = check_claim(noisy_words, [exact])
    assert check.claim == "declared_leakage" and check.contradicted
    updates = _result("update_reconstruction", 560, 560, baseline=0.5, control=0.5)
    assert check_claim(noisy_words, [updates])[0].contradicted
    # with an epsilon the same words admit the channel, and the epsilon caps it
    (check,) = check_claim(replace(noisy_words, epsilon=1.0), [exact])
    assert check.claim == "epsilon" and check.contradicted


def test_a_dp_curator_that_declares_inputs_is_not_capped_by_epsilon_there():
    exposed = _result("transcript_exposure", 100, 100, baseline=0.0, control=0.0)
    central = Claim(epsilon=1.0, formal=True, declared_leakage=("inputs", "output"))
    assert check_claim(central, [exposed]) == []
    local = Claim(epsilon=1.0, formal=True, declared_leakage=("output",))
    assert {c.claim for c in check_claim(local, [exposed]) if c.contradicted} == {
        "declared_leakage",
        "epsilon",
    }


def test_flags_need_the_lower_end_above_the_threshold(scenario_dir):
    """A residual risk of 0.6 on 40 targets (interval reaching below 0.5) raises no flag;
    the same rate on 2,000 targets does."""
    context = attack_context(Plaintext, "multi_site_prevalence", scenario_dir, 1500)

    def family(successes, trials):
        return lambda _: [_attack("differencing", successes, trials, control=0.5)]

    few = evaluate_leakage(
        context.problem,
        context.session,
        Plaintext().capabilities,
        families=[("differencing", family(32, 40))],
    )
    (result,) = few["attacks"]
    assert result["residual_risk"] == pytest.approx(0.6)
    assert result["residual_risk_low"] < 0.5 < result["residual_risk_high"]
    assert "reveals_individuals" not in few["flags"]
    assert few["headline"]["worst_residual_risk_low"] == result["residual_risk_low"]
    many = evaluate_leakage(
        context.problem,
        context.session,
        Plaintext().capabilities,
        families=[("differencing", family(1600, 2000))],
    )
    assert "reveals_individuals" in many["flags"]


def _registry() -> Registry:
    registry = Registry.from_entry_points()
    for name, target in FALSE_CLAIMS.items():
        registry.add(name, target)
    return registry


def _run(tmp_path, scenario, backends, size=None, params=None):
    frame = pets.run(
        [scenario],
        backends,
        size=size,
        quick=size is None,
        params=params,
        out=tmp_path / scenario,
        registry=_registry(),
        scenario_dir=SCENARIOS,
        jobs=2,
        progress=False,
    )
    assert (frame["status"] == "ok").all(), frame[["backend", "error"]].to_string()
    return frame


def _contradictions(row) -> list[ClaimCheck]:
    """The typed contradictions, read back from the attacks in the flat frame."""
    out = []
    for a in json.loads(row["leakage.attacks"]):
        for c in a.get("claim_checks", []):
            if c["contradicted"]:
                out.append(
                    ClaimCheck.from_dict(
                        {
                            **c,
                            "attack": a["attack"],
                            "observer": a["observer"],
                            "attacker": a["attacker"],
                        }
                    )
                )
    return out


@pytest.fixture(scope="module")
def false_releases(tmp_path_factory):
    names = ["anonymous_extract", "anonymous_jitter", "epsilon_extract", "epsilon_jitter"]
    return _run(tmp_path_factory.mktemp("releases"), "research_data_release", names)


@pytest.mark.parametrize("backend", ["anonymous_extract", "anonymous_jitter"])
def test_formal_anonymity_with_real_rows_is_contradicted(false_releases, backend):
    row = false_releases.set_index("backend").loc[backend]
    assert "claim_contradicted" in json.loads(row["leakage.flags"])
    found = {c.attack for c in _contradictions(row) if c.claim == "declared_leakage"}
    # exact copies are singled out; the jittered ones are still members, linked, inferred
    expected = {"membership_inference", "linkability", "attribute_inference"}
    if backend == "anonymous_extract":
        expected.add("singling_out")
    assert expected <= found, found
    for c in _contradictions(row):
        assert c.bound > c.cap
    for a in json.loads(row["leakage.attacks"]):  # each result carries its own checks only
        parts = [c["claim"] for c in a.get("claim_checks", [])]
        assert len(parts) == len(set(parts)), a["attack"]
    assert "membership_inference@researcher" in row["leakage.claim_contradicted_by"]


@pytest.mark.parametrize("backend", ["epsilon_extract", "epsilon_jitter"])
def test_epsilon_one_with_near_certain_membership_is_contradicted(false_releases, backend):
    row = false_releases.set_index("backend").loc[backend]
    assert "claim_contradicted" in json.loads(row["leakage.flags"])
    (member,) = [
        c
        for c in _contradictions(row)
        if c.claim == "epsilon" and c.attack == "membership_inference"
    ]
    assert member.cap == pytest.approx(balanced_accuracy_cap(1.0, EPSILON_ONE.delta))
    assert member.bound > 0.9
    attacks = json.loads(row["leakage.attacks"])
    (scored,) = [a for a in attacks if a["attack"] == "membership_inference"]
    assert scored["auc"] > auc_cap(1.0, EPSILON_ONE.delta) + 0.2


def test_formal_anonymity_with_unsalted_hashes_is_contradicted(tmp_path):
    frame = _run(tmp_path, "trial_recruitment_linkage", ["anonymous_tokens", "psi-ecdh"])
    rows = frame.set_index("backend")
    found = _contradictions(rows.loc["anonymous_tokens"])
    reidentified = [c for c in found if c.attack == "dictionary_reidentification"]
    assert reidentified and all(c.bound > 0.9 and c.cap < 0.05 for c in reidentified)
    # the honest PSI, with the same formal claim's machinery, is not contradicted
    assert "claim_contradicted" not in json.loads(rows.loc["psi-ecdh", "leakage.flags"])


def test_epsilon_one_with_exact_answers_is_contradicted(tmp_path):
    sums = _run(tmp_path, "multi_site_prevalence", ["epsilon_exact_sums"]).iloc[0]
    found = {(c.claim, c.attack) for c in _contradictions(sums)}
    assert ("epsilon", "differencing") in found, found
    # no party saw another's rows: the contradiction is the output, not the transcript
    assert not any(a == "transcript_exposure" for _, a in found)
    answers = _run(tmp_path, "tre_queries", ["epsilon_exact_answers"]).iloc[0]
    found = {(c.claim, c.attack) for c in _contradictions(answers)}
    assert {("epsilon", "reconstruction"), ("epsilon", "differencing")} <= found, found


#: Honest built-ins at their cards' quick sizes: (card, backends, fixed parameters).
#: opendp at epsilon 2 once raised reveals_individuals on a point estimate. The query
#: card's 60 s of audits run under ``-m slow``; the default suite checks an honest
#: per-query budget in tests/test_leakage_audit.py.
HONEST = (
    pytest.param(
        ("multi_site_prevalence", ["opendp", "paillier"], {"epsilon": 2.0}), id="prevalence"
    ),
    pytest.param(
        ("federated_risk_model", ["fedavg-dp", "diffprivlib"], {"epsilon": 1.0}), id="federated"
    ),
    pytest.param(
        ("research_data_release", ["synth-dp", "synth-copula"], {"epsilon": 1.0}), id="release"
    ),
    pytest.param(
        ("tre_queries", ["opendp", "sdc-round"], {"query_epsilon": 0.25}),
        id="queries",
        marks=pytest.mark.slow,
    ),
)


@pytest.fixture(scope="module", params=HONEST)
def honest(request, tmp_path_factory):
    card, backends, params = request.param
    frame = pets.run(
        [card],
        backends,
        quick=True,
        params=params,
        out=tmp_path_factory.mktemp(f"honest-{card}"),
        registry=Registry.from_entry_points(),
        scenario_dir=SCENARIOS,
        jobs=2,
        progress=False,
    )
    return [row for _, row in frame.iterrows()]


def test_honest_built_ins_contradict_no_claim(honest):
    for row in honest:
        assert row["status"] == "ok", (row["backend"], row["error"])
        label = f"{row['scenario']} {row['backend']} {row['params']}"
        assert "claim_contradicted" not in json.loads(row["leakage.flags"]), label
        attacks = json.loads(row["leakage.attacks"])
        checks = [c for a in attacks for c in a.get("claim_checks", [])]
        assert checks, f"{label}: no attack was checked against the claim"
        assert not any(c["contradicted"] for c in checks), label
        assert all(c["bound"] <= c["cap"] for c in checks), label


def test_honest_built_ins_raise_flags_only_on_interval_lower_ends(honest):
    from pets.leakage import RISK_FLAGS
    from pets.leakage.claims import EXPOSURE_ATTACKS

    for row in honest:
        label = f"{row['scenario']} {row['backend']} {row['params']}"
        flags = set(json.loads(row["leakage.flags"]))
        attacks = json.loads(row["leakage.attacks"])
        for a in attacks:
            if a.get("residual_risk_low") is None:
                continue
            assert a["residual_risk_low"] <= a["residual_risk"] <= a["residual_risk_high"]
            if a["attack"] in RISK_FLAGS and a["residual_risk_low"] > 0.5:
                assert RISK_FLAGS[a["attack"]] in flags, label
        raises = {**RISK_FLAGS, **dict.fromkeys(EXPOSURE_ATTACKS, "exposes_inputs")}
        for name in flags:
            raised_by = [
                a
                for a in attacks
                if raises.get(a["attack"]) == name and a.get("residual_risk_low", 0) > 0.5
            ]
            assert raised_by, f"{label}: {name} without an attack whose lower end passes 0.5"
        if row["backend"] == "paillier":
            # an exact secure aggregate: differencing reads patients off the published
            # table, a true risk that its claim declares ("output"), so no contradiction
            assert "reveals_individuals" in flags, label
        else:
            # DP and synthetic backends at these budgets, and rounding: no risk flag
            assert not flags & set(RISK_FLAGS.values()), (label, flags)
