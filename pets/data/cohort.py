"""A seeded, vectorised synthetic NHS-like cohort.

Every column is drawn with numpy array operations (no per-patient Python), so a million
patients take a few seconds. The same ``(n, seed)`` always gives the same frame.

Causal model (arrows are the dependencies drawn):

    nation -> GP practice -> postcode district -> deprivation decile, ethnic mix
    age, sex, deprivation -> smoking -> BMI
    age, sex, BMI, deprivation, ethnicity, smoking -> conditions
    conditions, BMI, age -> HbA1c, systolic BP
    age, conditions, deprivation -> admissions in the prior year -> 30-day readmission

Calibration targets (approximate public figures for England / the UK):

- NHS number: 10 digits, mod-11 check digit (weights 10..2; 11 -> 0; 10 never issued),
  drawn from 400 000 000 0-499 999 999 9. Scotland's CHI and Northern Ireland's H&C
  numbers are simplified to NHS-style numbers here.
- Nations: England 84%, Scotland 8%, Wales 5%, Northern Ireland 3% of patients.
- Age: 0-15 about 19%, 16-64 about 62%, 65+ about 19% (ONS mid-year estimates).
- Ethnicity: White 81.7%, Asian 9.3%, Black 4.0%, Mixed 2.9%, Other 2.1% (Census 2021,
  England and Wales), with more Asian and Black patients in more deprived urban areas.
- Deprivation deciles 1 (most deprived) to 10, set by district. Each nation has its
  own index, so deciles are not comparable across nations.
- Registered prevalence: type 2 diabetes about 7.5% of 17+ (rising with age,
  deprivation and BMI; higher in Asian and Black groups); asthma about 6.5% of 6+;
  COPD about 1.9% (smoking, age); coronary heart disease about 3%; hypertension about
  14%; cancer about 3.5%. Model intercepts are solved for each cohort so these
  targets are met.
- HbA1c (mmol/mol): below 42 normal, 42-47 non-diabetic hyperglycaemia, 48 and above
  for most diabetics. Adult BMI mean about 27.5. Current smokers about 13% of adults,
  more with deprivation.
- 30-day emergency readmission: about 14% of patients with at least one admission,
  rising with age, comorbidity and deprivation.
- GP practice lists average about 10,000 patients in a full-size cohort. A smaller
  cohort is a sample, so it keeps at least 40 practices.
- ICD-10 codes: E11, J45, J44, I25, I10, and C50/C18/C34/C61 for cancer.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "AGE_BANDS",
    "COLUMNS",
    "COLUMN_RANGES",
    "ETHNICITIES",
    "IDENTIFIERS",
    "NATIONS",
    "QUASI_IDENTIFIERS",
    "generate_cohort",
    "nhs_check_digit",
    "nhs_number_is_valid",
]

NATIONS = ("England", "Scotland", "Wales", "Northern Ireland")
_NATION_SHARES = np.array([0.84, 0.08, 0.05, 0.03])
ETHNICITIES = ("White", "Asian", "Black", "Mixed", "Other")
_ETHNIC_SHARES = np.array([0.817, 0.093, 0.040, 0.029, 0.021])
AGE_BANDS = ("0-15", "16-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75-84", "85+")
_AGE_EDGES = np.array([16, 25, 35, 45, 55, 65, 75, 85])
_SMOKING = ("never", "ex", "current")
_CONDITIONS = ("t2_diabetes", "asthma", "copd", "chd", "hypertension", "cancer")
_ICD10 = ("E11", "J45", "J44", "I25", "I10")
_CANCER_SITES = ("C50", "C18", "C34", "C61")
_POSTCODE_AREAS = {
    "England": (
        "B",
        "LS",
        "M",
        "L",
        "S",
        "NE",
        "BS",
        "NG",
        "LE",
        "CV",
        "SO",
        "PL",
        "EX",
        "NR",
        "CB",
        "OX",
        "RG",
        "SE",
        "SW",
        "E",
        "N",
        "W",
        "BD",
        "HU",
        "YO",
        "DE",
        "ST",
        "WV",
    ),
    "Scotland": ("G", "EH", "AB", "DD", "KY", "FK", "PA", "IV"),
    "Wales": ("CF", "SA", "LL", "NP", "LD", "SY"),
    "Northern Ireland": ("BT",),
}
_PRACTICE_LETTER = {
    "England": "ABCDEFGHJKLMNP",
    "Scotland": "S",
    "Wales": "W",
    "Northern Ireland": "Z",
}
_REFERENCE_DATE = "2026-04-01"

COLUMNS = (
    "nhs_number",
    "date_of_birth",
    "age",
    "age_band",
    "sex",
    "ethnicity",
    "nation",
    "postcode_district",
    "deprivation_decile",
    "gp_practice",
    *_CONDITIONS,
    "diagnoses",
    "bmi",
    "hba1c",
    "systolic_bp",
    "smoker",
    "admissions_prior_year",
    "readmitted_30d",
)
IDENTIFIERS = ("nhs_number", "date_of_birth", "postcode_district", "gp_practice")
QUASI_IDENTIFIERS = ("age", "sex", "postcode_district", "ethnicity")

#: Public clinical bounds of numeric columns; never derived from data.
COLUMN_RANGES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "age": (0.0, 110.0),
        "bmi": (12.0, 70.0),
        "hba1c": (20.0, 150.0),
        "systolic_bp": (70.0, 250.0),
        "admissions_prior_year": (0.0, 30.0),
        "deprivation_decile": (1.0, 10.0),
        # 0/1 condition flags
        "t2_diabetes": (0.0, 1.0),
        "asthma": (0.0, 1.0),
        "copd": (0.0, 1.0),
        "chd": (0.0, 1.0),
        "hypertension": (0.0, 1.0),
        "cancer": (0.0, 1.0),
        "readmitted_30d": (0.0, 1.0),
    }
)

_WEIGHTS = np.arange(10, 1, -1)


def nhs_check_digit(first_nine: npt.ArrayLike) -> np.ndarray:
    """Return the mod-11 check digit of 9-digit numbers (10 means no valid number)."""
    x = np.asarray(first_nine, dtype=np.int64)
    total = np.zeros_like(x)
    for i, w in enumerate(_WEIGHTS):
        total += ((x // 10 ** (8 - i)) % 10) * w
    check = 11 - total % 11
    return np.where(check == 11, 0, check)


def nhs_number_is_valid(numbers: npt.ArrayLike) -> np.ndarray:
    """Return whether each 10-digit number carries a valid mod-11 check digit."""
    x = np.asarray(numbers, dtype=np.int64)
    check = nhs_check_digit(x // 10)
    return (x >= 10**9) & (x < 10**10) & (check != 10) & (check == x % 10)


def _nhs_numbers(n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` distinct valid NHS numbers in random order."""
    draw = int(n * 1.2) + 64
    while True:
        first = rng.choice(100_000_000, size=draw, replace=False).astype(np.int64)
        first += 400_000_000
        check = nhs_check_digit(first)
        valid = check != 10
        if valid.sum() >= n:
            return (first[valid] * 10 + check[valid])[:n]
        draw *= 2


