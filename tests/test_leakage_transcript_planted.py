"""Leaks planted in backends installed the way a supplier's plugin is (by import target,
tests/planted_transcript.py), each in an encoding the row search or the plain-hex
dictionary did not read, must be flagged; the honest built-ins beside them must not.

Also the decoders on their own: every encoding the identifier and summary searches
claim to read, and the chance matches they must not make.
"""

from __future__ import annotations

import base64
import hashlib
import json

import numpy as np
import pytest

import pets
from pets.leakage import distinguishing, identifiers, intermediates

from conftest import SCENARIOS, make_registry

AGGREGATE_LEAKS = {
    "totals_json": ("TotalsJson", "cells.sums"),
    "totals_json_wordplay": ("TotalsJsonWordplay", "cells.sums"),
    "totals_packed_be": ("TotalsPackedBE", "cells.sums"),
    "shares_and_totals": ("SharesAndTotals", "totals.sums"),
}
AGGREGATE_OBFUSCATED = {"totals_xored": "TotalsXored"}
AGGREGATE_HONEST = ("mpyc", "paillier", "tenseal-bfv")

LINKAGE_LEAKS = {
    "upper_hex_dashed": ("UpperHexDashed", "sha256(dashed)"),
    "base64_sha256": ("Base64Sha256", "sha256"),
    "truncated_sha1": ("TruncatedSha1", "sha1(spaced)"),
    "raw_blake2": ("RawBlake2", "blake2b-256(int64le)"),
    "salt_in_clear": ("SaltInClear", "md5(id+salt1)"),
}
LINKAGE_HONEST = ("hmac-keyed", "psi-ecdh")

TRAIN_LEAKS = {"local_models_json": ("LocalModelsJson", "local_model")}
TRAIN_HONEST = ("fedavg", "fedavg-secagg")


def _registry():
    reg = make_registry()
    for leaks in (AGGREGATE_LEAKS, LINKAGE_LEAKS, TRAIN_LEAKS):
        for name, (cls, _) in leaks.items():
            reg.add(name, f"planted_transcript:{cls}")
    for name, cls in AGGREGATE_OBFUSCATED.items():
        reg.add(name, f"planted_transcript:{cls}")
    return reg


def _run(tmp_path_factory, card, backends, size, leakage="fast"):
    frame = pets.run(
        [card],
        list(backends),
        size=size,
        out=tmp_path_factory.mktemp(card),
        registry=_registry(),
        scenario_dir=SCENARIOS,
        timeout=300,
        jobs=2,
        leakage=leakage,
        progress=False,
    ).set_index("backend")
    assert (frame["status"] == "ok").all(), frame["error"].tolist()
    return frame


def _attacks(frame, backend, attack):
    return [a for a in json.loads(frame.loc[backend, "leakage.attacks"]) if a["attack"] == attack]


def _flags(frame, backend):
    return json.loads(frame.loc[backend, "leakage.flags"])


@pytest.fixture(scope="module")
def aggregate(tmp_path_factory):
    return _run(
        tmp_path_factory,
        "multi_site_prevalence",
        [*AGGREGATE_LEAKS, *AGGREGATE_OBFUSCATED, *AGGREGATE_HONEST],
        3000,
    )


@pytest.fixture(scope="module")
def linkage(tmp_path_factory):
    return _run(
        tmp_path_factory, "trial_recruitment_linkage", [*LINKAGE_LEAKS, *LINKAGE_HONEST], 3000
    )


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    return _run(tmp_path_factory, "federated_risk_model", [*TRAIN_LEAKS, *TRAIN_HONEST], 4000)


# -- summaries in the clear --------------------------------------------------------------
@pytest.mark.parametrize("backend", sorted(AGGREGATE_LEAKS))
def test_other_parties_totals_in_any_encoding_are_flagged(aggregate, backend):
    found = {a["observer"]: a for a in _attacks(aggregate, backend, "intermediate_exposure")}
    at = found["aggregator"]
    assert at["residual_risk"] >= 0.9 and at["ci_low"] > 0.5
    assert AGGREGATE_LEAKS[backend][1] in at["family"].split("+")
    assert at["by_family"][AGGREGATE_LEAKS[backend][1]] == 1.0
    assert at["control_rate"] < 0.05
    # no row crossed the channel: the row search alone sees nothing
    rows = _attacks(aggregate, backend, "transcript_exposure")
    assert all(a.get("residual_risk", 0) < 0.5 for a in rows)
    flags = _flags(aggregate, backend)
    assert "exposes_inputs" in flags and "claim_contradicted" in flags


