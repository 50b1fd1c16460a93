"""The synthetic cohort: identifiers, determinism, calibration, real data sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from pets.data import (
    COLUMN_RANGES,
    COLUMNS,
    generate_cohort,
    load_real_dataset,
    nhs_number_is_valid,
)
from pets.tasks import design_matrix


def _check_digit_by_hand(number: int) -> bool:
    digits = [int(c) for c in str(number)]
    total = sum(d * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == digits[9]


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return generate_cohort(200_000, seed=11)


def test_nhs_numbers_are_valid_unique_ten_digit(cohort):
    numbers = cohort["nhs_number"].to_numpy()
    assert numbers.min() >= 4_000_000_000 and numbers.max() <= 4_999_999_999
    assert len(np.unique(numbers)) == len(numbers)
    assert nhs_number_is_valid(numbers).all()
    for number in numbers[:2000]:
        assert _check_digit_by_hand(int(number))


def test_check_digit_rejects_tampering():
    assert nhs_number_is_valid([9434765919]).tolist() == [True]  # the NHS's published example
    assert nhs_number_is_valid([9434765918, 943476591, 94347659190]).tolist() == [
        False,
        False,
        False,
    ]


def test_same_seed_same_cohort_other_seed_other_cohort():
    a, b = generate_cohort(5000, seed=4), generate_cohort(5000, seed=4)
    pd.testing.assert_frame_equal(a, b)
    c = generate_cohort(5000, seed=5)
    assert not np.array_equal(a["nhs_number"].to_numpy(), c["nhs_number"].to_numpy())
    assert a["hba1c"].mean() != c["hba1c"].mean()


def test_columns_types_and_ranges(cohort):
    assert tuple(cohort.columns) == COLUMNS
    for column, (lo, hi) in COLUMN_RANGES.items():
        values = cohort[column].to_numpy(dtype=float)
        assert values.min() >= lo and values.max() <= hi, column
    ages = (pd.Timestamp("2026-04-01") - cohort["date_of_birth"]).dt.days / 365.25
    assert np.all(np.abs(ages - cohort["age"]) < 1.01)
    assert cohort["diagnoses"].str.contains("E11").sum() == cohort["t2_diabetes"].sum()


def test_prevalences_are_near_public_figures(cohort):
    adults17 = cohort[cohort["age"] >= 17]
    adults = cohort[cohort["age"] >= 16]
    admitted = cohort[cohort["admissions_prior_year"] >= 1]
    assert 0.05 < adults17["t2_diabetes"].mean() < 0.10
    assert 0.09 < (adults["smoker"] == "current").mean() < 0.18
    assert 0.09 < admitted["readmitted_30d"].mean() < 0.20
    assert 26 < adults["bmi"].mean() < 29
    assert 0.16 < (cohort["age"] <= 15).mean() < 0.22
    assert cohort["nation"].value_counts(normalize=True)["England"] == pytest.approx(0.84, 0.03)
    by_decile = cohort.groupby("deprivation_decile")["t2_diabetes"].mean()
    assert by_decile[1] > by_decile[10]
    diabetic = cohort[cohort["t2_diabetes"] == 1]["hba1c"]
    assert (diabetic >= 48).mean() > 0.8
    assert (cohort[cohort["t2_diabetes"] == 0]["hba1c"] < 48).all()


def test_readmission_is_learnable_but_not_trivial(cohort):
    admitted = cohort[cohort["admissions_prior_year"] >= 1]
    features = [
        "age",
        "male",
        "bmi",
        "hba1c",
        "copd",
        "chd",
        "admissions_prior_year",
        "deprivation_decile",
    ]
    x, y = design_matrix(admitted, features), admitted["readmitted_30d"].to_numpy()
    half = len(y) // 2
    model = LogisticRegression(max_iter=1000).fit(x[:half], y[:half])
    auc = roc_auc_score(y[half:], model.predict_proba(x[half:])[:, 1])
    assert 0.65 < auc < 0.9


def test_small_cells_exist_where_splits_are_fine(cohort):
    cells = cohort.groupby(
        ["nation", "age_band", "sex", "deprivation_decile"], observed=True
    ).size()
    assert (cells < 10).sum() > 20


@pytest.mark.parametrize("name", ["breast_cancer", "diabetes"])
def test_real_datasets_load_offline(name):
    frame = load_real_dataset(name)
    assert "target" in frame.columns and len(frame) > 400


def test_unknown_real_dataset_names_the_allowed():
    with pytest.raises(ValueError, match="allowed: breast_cancer, diabetes"):
        load_real_dataset("heart")