def _calibrate(lp: np.ndarray, eligible: np.ndarray, target: float) -> float:
    """Return the intercept b with mean(sigmoid(lp + b)) = target over ``eligible`` rows.

    Solved by Newton's method on at most 200,000 eligible rows (evenly spaced, so the
    result stays deterministic).
    """
    x = lp[eligible]
    if x.size == 0:
        return 0.0
    if x.size > 200_000:
        x = x[:: x.size // 200_000 + 1]
    b = float(np.log(target / (1 - target)) - np.median(x))
    for _ in range(30):
        p = 1.0 / (1.0 + np.exp(-(x + b)))
        gap = p.mean() - target
        slope = max(float((p * (1 - p)).mean()), 1e-9)
        b -= gap / slope
        if abs(gap) < 1e-7:
            break
    return b


def _draw(lp: np.ndarray, eligible: np.ndarray, target: float, rng: np.random.Generator):
    b = _calibrate(lp, eligible, target)
    p = 1.0 / (1.0 + np.exp(-(lp + b)))
    return ((rng.random(lp.size) < p) & eligible).astype(np.int8)


def _geography(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Practices, their districts and nations (a geography drawn with the seed)."""
    n_practices = int(np.clip(n // 10_000, 40, 7_000))
    counts = np.maximum(2, np.round(_NATION_SHARES * n_practices)).astype(int)
    practice_nation = np.repeat(np.arange(4), counts)
    n_practices = practice_nation.size
    # Postcode districts: far more than practices in a big cohort (the UK has about
    # 2,900); each practice has a home district in its nation.
    total_districts = int(np.clip(n // 400, 60, 2_900))
    district_labels: list[str] = []
    district_nation: list[int] = []
    practice_district = np.empty(n_practices, dtype=np.int64)
    for k, nation in enumerate(NATIONS):
        idx = np.flatnonzero(practice_nation == k)
        n_districts = max(3, round(_NATION_SHARES[k] * total_districts))
        areas = _POSTCODE_AREAS[nation]
        base = len(district_labels)
        for j in range(n_districts):
            district_labels.append(f"{areas[j % len(areas)]}{j // len(areas) + 1}")
            district_nation.append(k)
        practice_district[idx] = base + rng.integers(0, n_districts, size=idx.size)
    n_districts = len(district_labels)
    district_decile = rng.integers(1, 11, size=n_districts)
    # Diversity rises in deprived urban districts.
    district_diversity = (
        np.exp(rng.normal(0, 0.5, n_districts)) * (1.0 + 0.15 * (10 - district_decile)) / 1.7
    )
    list_weight = rng.lognormal(0.0, 0.5, n_practices)
    letters = [_PRACTICE_LETTER[NATIONS[k]] for k in practice_nation]
    codes = [
        f"{letters[i][i % len(letters[i])]}{81000 + (i * 37) % 19000:05d}"
        for i in range(n_practices)
    ]
    return {
        "practice_nation": practice_nation,
        "practice_district": practice_district,
        "practice_weight": list_weight,
        "practice_codes": np.array(codes),
        "district_labels": np.array(district_labels),
        "district_nation": np.array(district_nation),
        "district_decile": district_decile,
        "district_diversity": district_diversity,
    }


def _ages(n: int, rng: np.random.Generator) -> np.ndarray:
    group = rng.choice(3, size=n, p=[0.19, 0.62, 0.19])
    young = rng.uniform(0, 16, n)
    working = rng.uniform(16, 65, n)
    old = np.minimum(65 + rng.exponential(10.0, n), 104.99)
    return np.choose(group, [young, working, old])


def generate_cohort(n: int, *, seed: int, reference_date: str = _REFERENCE_DATE) -> pd.DataFrame:
    """Generate ``n`` synthetic patients.

    Parameters
    ----------
    n : int
        Number of patients (at least 1).
    seed : int
        Seed; the same ``(n, seed)`` gives the same frame.
    reference_date : str
        Date at which ages are computed (ISO format).

    Returns
    -------
    pandas.DataFrame
        One row per patient with the columns in :data:`COLUMNS`.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = np.random.default_rng([seed, 0xC0407])
    geo = _geography(n, rng)

    nation = rng.choice(4, size=n, p=_NATION_SHARES)
    practice = np.empty(n, dtype=np.int64)
    for k in range(4):
        rows = np.flatnonzero(nation == k)
        idx = np.flatnonzero(geo["practice_nation"] == k)
        w = geo["practice_weight"][idx]
        practice[rows] = idx[rng.choice(idx.size, size=rows.size, p=w / w.sum())]
    # Most patients live in their practice's home district, the rest elsewhere in the nation.
    district = geo["practice_district"][practice].copy()
    away = np.flatnonzero(rng.random(n) < 0.4)
    for k in range(4):
        rows = away[nation[away] == k]
        options = np.flatnonzero(geo["district_nation"] == k)
        district[rows] = options[rng.integers(0, options.size, rows.size)]
    decile = np.clip(
        geo["district_decile"][district] + rng.choice([-1, 0, 0, 0, 1], size=n), 1, 10
    ).astype(np.int8)
    depriv = (5.5 - decile) / 4.5  # +1 most deprived, -1 least

    age_exact = _ages(n, rng)
    age = np.floor(age_exact).astype(np.int16)
    ref = np.datetime64(reference_date, "D")
    dob = ref - np.round(age_exact * 365.25).astype("timedelta64[D]") - 1
    male = rng.random(n) < 0.495

    diversity = geo["district_diversity"][district]
    probs = np.tile(_ETHNIC_SHARES, (n, 1))
    probs[:, 1:3] *= diversity[:, None]
    probs /= probs.sum(axis=1, keepdims=True)
    ethnicity = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    ethnicity = np.minimum(ethnicity, 4)
    asian, black = ethnicity == 1, ethnicity == 2

    adult = age >= 16
    p_current = np.clip(0.13 + 0.06 * depriv, 0.02, 0.5) * adult
    p_ex = np.clip(0.10 + 0.004 * (age - 16), 0.0, 0.35) * adult
    u = rng.random(n)
    smoker = np.where(u < p_current, 2, np.where(u < p_current + p_ex, 1, 0)).astype(np.int8)
    current = smoker == 2

    bmi = np.where(
        adult,
        27.2
        + 0.9 * depriv
        + 0.04 * np.clip(age - 40, -20, 25)
        - 0.6 * current
        + rng.normal(0, 5.0, n),
        15.0 + 0.35 * age + rng.normal(0, 2.5, n),
    )
    bmi = np.clip(bmi, *COLUMN_RANGES["bmi"])

    age_c = (age - 50) / 15
    lp = 0.9 * age_c + 0.12 * (bmi - 27.5) + 0.35 * depriv + 0.8 * asian + 0.5 * black
    t2_diabetes = _draw(lp, age >= 17, 0.075, rng)
    asthma = _draw(0.2 * depriv + 0.3 * current + 0.03 * (bmi - 27.5), age >= 6, 0.065, rng)
    copd = _draw(
        1.2 * age_c + 1.6 * current + 0.9 * (smoker == 1) + 0.3 * depriv,
        age >= 35,
        0.019 * n / max(int(np.sum(age >= 35)), 1),
        rng,
    )
    hypertension = _draw(
        1.3 * age_c + 0.07 * (bmi - 27.5) + 0.5 * black + 0.4 * t2_diabetes,
        adult,
        0.14 * n / max(int(adult.sum()), 1),
        rng,
    )
    chd = _draw(
        1.3 * age_c
        + 0.6 * male
        + 0.6 * current
        + 0.5 * t2_diabetes
        + 0.6 * hypertension
        + 0.2 * depriv,
        adult,
        0.03 * n / max(int(adult.sum()), 1),
        rng,
    )
    cancer = _draw(1.1 * age_c + 0.5 * current, np.ones(n, bool), 0.035, rng)

    pre = rng.random(n) < np.clip(0.05 + 0.1 * (age >= 40) + 0.01 * (bmi - 27.5), 0, 0.4)
    hba1c = np.where(
        t2_diabetes == 1,
        # About one diabetic in ten is treated to below the diagnostic threshold.
        np.where(rng.random(n) < 0.1, rng.uniform(38.0, 48.0, n), 48.0 + rng.gamma(2.0, 8.0, n)),
        np.where(
            pre,
            rng.uniform(42.0, 47.9, n),
            35.0 + 0.04 * np.clip(age - 30, 0, 60) + 0.1 * (bmi - 27.5) + rng.normal(0, 2.5, n),
        ),
    )
    hba1c = np.clip(
        np.where(t2_diabetes == 0, np.minimum(hba1c, 47.9), hba1c), *COLUMN_RANGES["hba1c"]
    )

    sbp = (
        118
        + 0.45 * np.clip(age - 30, -15, 60)
        + 16 * hypertension
        + 0.35 * (bmi - 27.5)
        + 2.0 * black
        + rng.normal(0, 11, n)
    )
    sbp = np.clip(sbp, *COLUMN_RANGES["systolic_bp"])

    n_conditions = t2_diabetes + asthma + copd + chd + hypertension + cancer
    mu = np.exp(-2.0 + 0.5 * np.clip(age_c, -2, 3) + 0.45 * n_conditions + 0.2 * depriv)
    r = 0.8
    admissions = rng.negative_binomial(r, r / (r + mu))
    admissions = np.minimum(admissions, int(COLUMN_RANGES["admissions_prior_year"][1]))
    admitted = admissions >= 1
    lp_read = (
        0.45 * age_c
        + 0.35 * n_conditions
        + 0.6 * np.log1p(admissions)
        + 0.25 * depriv
        + 0.5 * copd
        + 0.3 * chd
        + 0.02 * (bmi - 27.5)
    )
    readmitted = _draw(lp_read, admitted, 0.14, rng)

    mask = (
        t2_diabetes.astype(np.int64)
        | asthma.astype(np.int64) << 1
        | copd.astype(np.int64) << 2
        | chd.astype(np.int64) << 3
        | hypertension.astype(np.int64) << 4
    )
    # One code per combination: the condition bits times (1 + cancer sites), plus the site.
    slots = 1 + len(_CANCER_SITES)
    site = np.where(cancer == 1, rng.integers(1, slots, n), 0)
    labels = [
        ";".join(
            [_ICD10[b] for b in range(len(_ICD10)) if (c // slots) >> b & 1]
            + ([_CANCER_SITES[c % slots - 1]] if c % slots else [])
        )
        for c in range(2 ** len(_ICD10) * slots)
    ]
    diagnoses = pd.Categorical.from_codes(mask * slots + site, categories=labels)

    band = np.searchsorted(_AGE_EDGES, age, side="right")
    return pd.DataFrame(
        {
            "nhs_number": _nhs_numbers(n, rng),
            "date_of_birth": dob.astype("datetime64[ns]"),
            "age": age,
            "age_band": pd.Categorical.from_codes(band, categories=AGE_BANDS, ordered=True),
            "sex": pd.Categorical.from_codes(male.astype(np.int8), categories=["F", "M"]),
            "ethnicity": pd.Categorical.from_codes(ethnicity, categories=ETHNICITIES),
            "nation": pd.Categorical.from_codes(nation, categories=NATIONS),
            "postcode_district": _labelled(district, geo["district_labels"]),
            "deprivation_decile": decile,
            "gp_practice": _labelled(practice, geo["practice_codes"]),
            "t2_diabetes": t2_diabetes,
            "asthma": asthma,
            "copd": copd,
            "chd": chd,
            "hypertension": hypertension,
            "cancer": cancer,
            "diagnoses": diagnoses,
            "bmi": bmi.astype(np.float32),
            "hba1c": hba1c.astype(np.float32),
            "systolic_bp": sbp.astype(np.float32),
            "smoker": pd.Categorical.from_codes(smoker, categories=_SMOKING),
            "admissions_prior_year": admissions.astype(np.int16),
            "readmitted_30d": readmitted,
        }
    )


def _labelled(index: np.ndarray, labels: np.ndarray) -> pd.Categorical:
    """Categorical of ``labels[index]`` whose categories are the distinct labels."""
    uniq, inverse = np.unique(labels, return_inverse=True)
    return pd.Categorical.from_codes(inverse[index], categories=uniq)