@pytest.mark.parametrize("backend", sorted(AGGREGATE_LEAKS))
def test_the_aggregators_view_tells_apart_inputs_with_the_same_output(aggregate, backend):
    found = {a["observer"]: a for a in _attacks(aggregate, backend, "transcript_distinguishing")}
    assert found["aggregator"]["success_rate"] == 1.0
    assert found["aggregator"]["residual_risk"] == 1.0
    assert found["analyst"]["residual_risk"] == 0.0  # it sees the same output either way


def test_totals_no_search_decodes_are_told_apart_by_the_rerun_views(aggregate):
    summaries = _attacks(aggregate, "totals_xored", "intermediate_exposure")
    assert all(a.get("residual_risk", 0) < 0.1 for a in summaries)  # the pad hides them
    found = {
        a["observer"]: a for a in _attacks(aggregate, "totals_xored", "transcript_distinguishing")
    }
    assert found["aggregator"]["success_rate"] == 1.0
    # four runs of each input told its views apart, so the harness ran twelve of each,
    # whose interval's lower end passes the flag's threshold
    assert found["aggregator"]["runs_per_input"] == 12
    flags = _flags(aggregate, "totals_xored")
    assert "exposes_inputs" in flags and "claim_contradicted" in flags


def test_the_additive_shares_themselves_show_the_recipient_nothing(aggregate):
    found = {
        a["observer"]: a for a in _attacks(aggregate, "shares_and_totals", "intermediate_exposure")
    }
    assert found["analyst"]["residual_risk"] < 0.1


@pytest.mark.parametrize("backend", AGGREGATE_HONEST)
def test_honest_he_and_mpc_aggregates_show_no_summary(aggregate, backend):
    found = _attacks(aggregate, backend, "intermediate_exposure")
    assert found and all(a.get("residual_risk", 0) < 0.1 for a in found)
    told = [a for a in _attacks(aggregate, backend, "transcript_distinguishing") if a["applicable"]]
    assert len(told) == 6 and all(a["residual_risk"] == 0.0 for a in told)
    assert "exposes_inputs" not in _flags(aggregate, backend)


def test_local_models_sent_in_the_clear_are_flagged(train):
    found = {
        a["observer"]: a for a in _attacks(train, "local_models_json", "intermediate_exposure")
    }
    assert found["aggregator"]["by_family"]["local_model"] == 1.0
    flags = _flags(train, "local_models_json")
    assert "exposes_inputs" in flags and "claim_contradicted" in flags


@pytest.mark.parametrize("backend", TRAIN_HONEST)
def test_honest_federated_training_shows_no_summary(train, backend):
    found = _attacks(train, backend, "intermediate_exposure")
    assert found and all(a.get("residual_risk", 0) < 0.1 for a in found)
    assert "exposes_inputs" not in _flags(train, backend)


# -- identifiers re-encoded ----------------------------------------------------------------
@pytest.mark.parametrize("backend", sorted(LINKAGE_LEAKS))
def test_reencoded_identifier_digests_are_reversed(linkage, backend):
    found = {a["observer"]: a for a in _attacks(linkage, backend, "dictionary_reidentification")}
    recipient = found["cancer_registry"]
    assert recipient["residual_risk"] >= 0.9 and recipient["ci_low"] > 0.5
    assert recipient["by_scheme"][LINKAGE_LEAKS[backend][1]] >= 0.9
    assert recipient["control_rate"] < 0.01
    assert "reidentifies" in _flags(linkage, backend)


@pytest.mark.parametrize("backend", LINKAGE_HONEST)
def test_keyed_and_psi_linkage_resist_the_normalised_dictionary(linkage, backend):
    found = {a["observer"]: a for a in _attacks(linkage, backend, "dictionary_reidentification")}
    for observer in ("cancer_registry", "gp_federation"):
        assert found[observer]["success_rate"] == 0.0
        assert found[observer]["control_rate"] == 0.0
    if backend == "psi-ecdh":  # (hmac-keyed's key holder sees every number, as it says)
        assert "reidentifies" not in _flags(linkage, backend)


