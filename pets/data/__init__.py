"""Data: the synthetic cohort, real data sets shipped with scikit-learn, partitioning."""

from pets.data.cohort import (
    AGE_BANDS,
    COLUMN_RANGES,
    COLUMNS,
    ETHNICITIES,
    IDENTIFIERS,
    NATIONS,
    QUASI_IDENTIFIERS,
    generate_cohort,
    nhs_check_digit,
    nhs_number_is_valid,
)
from pets.data.partition import split_by_column, split_catchment, split_holdout, split_overlap
from pets.data.real import REAL_DATASETS, REAL_RANGES, load_real_dataset

__all__ = [
    "AGE_BANDS",
    "COLUMNS",
    "COLUMN_RANGES",
    "ETHNICITIES",
    "IDENTIFIERS",
    "NATIONS",
    "QUASI_IDENTIFIERS",
    "REAL_DATASETS",
    "REAL_RANGES",
    "generate_cohort",
    "load_real_dataset",
    "nhs_check_digit",
    "nhs_number_is_valid",
    "split_by_column",
    "split_catchment",
    "split_holdout",
    "split_overlap",
]
