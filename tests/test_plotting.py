"""depthlib.plotting: shared colour scales in metres, masked invalid pixels, labelled axes, Pareto fronts."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from depthlib import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _depth(h=6, w=8, scale=1.0):
    depth = torch.linspace(0.5, 4.0, h * w).reshape(1, h, w) * scale
    depth[0, 0, 0] = 0.0  # an invalid pixel
    return depth


def test_to_image_and_to_depth_accept_depthlib_layouts():
    assert plotting.to_image(torch.rand(3, 4, 5)).shape == (4, 5, 3)
    assert plotting.to_image(torch.rand(1, 3, 4, 5)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"got shape \(2, 4, 5\)"):
        plotting.to_image(torch.rand(2, 4, 5))
    d = plotting.to_depth(_depth())
    assert d.shape == (6, 8) and d.mask[0, 0] and d.count() == 47
    mask = torch.ones(1, 6, 8, dtype=torch.bool)
    mask[0, 5, 7] = False
    assert plotting.to_depth(_depth(), mask).count() == 46
    with pytest.raises(ValueError, match="one channel"):
        plotting.to_depth(torch.rand(2, 6, 8))


def test_depth_norm_starts_at_zero_metres_and_uses_the_ground_truth():
    norm = plotting.depth_norm(_depth(), max_depth=10.0)
    assert (norm.vmin, norm.vmax) == (0.0, 10.0)
    gt = _depth()
    norm = plotting.depth_norm(gt, gt * 3, percentile=100)
    assert norm.vmax == pytest.approx(4.0)   # the first map (ground truth) sets the scale
    with pytest.raises(ValueError, match="max_depth must be > 0"):
        plotting.depth_norm(max_depth=0.0)


def test_plot_depth_grid_shares_one_scale_per_row_and_labels_metres():
    images = torch.rand(2, 3, 6, 8)
    depths = torch.stack([_depth(), _depth(scale=2.0)])
    preds = {"model": depths * 1.25}
    fig = plotting.plot_depth_grid(images, depths, preds, max_depth=None)
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 6
    for row in range(2):
        gt_im, pred_im = panels[3 * row + 1].get_images()[0], panels[3 * row + 2].get_images()[0]
        assert gt_im.norm is pred_im.norm                       # prediction on the ground truth's scale
        assert gt_im.norm.vmin == 0.0
    assert panels[1].get_images()[0].norm.vmax != panels[4].get_images()[0].norm.vmax
    colorbars = [ax for ax in fig.axes if not ax.get_images()]
    assert len(colorbars) == 2 and all("depth (m)" in ax.get_ylabel() for ax in colorbars)
    assert all(ax.get_xlabel() == "x (pixel)" and ax.get_ylabel() == "y (pixel)" for ax in panels)
    with pytest.raises(ValueError, match="2 images but 1 depths"):
        plotting.plot_depth_grid(images, depths[:1])


def test_invalid_pixels_are_masked_not_drawn_as_near():
    fig, ax = plt.subplots()
    im = plotting.plot_depth(ax, _depth())
    data = im.get_array()
    assert np.ma.is_masked(data) and data.mask[0, 0]
    assert tuple(im.cmap.get_bad()[:3]) != tuple(im.cmap(0.0)[:3])
    assert fig.axes[-1].get_ylabel() == "depth (m)"


def test_plot_error_and_histogram_have_units():
    fig, (a, b) = plt.subplots(1, 2)
    gt = _depth()
    im = plotting.plot_error(a, gt * 1.1, gt)
    assert im.get_array().max() == pytest.approx(0.4, rel=1e-4)
    assert fig.axes[-1].get_ylabel() == "absolute error (m)"
    plotting.plot_depth_histogram(b, {"gt": gt})
    assert b.get_xlabel() == "depth (m)" and b.get_ylabel() == "density (1/m)"


def test_plot_ordinal_pairs_checks_shapes():
    fig, ax = plt.subplots()
    pairs = torch.tensor([[1, 1, 4, 6], [2, 3, 5, 0]])
    plotting.plot_ordinal_pairs(ax, torch.rand(3, 6, 8), pairs, torch.tensor([1, -1]))
    assert ax.get_xlabel() == "x (pixel)" and len(ax.lines) == 2
    with pytest.raises(ValueError, match=r"pairs must be \(K, 4\)"):
        plotting.plot_ordinal_pairs(ax, torch.rand(3, 6, 8), pairs[:, :3], torch.tensor([1, -1]))


def test_pareto_front_keeps_non_dominated_rows():
    df = pd.DataFrame({"name": list("abcde"), "latency_ms": [10, 20, 30, 15, 40], "rmse": [0.8, 0.6, 0.5, 0.9, 0.55]})
    front = plotting.pareto_front(df, "latency_ms", "rmse")
    assert front["name"].tolist() == ["a", "b", "c"]           # d is slower and worse than a, e than c
    delta = df.assign(delta1=1 - df["rmse"])
    assert plotting.pareto_front(delta, "latency_ms", "delta1", minimize_y=False)["name"].tolist() == ["a", "b", "c"]
    with pytest.raises(ValueError, match="no column 'ms'"):
        plotting.pareto_front(df, "ms", "rmse")
    fig, ax = plt.subplots()
    plotting.plot_pareto(ax, df, "latency_ms", "rmse", label="name", xlabel="CPU latency (ms)", ylabel="RMSE (m)")
    assert ax.get_xlabel() == "CPU latency (ms)"
