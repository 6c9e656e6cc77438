"""The MAI 2021 challenge score and the constant C that Zhang et al.'s tables imply."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from depthlib.metrics import fit_mai2021_constant, mai2021_score
from depthlib.reported import load_reported


def _table(name: str) -> pd.DataFrame:
    """Rows of zhang2021's Table 1 or 2 with their si-RMSE, runtime (ms) and score, from the reported YAML."""
    df = load_reported()
    rows = df[df["key"].str.startswith(f"zhang2021/{name}/")].copy()
    parts = rows["key"].str.split("/")
    rows["row"], rows["metric"] = parts.str[2], parts.str[3]
    wide = rows.pivot_table(index="row", columns="metric", values="value", aggfunc="first")
    return wide.dropna(subset=["si-rmse", "latency", "score"])


def test_score_by_hand():
    # 2^(-20 * 0.25) = 2^-5 = 1/32; c * runtime = 1/1000 * 50 = 0.05 -> (1/32) / 0.05 = 0.625
    assert mai2021_score(0.25, 50.0, 1e-3) == pytest.approx(0.625)
    assert np.allclose(mai2021_score([0.25, 0.0], [50.0, 1.0], 1e-3), [0.625, 1000.0])
    with pytest.raises(ValueError, match="runtime_ms"):
        mai2021_score(0.3, 0.0, 1e-3)
    with pytest.raises(ValueError, match="c must be"):
        mai2021_score(0.3, 10.0, -1.0)


def test_table1_scores_come_back_from_one_constant():
    t1 = _table("table1")
    assert len(t1) == 12                                   # every team of the challenge ranking
    c, per_row = fit_mai2021_constant(t1["si-rmse"], t1["latency"], t1["score"])
    assert 1 / c == pytest.approx(640_000, rel=0.005)      # C = 1/640,000
    recomputed = mai2021_score(t1["si-rmse"].to_numpy(), t1["latency"].to_numpy(), c)
    # printed scores have 3-4 significant digits: the smallest (0.38) is only good to about 1 %
    assert np.allclose(recomputed, t1["score"], rtol=0.01)
    assert t1.loc["ours", "score"] == pytest.approx(mai2021_score(0.2836, 97, c), rel=0.002)


def test_table2_implies_a_constant_ten_times_table1s_and_one_misprinted_row():
    c1, _ = fit_mai2021_constant(*(_table("table1")[k] for k in ("si-rmse", "latency", "score")))
    t2 = _table("table2")
    c2, per_row = fit_mai2021_constant(t2["si-rmse"], t2["latency"], t2["score"])
    assert c2 / c1 == pytest.approx(10, rel=0.03)          # the two tables use scales ten times apart
    off = pd.Series(per_row / c2 - 1, index=t2.index)
    assert off.drop("model2").abs().max() < 0.005          # every other row: one constant, up to rounding
    assert abs(off["model2"]) > 0.05                       # model 2's si-RMSE, runtime and score disagree
    recomputed = mai2021_score(t2["si-rmse"].to_numpy(), t2["latency"].to_numpy(), c2)
    assert np.allclose(recomputed[t2.index != "model2"], t2["score"].drop("model2"), rtol=0.005)


def test_fit_rejects_bad_tables():
    with pytest.raises(ValueError, match="equal, non-empty"):
        fit_mai2021_constant([0.3], [10.0, 20.0], [1.0])
    with pytest.raises(ValueError, match="equal, non-empty"):
        fit_mai2021_constant([], [], [])
    with pytest.raises(ValueError, match="> 0"):
        fit_mai2021_constant([0.3], [10.0], [-1.0])
    assert math.isfinite(fit_mai2021_constant([0.3], [10.0], [1.0])[0])
