"""The conformance kit: every built-in backend passes it (dogfooding), and deliberately
non-conforming backends fail it with messages that say what to fix."""

from __future__ import annotations

import json

import pytest

from pets.cli import main
from pets.registry import Registry
from pets.testing import CheckResult, Toybox, check_backend, parametrize_with_checks

from conftest import make_registry
from misbehaving import KeyInConstructor, MalformedClaim, SecretlyPlain, TooLittleNoise

BUILT_INS = Registry.from_entry_points()
#: Built-ins whose parties run in an environment of their own: tests/test_syft.py runs
#: the kit on them there, once it has built the environment.
OWN_ENVIRONMENT = ("syft",)


@parametrize_with_checks([n for n in BUILT_INS.names() if n not in OWN_ENVIRONMENT])
def test_every_built_in_backend_passes_the_kit(backend, check):
    check(backend)


@pytest.fixture(scope="module")
def toys() -> Toybox:
    return Toybox(preload=("misbehaving",))


def _by_check(results: list[CheckResult]) -> dict[str, CheckResult]:
    assert all(isinstance(r, CheckResult) for r in results)
    return {r.check: r for r in results}


def test_a_key_made_in_the_constructor_fails_with_what_to_fix(toys):
    results = _by_check(check_backend(KeyInConstructor(), toys=toys))
    work = results["check_constructor_does_no_work"]
    assert work.status == "failed"
    assert "_key" in work.message and "run_party" in work.message


def test_plaintext_rows_under_an_input_privacy_claim_fail_the_transcript_check(toys):
    results = _by_check(check_backend(SecretlyPlain(), toys=toys))
    transcript = results["check_transcript_consistent_with_claim"]
    assert transcript.status == "failed"
    assert "does not declare 'inputs'" in transcript.message
    assert "encrypt" in transcript.message
    # it also releases other parties' NHS numbers without declaring identifiers
    assert results["check_outputs_hold_no_identifiers"].status == "failed"
    # and the checks that hold for it still pass: the kit is not failing everything
    assert results["check_declared_kinds_run"].status == "passed"


def test_per_cell_sums_under_an_input_privacy_claim_fail_the_transcript_check(toys):
    from misbehaving import LocalSums

    transcript = _by_check(check_backend(LocalSums(), toys=toys))[
        "check_transcript_consistent_with_claim"
    ]
    assert transcript.status == "failed"
    assert "summaries" in transcript.message


def test_a_malformed_dp_claim_fails_naming_the_missing_field(toys):
    results = _by_check(check_backend(MalformedClaim(), toys=toys))
    dp = results["check_dp_claim_names_privacy_unit"]
    assert dp.status == "failed"
    assert "privacy_unit='patient'" in dp.message


def test_too_little_noise_is_caught_by_the_quick_dp_audit(toys):
    results = _by_check(check_backend(TooLittleNoise(epsilon=0.5), toys=toys))
    audit = results["check_dp_audit_agrees_with_claim"]
    assert audit.status == "failed", audit
    assert "above the claimed 0.5" in audit.message


def test_undeclared_kinds_that_do_not_raise_unsupported_fail(toys):
    from misbehaving import LocalSums

    results = _by_check(check_backend(LocalSums(), toys=toys))
    unsupported = results["check_undeclared_kinds_unsupported"]
    assert unsupported.status == "failed"
    assert "UnsupportedTask" in unsupported.message


def test_pets_check_prints_a_table_and_exits_1_on_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PETS_CACHE", str(tmp_path))
    registry = make_registry()
    registry.add("key_in_constructor", "misbehaving:KeyInConstructor")
    monkeypatch.setattr(Registry, "from_entry_points", classmethod(lambda cls: registry))
    assert main(["check", "key_in_constructor"]) == 1
    out = capsys.readouterr().out
    assert "check_constructor_does_no_work" in out and "failed" in out
    assert "verdict: FAILED" in out
    (verdict,) = (tmp_path / "verdicts").glob("*.json")
    assert json.loads(verdict.read_text())["passed"] is False


def test_pets_check_exits_2_for_an_unknown_name(capsys):
    assert main(["check", "no-such-backend"]) == 2
    assert "unknown backend 'no-such-backend'" in capsys.readouterr().err


def test_pets_check_passes_and_records_a_verdict_the_worker_reads(tmp_path, monkeypatch):
    from pets.testing.verdicts import has_passing_verdict

    monkeypatch.setenv("PETS_CACHE", str(tmp_path))
    target = BUILT_INS.target("sdc-round")
    assert not has_passing_verdict(target, {"base": 5})
    assert main(["check", "sdc-round"]) == 0
    assert has_passing_verdict(target, {"base": 5})
    assert not has_passing_verdict(target, {"base": 10})  # other parameters: unverified


def test_a_record_is_verified_only_after_pets_check_passed_its_configuration(tmp_path, monkeypatch):
    import pets

    monkeypatch.setenv("PETS_CACHE", str(tmp_path / "cache"))

    def run(out: str):
        frame = pets.run(
            ["multi_site_prevalence"],
            backends=["sdc-round"],
            size=1500,
            leakage="off",
            out=tmp_path / out,
            registry=BUILT_INS,
            progress=False,
        )
        return frame.iloc[0]

    assert not bool(run("before")["verified"])
    assert main(["check", "sdc-round"]) == 0
    row = run("after")
    assert row["status"] == "ok" and bool(row["verified"]) is True


def test_every_built_in_with_requirements_is_checked_in_its_environment_elsewhere():
    declared = [n for n in BUILT_INS.names() if BUILT_INS.load(n)().capabilities.requirements]
    assert declared == list(OWN_ENVIRONMENT)