# -- the decoders --------------------------------------------------------------------------
NUMBER = 4857773456
DIGEST = hashlib.sha256(str(NUMBER).encode()).digest()


@pytest.mark.parametrize(
    "written",
    [
        DIGEST.hex().encode(),
        DIGEST.hex().upper().encode(),
        base64.b64encode(DIGEST),
        base64.b64encode(DIGEST).rstrip(b"="),
        base64.urlsafe_b64encode(DIGEST),
        base64.urlsafe_b64encode(DIGEST).rstrip(b"="),
        b"\x00\x13" + DIGEST + b"\xff",  # raw, at an odd offset
        DIGEST.hex()[:8].encode(),  # truncated to 8 hex characters
        base64.b64encode(DIGEST[:6]),  # truncated to 6 bytes, base64
    ],
    ids=["hex", "HEX", "b64", "b64-nopad", "urlsafe", "urlsafe-nopad", "raw", "hex8", "b64-6"],
)
def test_every_digest_encoding_is_read(written):
    observed = identifiers.ObservedTokens(b'{"token": "' + written + b'", "n": 3}')
    other = hashlib.sha256(str(NUMBER + 1).encode()).digest()
    assert observed.match([DIGEST, other]).tolist() == [True, False]


def test_a_digest_shorter_than_four_bytes_is_not_read():
    observed = identifiers.ObservedTokens(b" " + DIGEST.hex()[:6].encode() + b" ")
    assert not observed.match([DIGEST]).any()


def test_grouped_numbers_are_read_and_longer_digit_runs_are_not():
    text = b"a 485 777 3456, b 485-777-3457; c 485.777.3458 d 1485 777 34590 e 485-777.3459"
    assert identifiers.written_numbers(text) == {4857773456, 4857773457, 4857773458}


def test_summaries_are_read_in_binary_and_text_encodings():
    values = np.array([4123.4, 0.16666666666666666, 123456.0, 61.2534])
    for payload in (
        values.astype(">f8").tobytes(),
        values.astype("<f4").tobytes(),
        json.dumps({"totals": values.tolist()}).encode(),
        (" ".join(f"{v:.6f}" for v in values) + " and padding text").encode(),
    ):
        assert intermediates._View([b"\x07" + payload]).found(values).all(), payload[:20]
    # 123456 is also found as a big-endian int32 (its bytes are not mostly zeros)
    assert intermediates._View([np.array([123456], ">i4").tobytes()]).found(values)[2]


def test_summary_search_makes_no_chance_matches():
    values = np.array([4123.4, 0.16666666666666666, 190.0, 61.2534])
    rounded = b"these figures are rounded too far: 4123 0.17 61.25 and more text"
    assert not intermediates._View([rounded]).found(values).any()
    # digits inside random bytes are not text; small integers' int32 bytes are not read
    noise = np.random.default_rng(0).bytes(1 << 20)
    small = np.array([190], "<i4").tobytes() + np.array([190], "<i8").tobytes()
    assert not intermediates._View([noise + small + b"190"]).found(values).any()


def _family(hits: int, trials: int) -> dict:
    return {"hits": hits, "trials": trials, "control_hits": 0, "control_trials": trials}


def test_two_chance_matches_in_small_families_are_not_scored_as_their_leak():
    """A float64 count's pattern is mostly zero bytes: after a frame's length field (six
    zero bytes) two random bytes complete it, so in a long view of ciphertexts a match
    or two turns up by chance (honest unpacked paillier: two counts of 24, 0.083)."""
    chance = {"totals.n": _family(1, 4), "margins.n": _family(1, 20), "cells.sums": _family(0, 900)}
    name, scored = intermediates._worst(chance)
    assert (scored["hits"], scored["trials"]) == (2, 924)  # every family, pooled
    leak = {**chance, "totals.n": _family(3, 4)}
    name, scored = intermediates._worst(leak)
    assert name == "totals.n" and (scored["hits"], scored["trials"]) == (3, 4)


def test_plain_quantities_are_not_searched():
    values = np.array([3.0, 99.0, 100.0, 0.5, 0.25, 0.125, 61.25, np.nan])
    assert intermediates.distinctive(values).tolist() == [
        False,
        False,
        True,
        False,
        False,
        True,
        True,
        False,
    ]


