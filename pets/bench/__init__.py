"""The performance suite behind ``pets bench``: ratios measured in the same run.

Every figure is a ratio of two timings taken in the same process and run (the median
of several repeats each), never a comparison with a fixed threshold: harness overhead,
each secure backend against pandas, packed against naive encryption, the cohort
generation rate and the per-cell overhead; and the log-log slope of cost against
patients over a size sweep (``pets bench --scaling``). See ``docs/bench.md``.
"""

from pets.bench.measures import (
    BenchLog,
    BenchSettings,
    Measurement,
    Side,
    Skipped,
    read_measurements,
)
from pets.bench.scaling import ScalingError, ScalingFit, fit_scaling, log_log_slope, scaling_table
from pets.bench.suite import MEASUREMENTS, check_only, ratio_table, run_bench, run_scaling

__all__ = [
    "MEASUREMENTS",
    "BenchLog",
    "BenchSettings",
    "Measurement",
    "ScalingError",
    "ScalingFit",
    "Side",
    "Skipped",
    "check_only",
    "fit_scaling",
    "log_log_slope",
    "ratio_table",
    "read_measurements",
    "run_bench",
    "run_scaling",
    "scaling_table",
]
