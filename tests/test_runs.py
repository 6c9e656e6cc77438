"""The pieces of a chapter's experiments, each from the module that owns it: grids of runs (depthlib.book.grids),
one run (depthlib.train.runs), statistics (depthlib.stats), the edge metric (depthlib.metrics), complexity tables
(depthlib.profiler), chapter data (depthlib.data.chapters) and weights resolution (depthlib.models.weights)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from depthlib.book.grids import grid, run_grid
from depthlib.metrics import edge_error
from depthlib.profiler import complexity_table
from depthlib.reported import results_frame
from depthlib.stats import compare, mean_spread, summarize
from depthlib.train.runs import lr_search, predict, train_eval


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    # run_grid's cache must never touch the project's .cache during tests
    monkeypatch.setenv("DEPTHLIB_CACHE", str(tmp_path / "cache"))


# ------------------------------------------------------------------------------------------------- grid
def test_grid_is_the_ordered_product():
    runs = grid(decoder=["nnconv5", "upproj"], skip=["none", "add", "concat"])
    assert len(runs) == 6
    assert runs[0] == {"decoder": "nnconv5", "skip": "none"}
    assert runs[1] == {"decoder": "nnconv5", "skip": "add"}  # last axis fastest
    assert runs[-1] == {"decoder": "upproj", "skip": "concat"}


@pytest.mark.parametrize("axes, message", [({}, "at least one axis"), ({"seed": 0}, "list of values"),
                                           ({"model": "fastdepth"}, "list of values"), ({"seed": []}, "empty")])
def test_grid_rejects_bad_axes(axes, message):
    with pytest.raises(ValueError, match=message):
        grid(**axes)


def test_run_grid_splits_scalars_curves_and_outputs_and_caches(tmp_path):
    calls = []

    def fn(a, seed):
        calls.append((a, seed))
        return {"score": a * 10 + seed, "name": f"{a}-{seed}", "np": np.float32(0.5),
                "history": pd.DataFrame({"epoch": [1, 2], "loss": [1.0 / (a + 1), 0.5 / (a + 1)]}),
                "pred": torch.full((1, 1, 2, 2), float(a))}

    runs = grid(a=[1, 2], seed=[0, 1])
    result = run_grid(runs, fn, cache_key="test/grid", cache_params={"data": "toy"})
    assert result.table[["a", "seed", "score"]].values.tolist() == [[1, 0, 10], [1, 1, 11], [2, 0, 20], [2, 1, 21]]
    assert result.table["np"].dtype == float
    assert len(result.curves) == 8 and set(result.curves["curve"]) == {"history"}
    assert result.curves.query("a == 2 and seed == 1")["loss"].tolist() == pytest.approx([1 / 3, 1 / 6])
    assert torch.equal(result.outputs[2]["pred"], torch.full((1, 1, 2, 2), 2.0))
    assert len(calls) == 4

    # a second call computes nothing; a new seed computes only the new runs; other cache_params recompute
    again = run_grid(runs, fn, cache_key="test/grid", cache_params={"data": "toy"})
    pd.testing.assert_frame_equal(again.table, result.table)
    assert len(calls) == 4
    run_grid(grid(a=[1, 2], seed=[0, 1, 2]), fn, cache_key="test/grid", cache_params={"data": "toy"})
    assert calls[4:] == [(1, 2), (2, 2)]
    run_grid(runs[:1], fn, cache_key="test/grid", cache_params={"data": "other"})
    assert calls[-1] == (1, 0) and len(calls) == 7


def test_run_grid_rejects_key_clashes():
    with pytest.raises(ValueError, match="also run parameters"):
        run_grid([{"seed": 0}], lambda seed: {"seed": 1})
    with pytest.raises(ValueError, match="expected a mapping"):
        run_grid([{"seed": 0}], lambda seed: 3.0)


# ------------------------------------------------------------------------------------------ statistics
def _runs(values: dict[str, list[float]], metric: str = "delta1") -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "seed": i, metric: v} for m, vs in values.items() for i, v in enumerate(vs)])


def test_summarize_mean_std_and_t_interval():
    df = _runs({"a": [0.70, 0.74, 0.72], "b": [0.5]})
    s = summarize(df, by="model", metrics="delta1").set_index("model")
    assert s.loc["a", "mean"] == pytest.approx(0.72)
    assert s.loc["a", "std"] == pytest.approx(0.02)  # sample std (ddof=1) of 0.70, 0.74, 0.72
    half = stats.t.ppf(0.975, 2) * 0.02 / math.sqrt(3)  # 4.303 * 0.02 / 1.732
    assert (s.loc["a", "ci_low"], s.loc["a", "ci_high"]) == pytest.approx((0.72 - half, 0.72 + half))
    assert s.loc["a", "seeds"] == "0,1,2" and s.loc["a", "n"] == 3
    assert s.loc["b", "n"] == 1 and math.isnan(s.loc["b", "std"]) and math.isnan(s.loc["b", "ci_low"])


def test_compare_welch_matches_scipy_and_says_what_survives():
    far = {"sgd": [0.80, 0.81, 0.82, 0.805], "adam": [0.50, 0.52, 0.49, 0.51], "sgd2": [0.79, 0.83, 0.80, 0.815]}
    out = compare(_runs(far), by="model", metric="delta1", baseline="sgd").set_index("a")
    ref = stats.ttest_ind(far["adam"], far["sgd"], equal_var=False)
    assert out.loc["adam", "p_value"] == pytest.approx(ref.pvalue)
    assert out.loc["adam", "diff"] == pytest.approx(np.mean(far["adam"]) - np.mean(far["sgd"]))
    ci = ref.confidence_interval(0.95)
    assert (out.loc["adam", "ci_low"], out.loc["adam", "ci_high"]) == pytest.approx((ci.low, ci.high))
    assert bool(out.loc["adam", "survives"]) and out.loc["adam", "verdict"].startswith("survives: adam lower")
    assert not out.loc["sgd2", "survives"] and out.loc["sgd2", "verdict"].startswith("within seed noise")
    # Benjamini-Hochberg over the two comparisons: the larger p-value stays, the smaller one doubles (capped)
    p = sorted([out.loc["adam", "p_value"], out.loc["sgd2", "p_value"]])
    assert sorted(out["p_adjusted"]) == pytest.approx([min(2 * p[0], p[1]), p[1]])


def test_compare_two_seeds_with_sagar_sized_difference_does_not_survive():
    # sagar2021's Table 3: MobileNet 0.743 vs MobileNetV2 0.740, with a plausible seed-to-seed spread of 0.01
    out = compare(_runs({"mobilenet": [0.743, 0.733], "mobilenetv2": [0.740, 0.748]}), by="model", metric="delta1")
    assert len(out) == 1 and not out["survives"].iloc[0]


def test_compare_degenerate_cases():
    out = compare(_runs({"a": [0.7], "b": [0.6, 0.61]}), by="model", metric="delta1")
    assert math.isnan(out["p_value"].iloc[0]) and out["verdict"].iloc[0].startswith("one seed")
    out = compare(_runs({"a": [0.7, 0.7], "b": [0.6, 0.6]}), by="model", metric="delta1")
    assert not out["survives"].iloc[0] and "identical runs" in out["verdict"].iloc[0]
    with pytest.raises(KeyError, match="baseline 'c'"):
        compare(_runs({"a": [0.7, 0.71], "b": [0.6, 0.61]}), by="model", metric="delta1", baseline="c")
    with pytest.raises(ValueError, match="method"):
        compare(_runs({"a": [0.7, 0.71]}), by="model", metric="delta1", method="anova")


def test_compare_bootstrap_interval():
    far = {"a": [1.0, 1.1, 0.9, 1.05, 0.95], "b": [0.0, 0.1, -0.1, 0.05, -0.05]}
    out = compare(_runs(far, "rmse"), by="model", metric="rmse", method="bootstrap", n_resamples=2000)
    row = out.iloc[0]
    assert row["diff"] == pytest.approx(1.0)
    # every resampled difference of means lies within [max(a)-..., ...]: the interval is well inside (0.8, 1.2)
    assert 0.8 < row["ci_low"] < 1.0 < row["ci_high"] < 1.2
    assert row["survives"] and row["p_value"] == 0.0
    close = {"a": [1.0, 1.2, 0.8], "b": [1.1, 0.9, 1.0]}
    row = compare(_runs(close, "rmse"), by="model", metric="rmse", method="bootstrap", n_resamples=2000).iloc[0]
    assert row["ci_low"] < 0 < row["ci_high"] and not row["survives"]


def test_compare_multiple_group_columns():
    df = pd.DataFrame([{"enc": e, "skip": s, "seed": i, "rmse": v}
                       for e, s, vs in [("mn", "add", [1, 1.1]), ("mn", "none", [2, 2.1])] for i, v in enumerate(vs)])
    out = compare(df, by=["enc", "skip"], metric="rmse")
    assert (out["a"].iloc[0], out["b"].iloc[0]) == (("mn", "add"), ("mn", "none"))


def test_edge_error_hand_case():
    # a step of 1 m between columns 1 and 2 of a 4x4 map; the prediction is flat: it misses the edge entirely
    target = torch.ones(1, 1, 4, 4)
    target[..., 2:] = 2.0
    flat = torch.full_like(target, 1.5)
    # kornia's normalised Sobel ([-1 0 1; -2 0 2; -1 0 1] / 8): |gx| = 4 * 1 m / 8 = 0.5 m/px on columns 1 and 2,
    # 0 on columns 0 and 3 (reflected border); the image border is not invalid, so all 16 pixels count
    assert edge_error(flat, target).item() == pytest.approx(0.25, abs=1e-3)
    assert edge_error(target.clone(), target).item() == pytest.approx(0.0, abs=1e-6)
    # an invalid column 0: its neighbours (column 1, where the error is) leave the average
    holes = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    holes[..., 0] = False
    assert edge_error(flat, target, holes).item() == pytest.approx(0.5 * 4 / 8, abs=1e-3)  # cols 2, 3 remain
    assert math.isnan(edge_error(flat, target, torch.zeros_like(holes)).item())
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        edge_error(flat[0], target[0])


def test_results_frame_and_mean_spread():
    s = summarize(_runs({"a": [0.70, 0.74], "b": [0.5, 0.52]}), by="model", metrics="delta1")
    rows = results_frame(s, {("a", "delta1"): "toy/a/delta1", ("b", "delta1"): "toy/b/delta1"}, by="model")
    assert rows["key"].tolist() == ["toy/a/delta1", "toy/b/delta1"]
    assert rows["value"].tolist() == pytest.approx([0.72, 0.51])
    assert rows["spread"].iloc[0] == pytest.approx(np.std([0.70, 0.74], ddof=1))
    assert rows["n_seeds"].tolist() == [2, 2] and rows["seeds"].tolist() == ["0,1", "0,1"]
    with pytest.raises(KeyError, match="'c', 'delta1'"):
        results_frame(s, {("c", "delta1"): "toy/c"}, by="model")
    assert mean_spread(0.7234, 0.0121, 2) == "0.723 ± 0.012"
    assert mean_spread(0.7234, float("nan"), 1) == "0.723"
    assert mean_spread(1234.5, 3.0, 1) == "1234" and mean_spread(float("nan"), 0.1, 2) == ""


# ------------------------------------------------------------------------------- runs on a tiny model
class _Tiny(nn.Module):
    """(B, 3, H, W) -> (B, 1, H, W), positive: enough to train a few steps in a test."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(self.net(x)) + 0.1