def test_distinguishing_reads_a_fixed_leak_among_fresh_randomness():
    rng = np.random.default_rng(0)

    def view(total: float) -> bytes:  # a fresh ciphertext-like blob, then one total
        return rng.bytes(4096) + np.float64(total).tobytes() + rng.bytes(64)

    leaky = ([view(4123.25) for _ in range(4)], [view(4127.5) for _ in range(4)])
    assert distinguishing.classify(*leaky) == 8
    # the same total in both inputs, or nothing fixed at all: every view is a tie
    assert (
        distinguishing.classify([view(1.5) for _ in range(4)], [view(1.5) for _ in range(4)]) == 0
    )
    random_floats = [rng.uniform(-1e9, 1e9, 512).tobytes() for _ in range(8)]
    assert distinguishing.classify(random_floats[:4], random_floats[4:]) <= 1


def test_swapped_inputs_keep_the_ideal_output_and_change_the_holdings():
    from pets.scenarios import build_problem, load_scenario
    from pets.tasks import TASK_KINDS, local_aggregate

    problem = build_problem(load_scenario("multi_site_prevalence", SCENARIOS), 3000, seed=0)
    first, second = distinguishing.swapped_inputs(problem, np.random.default_rng(0))
    kind = TASK_KINDS["aggregate"]
    a, b = kind.reference(first).table, kind.reference(second).table
    assert a.equals(b)  # bit for bit: the measures are quarters, sums exact in any order
    for name, frame in first.party_data.items():
        assert len(frame) == len(second.party_data[name])
    differs = [
        not local_aggregate(first.party_data[n], problem.task).equals(
            local_aggregate(second.party_data[n], problem.task)
        )
        for n in first.party_data
    ]
    assert all(differs)


@pytest.mark.parametrize("width", [8, 4])
def test_scan_with_many_patterns_finds_each_at_any_offset(width):
    from pets.leakage.transcript import WIDE_PREFILTER, scan

    rng = np.random.default_rng(3)
    patterns = np.unique(rng.integers(0, 2 ** (8 * width), 3 * WIDE_PREFILTER, dtype=np.uint64))
    hay = bytearray(rng.bytes(1 << 20))
    planted = patterns[:5].tolist()
    for at, value in zip([0, 9, 1001, 77777, (1 << 20) - width], planted, strict=True):
        hay[at : at + width] = int(value).to_bytes(width, "little")
    found = scan(bytes(hay), patterns.tolist(), width)
    assert set(planted) <= found
    if width == 8:  # 8-byte chance matches in a megabyte: none
        assert found == set(planted)


def test_the_control_is_the_same_test_under_other_labellings():
    rng = np.random.default_rng(1)
    labels = np.array([0] * 4 + [1] * 4)
    drawn = distinguishing.relabellings(labels, 16, rng)
    splits = {tuple(x) for x in drawn} | {tuple(1 - x) for x in drawn}
    assert len(drawn) == 16 and len(splits) == 32  # distinct splits, no mirror twice
    assert tuple(labels) not in splits and all(x.sum() == 4 for x in drawn)
    assert len(distinguishing.relabellings(labels, 100, rng)) == 34  # every other split

    # a fixed leak: the true labelling is read every time, the others almost never
    def view(total: float) -> bytes:
        return rng.bytes(512) + np.float64(total).tobytes() + rng.bytes(64)

    views = [view(4123.25) for _ in range(4)] + [view(4127.5) for _ in range(4)]
    right = distinguishing.classify_labelled(views, [labels, *drawn])
    assert right[0] == 8 and right[1:].mean() / 8 < 0.25
    # two runs in one group that agree by chance somewhere: the control sees the same
    # chance agreements as the test, so the two scores come from one distribution
    noise = [rng.bytes(256) for _ in range(8)]
    noise[1] = noise[0][:100] + noise[1][100:]
    right = distinguishing.classify_labelled(noise, [labels, *drawn])
    assert right[0] <= 2 and right[1:].max() <= 2


def test_text_whose_exponent_overflows_does_not_stop_the_search():
    """A token like ``0e500`` (a zero written with an exponent past a float's range, as
    chance makes in a megabyte of HTTP) once raised OverflowError and failed the whole
    attack; it is skipped, and the real values beside it are still found."""
    values = np.array([4123.4, 61.2534])
    view = intermediates._View([b"payload 0e500 and 0.0e-999 then 4123.400000, 61.253400 end"])
    assert view.found(values).all()
