"""Masking: every written form of an identifier in free text is masked before it is
stored; ordinary error text is kept."""

from __future__ import annotations

import pytest

from pets.data import generate_cohort
from pets.masking import redact
from pets.records import Record, ResultStore

FORMS = [
    ("NHS number 9434765919 not found", "9434765919"),
    ("NHS number 943 476 5919 not found", "943 476 5919"),
    ("NHS number 943-476-5919 not found", "943-476-5919"),
    ("NHS number 943.476.5919 not found", "943.476.5919"),
    ("born 1980-05-04", "1980-05-04"),
    ("born 1980-05-04T00:00:00.000000000", "1980-05-04"),
    ("born 04/05/1980", "04/05/1980"),
    ("born 4/5/1980", "4/5/1980"),
    ("born 04-05-1980", "04-05-1980"),
    ("born 04.05.1980", "04.05.1980"),
    ("lives at LS12 4AB", "LS12 4AB"),
    ("lives at ls12 4ab", "ls12 4ab"),
    ("lives at SW1A 1AA", "SW1A 1AA"),
    ("lives at SW1A1AA", "SW1A1AA"),
    ("district 'LS12' unknown", "LS12"),
    ("district B3, district EH10", "B3"),
    ("district B3, district EH10", "EH10"),
    ("KeyError: ('BT7',)", "BT7"),
]


@pytest.mark.parametrize(("text", "secret"), FORMS)
def test_every_written_form_is_masked(text, secret):
    masked = redact(text)
    assert secret not in masked
    assert "<" in masked


def test_ordinary_error_text_is_kept():
    for text in (
        "RuntimeError: deliberate failure in run (at misbehaving.py:43)",
        "cell exceeded the 8 s timeout and was stopped",
        "killed by signal SIGKILL (9)",
        "UTF-16 card; sha256 mismatch; HTTP2 and AES256",
        "expected 3 parties, got 2",
    ):
        assert redact(text) == text


def test_every_identifier_of_a_cohort_is_masked_in_every_form():
    cohort = generate_cohort(500, seed=3)
    for number in cohort["nhs_number"].astype(str):
        for form in (
            number,
            f"{number[:3]} {number[3:6]} {number[6:]}",
            f"{number[:3]}-{number[3:6]}-{number[6:]}",
            f"{number[:3]}.{number[3:6]}.{number[6:]}",
        ):
            assert number[-4:] not in redact(f"row {form}: bad value")
    for dob in cohort["date_of_birth"]:
        for form in (dob.strftime("%Y-%m-%d"), dob.strftime("%d/%m/%Y")):
            assert redact(f"dob={form}!") == "dob=<date>!"
    for district in set(cohort["postcode_district"]):
        assert redact(f"district {district} unknown") == "district <postcode> unknown"


def test_the_store_masks_what_any_writer_appends(tmp_path):
    store = ResultStore(tmp_path)
    store.append(
        Record(
            scenario="s",
            backend="b",
            params={},
            size=1,
            seed=0,
            repeat=0,
            status="failed",
            error="bad row 943-476-5919 born 04/05/1980 in LS12 4AB",
        )
    )
    text = (tmp_path / "records.jsonl").read_text()
    for secret in ("5919", "1980", "LS12", "4AB"):
        assert secret not in text