def _toy_data(n: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(n):
        image = torch.rand(3, 16, 16, generator=g)
        depth = 1.0 + 2.0 * image.mean(0, keepdim=True)
        samples.append({"image": image, "depth": depth, "mask": torch.ones(1, 16, 16, dtype=torch.bool)})
    return samples


def test_train_eval_and_grid_of_seeds():
    from depthlib.train import TrainConfig

    train, val = _toy_data(8, 0), _toy_data(4, 1)

    def one(seed):
        cfg = TrainConfig(epochs=2, batch_size=4, lr=0.01, seed=seed, schedule="none", progress=False)
        return train_eval(_Tiny, train=train, config=cfg, evaluations={"val": val}, predict_on=val[:2], edges=True)

    result = run_grid(grid(seed=[0, 1]), one)
    table = result.table
    assert {"params", "train_loss", "val_rmse", "val_delta1", "val_edge_error", "train_time_s"} <= set(table.columns)
    assert (table["diverged"] == 0).all() and (table["val_edge_error"] > 0).all()
    assert table["params"].iloc[0] == sum(p.numel() for p in _Tiny().parameters())
    assert table["val_rmse"].iloc[0] != table["val_rmse"].iloc[1]  # the seed changes the init and the order
    assert len(result.curves) == 4 and result.curves["epoch"].tolist() == [1, 2, 1, 2]
    assert result.outputs[0]["predictions"].shape == (2, 1, 16, 16)
    # the same seed again gives the same run (deterministic CPU training)
    again = one(0)
    assert again["val_rmse"] == pytest.approx(table["val_rmse"].iloc[0], abs=0)


def test_train_eval_records_a_diverged_run():
    from depthlib.train import TrainConfig

    # a linear model stepped with lr 1e38: the second batch's prediction overflows float32, so its loss is inf
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e38, momentum=0.0, weight_decay=0.0, seed=0, schedule="none",
                      progress=False)
    out = train_eval(lambda: nn.Conv2d(3, 1, 1), train=_toy_data(8, 0), config=cfg,
                     evaluations={"val": _toy_data(2, 1)}, on_nonfinite="record")
    assert out["diverged"] == 1 and math.isnan(out["train_loss"]) and "val_rmse" not in out
    with pytest.raises(FloatingPointError):
        train_eval(lambda: nn.Conv2d(3, 1, 1), train=_toy_data(8, 0), config=cfg)


