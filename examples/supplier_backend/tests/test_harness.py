"""The backend run by the harness on the ``multi_site_prevalence`` card: scored against
the plaintext reference, its parties' views attacked, its claim checked."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pets
import pytest
from pets import Registry


@pytest.fixture(scope="module")
def frame(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """One quick run of the honest backend and the leaky variant."""
    registry = Registry.from_entry_points()
    registry.add("leaky-sharing", "leaky:LeakySharing")
    out = tmp_path_factory.mktemp("run")
    result = pets.run(
        ["multi_site_prevalence"],
        ["additive-sharing", "leaky-sharing"],
        quick=True,
        out=out,
        registry=registry,
        progress=False,
    )
    assert (result["status"] == "ok").all(), result["error"].tolist()
    return result.set_index("backend")


def _exposure(row: pd.Series) -> dict[str, dict]:
    attacks = json.loads(row["leakage.attacks"])
    return {a["observer"]: a for a in attacks if a["attack"] == "transcript_exposure"}


def test_the_aggregate_is_exact(frame: pd.DataFrame) -> None:
    row = frame.loc["additive-sharing"]
    assert row["accuracy.max_relative_error"] < 1e-6
    assert row["accuracy.fraction_released"] == 1.0
    assert row["isolation"] == "process"
    assert row["api_version"] == pets.api.API_VERSION


def test_honest_shares_expose_nothing(frame: pd.DataFrame) -> None:
    row = frame.loc["additive-sharing"]
    exposure = _exposure(row)
    # the recipient and the helper received bytes, and the attack found no input in them
    for observer in ("analyst", "share_aggregator"):
        assert exposure[observer]["applicable"] is True
        assert exposure[observer]["residual_risk"] < 0.1
    flags = json.loads(row["leakage.flags"])
    assert "exposes_inputs" not in flags and "claim_contradicted" not in flags
    # the published table is exact: differencing reads patients off it (declared "output")
    assert "reveals_individuals" in flags


def test_a_leaky_variant_is_caught(frame: pd.DataFrame) -> None:
    row = frame.loc["leaky-sharing"]
    assert _exposure(row)["share_aggregator"]["residual_risk"] > 0.5
    assert {"exposes_inputs", "claim_contradicted"} <= set(json.loads(row["leakage.flags"]))


def test_a_bad_parameter_fails_the_cell_with_one_clear_line(tmp_path: Path) -> None:
    result = pets.run(
        ["multi_site_prevalence"],
        ["additive-sharing"],
        params={"fraction_bits": 99},
        size=500,
        out=tmp_path,
        leakage="off",
        progress=False,
    )
    assert result.loc[0, "status"] == "failed"
    assert "fraction_bits must be an integer from 0 to 40" in result.loc[0, "error"]
