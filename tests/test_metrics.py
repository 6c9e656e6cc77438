"""depthlib.metrics: hand-computed metrics, conventions (reduction, crop, caps), streaming, WHDR, alignment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depthlib.metrics import (
    METRIC_NAMES,
    DepthMetrics,
    NegativeDepthWarning,
    align_scale_shift,
    crop_box,
    depth_metrics,
    fit_scale_shift,
    relation_from_depth,
    whdr,
)


def np_metrics(p: np.ndarray, t: np.ndarray) -> dict[str, float]:
    """The textbook definitions on already-selected valid pixels, in numpy."""
    d = np.log(p) - np.log(t)
    ratio = np.maximum(p / t, t / p)
    n = p.size
    return {
        "rmse": math.sqrt(((p - t) ** 2).mean()),
        "mae": np.abs(p - t).mean(),
        "absrel": (np.abs(p - t) / t).mean(),
        "sqrel": ((p - t) ** 2 / t).mean(),
        "log10": np.abs(np.log10(p) - np.log10(t)).mean(),
        "rmse_log": math.sqrt((d**2).mean()),
        "delta1": (ratio < 1.25).mean(),
        "delta2": (ratio < 1.25**2).mean(),
        "delta3": (ratio < 1.25**3).mean(),
        # MAI 2021: sqrt(sum d^2 / n - (sum d)^2 / n^2)
        "si_rmse": math.sqrt((d**2).sum() / n - d.sum() ** 2 / n**2),
    }


def test_hand_computed_2x2():
    pred = torch.tensor([[1.0, 2.5], [4.0, 9.0]])
    target = torch.tensor([[1.0, 2.0], [5.0, 0.0]])  # 0 = invalid
    got = depth_metrics(pred, target)
    # valid pairs (p, t): (1, 1), (2.5, 2), (4, 5)
    assert got["rmse"] == pytest.approx(math.sqrt((0 + 0.25 + 1) / 3))
    assert got["mae"] == pytest.approx((0 + 0.5 + 1) / 3)
    assert got["absrel"] == pytest.approx((0 + 0.25 + 0.2) / 3)
    assert got["sqrel"] == pytest.approx((0 + 0.125 + 0.2) / 3)
    assert got["log10"] == pytest.approx((0 + math.log10(1.25) + math.log10(1.25)) / 3)
    assert got["rmse_log"] == pytest.approx(math.sqrt(2 * math.log(1.25) ** 2 / 3))
    # ratios 1, 1.25, 1.25: 1.25 is not < 1.25 (float64 exact here)
    assert got["delta1"] == pytest.approx(1 / 3)
    assert got["delta2"] == 1.0 and got["delta3"] == 1.0
    d = np.array([0.0, math.log(1.25), -math.log(1.25)])
    assert got["si_rmse"] == pytest.approx(math.sqrt((d**2).mean() - d.mean() ** 2))
    assert set(got) == set(METRIC_NAMES)


def test_random_against_numpy_both_reductions():
    rng = np.random.default_rng(0)
    p, t = rng.uniform(0.5, 8, (3, 1, 6, 7)), rng.uniform(0.5, 8, (3, 1, 6, 7))
    t[0, 0, :2, :3] = 0
    t[2, 0, 4:, :] = 0
    per_image = [np_metrics(p[b][t[b] > 0], t[b][t[b] > 0]) for b in range(3)]
    pooled = np_metrics(p[t > 0], t[t > 0])
    got_img = depth_metrics(torch.from_numpy(p), torch.from_numpy(t), reduction="per_image")
    got_pix = depth_metrics(torch.from_numpy(p), torch.from_numpy(t), reduction="pixel")
    for k in METRIC_NAMES:
        assert got_img[k] == pytest.approx(np.mean([m[k] for m in per_image]), rel=1e-12), k
        assert got_pix[k] == pytest.approx(pooled[k], rel=1e-12), k
    assert got_img["rmse"] != pytest.approx(got_pix["rmse"], rel=1e-6)  # the convention matters


def test_per_image_vs_pixel_hand():
    # image 1: one valid pixel with error 2; image 2: three valid pixels with error 0
    pred = torch.tensor([[[[3.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 0.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 0.0]]]])
    assert depth_metrics(pred, target, reduction="per_image")["mae"] == pytest.approx((2 + 0) / 2)
    assert depth_metrics(pred, target, reduction="pixel")["mae"] == pytest.approx(2 / 4)


def test_si_rmse_is_scale_invariant_and_clamps_below_one_millimetre():
    rng = np.random.default_rng(1)
    t = torch.from_numpy(rng.uniform(0.5, 5, (1, 1, 5, 5)))
    assert depth_metrics(3.7 * t, t)["si_rmse"] == pytest.approx(0.0, abs=1e-7)
    # a prediction of 0 (or negative) counts as 1 mm, as the MAI 2021 evaluation does
    p = t.clone()
    p[0, 0, 0, 0] = -2.0
    d = np.log(p.numpy().clip(1e-3)) - np.log(t.numpy())
    expected = math.sqrt((d**2).sum() / 25 - d.sum() ** 2 / 625)
    with pytest.warns(NegativeDepthWarning, match="1 of 25 valid pixels"):  # clamped, but not silently
        assert depth_metrics(p, t)["si_rmse"] == pytest.approx(expected)
    # targets at or below 1 mm are not valid
    t2 = t.clone()
    t2[0, 0, 0, 0] = 0.0005
    m = depth_metrics(t, t2)  # pred = t is perfect on every valid pixel
    assert m["rmse"] == pytest.approx(0.0, abs=1e-12)


def test_max_depth_caps_targets_and_clamps_predictions():
    pred = torch.tensor([[12.0, 5.0], [2.0, 3.0]])
    target = torch.tensor([[9.0, 11.0], [2.0, 3.0]])
    m = depth_metrics(pred, target, max_depth=10.0)
    # target 11 > 10 is left out; prediction 12 is clamped to 10 against target 9
    assert m["mae"] == pytest.approx(1 / 3)
    assert depth_metrics(pred, target)["mae"] == pytest.approx((3 + 6) / 4)


def test_crops():
    assert crop_box("eigen", 480, 640) == (45, 471, 41, 601)
    assert crop_box("eigen", 240, 320) == (22, 236, 20, 300)  # round(22.5) = 22 (banker's), 235.5 -> 236
    with pytest.raises(ValueError, match="480x640"):
        crop_box("eigen", 224, 224)
    assert crop_box("garg", 375, 1242) == (153, 371, 44, 1197)
    assert crop_box((1, 3, 0, 2), 4, 4) == (1, 3, 0, 2)
    with pytest.raises(ValueError, match="does not fit"):
        crop_box((0, 5, 0, 2), 4, 4)
    with pytest.raises(ValueError, match="not a known crop"):
        crop_box("nyu", 480, 640)
    # only the box counts: an error outside it is invisible
    target = torch.ones(1, 1, 480, 640)
    pred = torch.ones(1, 1, 480, 640)
    pred[..., :45, :] = 5.0
    assert depth_metrics(pred, target, crop="eigen")["rmse"] == 0.0
    assert depth_metrics(pred, target)["rmse"] > 0


def test_streaming_equals_one_call_exactly():
    g = torch.Generator().manual_seed(2)
    pred = torch.rand(7, 1, 12, 16, generator=g) * 9 + 0.5
    target = torch.rand(7, 1, 12, 16, generator=g) * 9 + 0.5
    target[target < 2] = 0
    mask = target > 0
    mask[3, 0, :, :8] = False
    for reduction in ("per_image", "pixel"):
        one = depth_metrics(pred, target, mask, reduction=reduction, crop=(1, 11, 2, 15), max_depth=8.0)
        acc = DepthMetrics(reduction, crop=(1, 11, 2, 15), max_depth=8.0)
        for sl in (slice(0, 3), slice(3, 4), slice(4, 7)):
            acc.update(pred[sl], target[sl], mask[sl])
        assert acc.compute() == one  # bit-identical, not approximately equal
        assert acc.num_images == 7
    assert acc.per_image()["rmse"].shape == (7,)


def test_image_without_valid_pixel_is_skipped_with_warning_and_all_invalid_raises():
    pred = torch.ones(2, 1, 2, 2)
    target = torch.ones(2, 1, 2, 2)
    target[1] = 0
    with pytest.warns(UserWarning, match="1 of 2 images"):
        assert depth_metrics(pred * 2, target)["mae"] == 1.0
    with pytest.raises(ValueError, match="no valid pixel"):
        depth_metrics(pred, torch.zeros(2, 1, 2, 2))


def test_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        depth_metrics(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 3))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        depth_metrics(torch.ones(2, 3, 2, 2), torch.ones(2, 3, 2, 2))
    with pytest.raises(ValueError, match="reduction"):
        depth_metrics(torch.ones(2, 2), torch.ones(2, 2), reduction="mean")
    with pytest.raises(ValueError, match="NaN"):
        depth_metrics(torch.tensor([[float("nan"), 1.0]]), torch.ones(1, 2))
    with pytest.raises(TypeError, match="bool"):
        depth_metrics(torch.ones(2, 2), torch.ones(2, 2), torch.ones(2, 2))


def test_fit_scale_shift_matches_lstsq():
    rng = np.random.default_rng(3)
    p, t = rng.normal(size=(2, 1, 5, 5)), rng.normal(size=(2, 1, 5, 5))
    m = rng.uniform(size=(2, 1, 5, 5)) > 0.3
    s, sh = fit_scale_shift(torch.from_numpy(p), torch.from_numpy(t), torch.from_numpy(m))
    for b in range(2):
        a = np.stack([p[b][m[b]], np.ones(m[b].sum())], 1)
        (es, esh), *_ = np.linalg.lstsq(a, t[b][m[b]], rcond=None)
        assert s[b].item() == pytest.approx(es) and sh[b].item() == pytest.approx(esh)


def test_align_scale_shift_recovers_a_known_affine_map():
    rng = np.random.default_rng(4)
    disparity = torch.from_numpy(rng.uniform(0.1, 1.0, (2, 1, 6, 8)))  # a relative inverse depth
    # metric depth whose inverse is an affine map of the prediction, different per image
    a = torch.tensor([0.8, 2.0], dtype=torch.float64).view(-1, 1, 1, 1)
    b = torch.tensor([0.1, 0.05], dtype=torch.float64).view(-1, 1, 1, 1)
    depth = 1.0 / (a * disparity + b)
    target = depth.clone()
    target[0, 0, :2] = 0  # holes do not matter (the cap must exceed their depth: they may be the farthest)
    aligned = align_scale_shift(disparity, target, space="inverse", max_depth=100.0)
    torch.testing.assert_close(aligned, depth, rtol=1e-10, atol=1e-10)
    # depth space
    rel = torch.from_numpy(rng.uniform(0, 1, (1, 1, 4, 4)))
    torch.testing.assert_close(align_scale_shift(rel, 3.0 * rel + 0.5, space="depth"), 3.0 * rel + 0.5)


def test_align_scale_shift_caps_far_pixels():
    pred = torch.tensor([[[[1.0, 2.0, 3.0, 0.0]]]], dtype=torch.float64)
    target = 1.0 / torch.tensor([[[[1.0, 2.0, 3.0, 1.0]]]], dtype=torch.float64)
    target[..., 3] = 0  # fit on the first three: disparity = pred exactly; pred 0 would be infinitely far
    out = align_scale_shift(pred, target, max_depth=10.0)
    assert out[0, 0, 0, 3].item() == pytest.approx(10.0)
    assert align_scale_shift(pred, target)[0, 0, 0, 3].item() == pytest.approx(1.0)  # largest valid target


def test_relation_convention():
    za, zb = torch.tensor([2.0, 1.0, 1.0, 1.01]), torch.tensor([1.0, 2.0, 1.0, 1.0])
    assert relation_from_depth(za, zb).tolist() == [1, -1, 0, 1]  # +1: A farther
    assert relation_from_depth(za, zb, space="inverse").tolist() == [-1, 1, 0, -1]
    assert relation_from_depth(za, zb, threshold=0.02).tolist() == [1, -1, 0, 0]


def test_whdr_hand():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    pairs = torch.tensor([[0, 1, 0, 0], [1, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0]])  # A-B: 2-1, 3-4, 1-4, 4-1
    relation = torch.tensor([1, 1, -1, -1])  # right, wrong, right, wrong
    assert whdr(pred, pairs, relation) == pytest.approx(0.5)
    assert whdr(pred, pairs, relation, space="inverse") == pytest.approx(0.5)
    assert whdr(pred, pairs, -relation, space="inverse") == pytest.approx(0.5)
    assert whdr(pred, pairs, torch.tensor([1, -1, -1, 1])) == 0.0
    weights = torch.tensor([1.0, 3.0, 1.0, 1.0])
    assert whdr(pred, pairs, relation, weights=weights) == pytest.approx(4 / 6)
    assert whdr(pred, pairs, relation, reduction="sum") == 2.0
    assert whdr(pred, pairs, relation, reduction="none").tolist() == [[0.0, 1.0, 0.0, 1.0]]
    # a threshold turns 3 vs 4 (ratio 1.33) into "equal" when it is above 0.34
    assert whdr(pred, pairs, torch.tensor([1, 0, -1, 1]), threshold=0.4) == pytest.approx(0.0)


def test_whdr_batched_pairs():
    pred = torch.stack([torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 1.0]])])[:, None]
    pairs = torch.tensor([[[0, 0, 0, 1]], [[0, 0, 0, 1]]])  # (B=2, K=1, 4), DIW layout
    relation = torch.tensor([[-1], [-1]])
    assert whdr(pred, pairs, relation) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"\(B, K, 4\)"):
        whdr(pred, pairs[0], relation[0])


def test_fastdepth_reference_sample(shared_fastdepth_sample):
    """FastDepth's own prediction on its deploy sample: RMSE 0.618 m, delta1 0.777 (per pixel, no crop)."""
    target = torch.from_numpy(np.load(shared_fastdepth_sample / "depth.npy"))
    pred = torch.from_numpy(np.load(shared_fastdepth_sample / "pred.npy"))
    m = depth_metrics(pred, target[None, None], reduction="pixel", crop=None)
    assert m["rmse"] == pytest.approx(0.618, abs=5e-4)
    assert m["delta1"] == pytest.approx(0.777, abs=5e-4)


@pytest.mark.parametrize("module", ["depthlib.metrics", "depthlib.losses"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), extraglobs={"torch": torch})
    assert result.attempted > 0 and result.failed == 0
