"""Real health data sets that ship inside scikit-learn (no download)."""

from __future__ import annotations

import pandas as pd

__all__ = ["REAL_DATASETS", "load_real_dataset"]

REAL_DATASETS = ("breast_cancer", "diabetes")


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
