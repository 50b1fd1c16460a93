"""Real health data sets that ship inside scikit-learn (no download)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import pandas as pd

__all__ = ["REAL_DATASETS", "REAL_RANGES", "load_real_dataset"]

REAL_DATASETS = ("breast_cancer", "diabetes")

#: Public bounds of some real-data columns, set from clinical knowledge of the
#: measurements (round figures wider than any patient's), never from the data.
REAL_RANGES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "mean_radius": (0.0, 30.0),
        "mean_texture": (0.0, 40.0),
        "mean_perimeter": (0.0, 200.0),
        "mean_area": (0.0, 2600.0),
        "mean_smoothness": (0.0, 0.2),
        "mean_concavity": (0.0, 0.5),
        "worst_radius": (0.0, 40.0),
        "worst_texture": (0.0, 50.0),
        "worst_area": (0.0, 4500.0),
        "worst_concave_points": (0.0, 0.3),
    }
)


def load_real_dataset(name: str) -> pd.DataFrame:
    """Return a real data set with its outcome in a ``target`` column.

    Parameters
    ----------
    name : str
        ``breast_cancer`` (Wisconsin diagnostic, 569 patients, target 1 = benign) or
        ``diabetes`` (442 patients, target = disease progression after one year).
    """
    from sklearn import datasets

    if name == "breast_cancer":
        bunch = datasets.load_breast_cancer(as_frame=True)
    elif name == "diabetes":
        bunch = datasets.load_diabetes(as_frame=True, scaled=False)
    else:
        raise ValueError(f"unknown real data set {name!r}; allowed: {', '.join(REAL_DATASETS)}")
    frame = bunch.frame.copy()
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    return frame