def test_train_eval_refuses_overrides_with_a_factory():
    from depthlib.train import TrainConfig

    with pytest.raises(ValueError, match="preset name"):
        train_eval(_Tiny, train=_toy_data(2, 0), config=TrainConfig(), model_overrides={"skip": "add"})


def test_predict_takes_the_images_as_they_are():
    model = _Tiny()
    data = _toy_data(3, 2)
    out = predict(model, data, batch_size=2)
    assert out.shape == (3, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(out, model.eval()(torch.stack([d["image"] for d in data])))
    both = predict(model, data, with_targets=True)
    assert torch.allclose(both["pred"], out, atol=1e-6) and both["depth"].shape == both["mask"].shape == (3, 1, 16, 16)


def test_lr_search_returns_a_suggestion_inside_the_sweep():
    from depthlib.train import TrainConfig

    cfg = TrainConfig(batch_size=4, progress=False)
    out = lr_search(_Tiny, _toy_data(8, 0), cfg, start_lr=1e-4, end_lr=1.0, num_iter=12, skip_start=2,
                    skip_end=1)
    assert 1e-4 <= out["suggested_lr"] <= 1.0
    assert {"lr", "loss"} <= set(out["curve"].columns)


def test_complexity_table_counts_params():
    table = complexity_table({"tiny": _Tiny, "conv": lambda: nn.Conv2d(3, 1, 1)}, input_size=(1, 3, 16, 16),
                             latency=True, repeats=2, warmup=1)
    assert table.loc["tiny", "params"] == sum(p.numel() for p in _Tiny().parameters())
    assert table.loc["conv", "params"] == 4
    assert table.loc["conv", "macs"] == 3 * 16 * 16  # 1x1 conv, 3 -> 1 channels, 16x16 outputs
    assert table.loc["conv", "gmacs"] == pytest.approx(3 * 16 * 16 / 1e9)
    assert (table["latency_ms"] > 0).all()


# ------------------------------------------------------------------------------ data and reported checks
def test_complexity_checks_match_the_reported_entries():
    from depthlib.profiler import COMPLEXITY_CHECKS
    from depthlib.models import list_models
    from depthlib.reported import load_reported

    reported = load_reported()
    keys = [c[0] for c in COMPLEXITY_CHECKS]
    assert len(keys) == len(set(keys))
    # the scorecard chapter records exactly the entries that name it as their notebook
    assert set(keys) == set(reported.index[reported["notebook"] == "05_scorecard"])
    assert {c[1] for c in COMPLEXITY_CHECKS} <= set(list_models())


def test_reproduce_complexity_counts_fastdepth():
    from depthlib.profiler import COMPLEXITY_CHECKS, reproduce_complexity
    from depthlib.models import create_model

    out = reproduce_complexity(presets=["fastdepth"])
    assert out["key"].tolist() == [c[0] for c in COMPLEXITY_CHECKS if c[1] == "fastdepth"]
    assert out["value"].iloc[0] == sum(p.numel() for p in create_model("fastdepth").parameters())


def test_chapter_data_synth_is_cached_and_sized():
    from depthlib.book import cached
    from depthlib.data import chapter_data

    calls = []

    def cache(key, spec, fn):
        calls.append(key)
        return cached(key, spec, fn)

    data = chapter_data("synth", size=(32, 32), n_train=3, n_val=2, seed=5, cache=cache)
    assert calls == ["data/synth", "data/synth"]
    assert len(data["train"]) == 3 and set(data["evaluations"]) == {"synth"} and data["primary"] == "synth"
    assert data["train"][0]["image"].shape == (3, 32, 32) and data["train"][0]["depth"].shape == (1, 32, 32)
    again = chapter_data("synth", size=(32, 32), n_train=3, n_val=2, seed=5)  # no cache: rendered again
    assert torch.equal(again["train"][2]["depth"], data["train"][2]["depth"])
    assert "synth indoor 3 @32x32" in data["describe"]
    with pytest.raises(ValueError, match="train='kitti'"):
        chapter_data("kitti", size=(32, 32), n_train=1, n_val=1)


def test_chapter_data_with_the_real_nyu_pairs(shared_nyu_data):
    from depthlib.data import chapter_data

    data = chapter_data("synth", size=(32, 64), n_train=2, n_val=2, nyu_root=shared_nyu_data)
    assert data["primary"] == "nyu" and data["evaluations"]["nyu"][0]["depth"].shape == (1, 32, 64)
    assert data["spec"]["nyu"] == len(data["evaluations"]["nyu"]) > 0


def test_build_model_takes_the_profiles_none_as_random_init():
    from depthlib.train.runs import build_model

    a = build_model("fastdepth", 0, "none", {"encoder": "resnet18"})
    b = build_model("fastdepth", 0, None, {"encoder": "resnet18"})
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.weights is None and a.normalization is None


# ------------------------------------------------------------------------------------------------- output start

def test_output_bias_mean_is_the_mean_valid_depth_of_the_training_samples():
    from depthlib.train import mean_valid_depth
    from depthlib.train.runs import _output_bias

    data = _toy_data(6, 0)
    valid = torch.cat([d["depth"][d["mask"]] for d in data]).double()
    assert _output_bias("mean", data) == pytest.approx(float(valid.mean()), rel=1e-9)
    assert mean_valid_depth(data) == pytest.approx(float(valid.mean()), rel=1e-9)
    # two samples spread over the six: the first and the last
    ends = torch.cat([d["depth"][d["mask"]] for d in (data[0], data[5])]).double()
    assert mean_valid_depth(data, max_samples=2) == pytest.approx(float(ends.mean()), rel=1e-9)
    assert _output_bias(2.5, data) == 2.5 and _output_bias(None, data) is None
    with pytest.raises(ValueError, match="empty"):
        mean_valid_depth([])


@pytest.mark.parametrize("value, message", [("median", "'mean'"), (-1.0, "positive finite"), (True, "positive finite"),
                                            (float("nan"), "positive finite")])
def test_output_bias_refuses_bad_values(value, message):
    from depthlib.train.runs import _output_bias

    with pytest.raises(ValueError, match=message):
        _output_bias(value, _toy_data(2, 0))


def test_init_output_bias_with_a_small_weight_starts_every_pixel_near_the_bias():
    from depthlib.models import create_model

    x = torch.rand(2, 3, 64, 64)
    for name in ("mbv2-fbnet-x112", "fastdepth"):  # a conv head with bias, and a conv + BatchNorm head
        torch.manual_seed(0)
        net = create_model(name).eval()
        assert net.init_output_bias(3.0, weight_scale=1e-6)
        with torch.no_grad():
            y = net(x)
        assert torch.allclose(y, torch.full_like(y, 3.0), atol=1e-3), name
        with pytest.raises(ValueError, match="weight_scale"):
            net.init_output_bias(3.0, weight_scale=0.0)


def test_train_eval_output_start_needs_a_head_and_a_bias():
    from depthlib.train import TrainConfig

    cfg = TrainConfig(epochs=1, batch_size=4, lr=0.01, seed=0, schedule="none", progress=False)
    with pytest.raises(ValueError, match="no bias before a final ReLU"):
        train_eval(lambda: nn.Conv2d(3, 1, 1), train=_toy_data(4, 0), config=cfg, output_bias="mean")
    with pytest.raises(ValueError, match="needs output_bias"):
        train_eval(lambda: nn.Conv2d(3, 1, 1), train=_toy_data(4, 0), config=cfg, output_scale=0.1)


# ------------------------------------------------------------------------------------------------- rankings

def _ranked_runs(means, seeds=(0, 1, 2), noise=0.01):
    rows = []
    for i, (name, m) in enumerate(means.items()):
        for s in seeds:
            rows.append({"row": name, "seed": s, "rmse": m + noise * ((s * 7 + i * 3) % 5 - 2)})
    return pd.DataFrame(rows)


def test_rank_agreement_is_kendalls_tau_of_the_means():
    from depthlib.stats import rank_agreement

    ours = {"a": 0.5, "b": 0.6, "c": 0.7, "d": 0.8, "e": 0.9}
    df = _ranked_runs(ours)
    same, ranks = rank_agreement(df, "row", "rmse", {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}, n_resamples=200)
    assert same["tau"] == pytest.approx(1.0) and same["low"] == pytest.approx(1.0) and same["p_agree"] == 1.0
    assert ranks["ours"].tolist() == [1, 2, 3, 4, 5] and ranks["paper_rank"].tolist() == [1, 2, 3, 4, 5]
    assert same["n"] == 5 and same["n_runs"] == 15
    # one swapped pair of ten: tau = (9 - 1) / 10, and scipy agrees
    swapped, _ = rank_agreement(df, "row", "rmse", {"a": 2, "b": 1, "c": 3, "d": 4, "e": 5}, n_resamples=0)
    means = df.groupby("row")["rmse"].mean()
    assert swapped["tau"] == pytest.approx(stats.kendalltau(means[list("abcde")], [2, 1, 3, 4, 5]).statistic)
    assert swapped["tau"] == pytest.approx(0.8) and math.isnan(swapped["low"])
    # higher is better: the paper's largest value is its rank 1
    flipped, _ = rank_agreement(df, "row", "rmse", {"a": 5, "b": 4, "c": 3, "d": 2, "e": 1}, higher_is_better=True,
                                n_resamples=0)
    assert flipped["tau"] == pytest.approx(-1.0)


def test_rank_agreement_interval_widens_with_seed_noise_and_is_deterministic():
    from depthlib.stats import rank_agreement

    ours = {"a": 0.50, "b": 0.51, "c": 0.52, "d": 0.53}
    ref = {"a": 1, "b": 2, "c": 3, "d": 4}
    quiet, _ = rank_agreement(_ranked_runs(ours, noise=0.0001), "row", "rmse", ref, n_resamples=300)
    noisy, _ = rank_agreement(_ranked_runs(ours, noise=0.05), "row", "rmse", ref, n_resamples=300)
    assert quiet["high"] - quiet["low"] < noisy["high"] - noisy["low"]
    again, _ = rank_agreement(_ranked_runs(ours, noise=0.05), "row", "rmse", ref, n_resamples=300)
    assert again == noisy


def test_rank_agreement_refuses_too_few_rows_and_bad_options():
    from depthlib.stats import rank_agreement

    df = _ranked_runs({"a": 0.5, "b": 0.6, "c": 0.7})
    with pytest.raises(ValueError, match="at least 3"):
        rank_agreement(df, "row", "rmse", {"a": 1, "b": 2, "x": 3})
    with pytest.raises(ValueError, match="confidence"):
        rank_agreement(df, "row", "rmse", {"a": 1, "b": 2, "c": 3}, confidence=1.5)
    with pytest.raises(KeyError, match="no column"):
        rank_agreement(df, "row", "delta1", {"a": 1, "b": 2, "c": 3})


def test_survival_text_names_what_survives_either_way_and_counts_the_rest():
    import pandas as pd

    from depthlib.stats import compare, survival_text

    runs = pd.DataFrame({"arm": ["base"] * 3 + ["better"] * 3 + ["worse"] * 3 + ["same"] * 3,
                         "whdr": [0.30, 0.31, 0.29, 0.20, 0.21, 0.19, 0.40, 0.41, 0.39, 0.30, 0.29, 0.31]})
    verdicts = compare(runs, by="arm", metric="whdr",
                       pairs=[("better", "base"), ("worse", "base"), ("same", "base")]).assign(metric="WHDR")
    text = survival_text(verdicts)
    assert text.startswith("1 of 3 comparisons survive the seeds as the paper claims: **better** better than "
                           "**base** on WHDR")
    assert "1 survives the other way: **worse** worse than **base** on WHDR" in text
    assert "the other 1 is within the seed noise." in text
    # higher is better: the same numbers read the other way
    flipped = survival_text(verdicts, lower_is_better=False)
    assert "**worse** better than **base**" in flipped and "**better** worse than **base**" in flipped
    one_seed = compare(runs.iloc[[0, 1, 3]], by="arm", metric="whdr", pairs=[("better", "base")])
    assert survival_text(one_seed) == ("0 of 1 comparisons survive the seeds as the paper claims; "
                                       "1 cannot be tested (one seed, or no spread).")
    with pytest.raises(KeyError, match="survives"):
        survival_text(verdicts.drop(columns="survives"))
