"""Transforms keep image, depth, mask, pairs and intrinsics aligned, and scale depth correctly
(hypothesis property tests on coordinate-coded samples)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from depthlib.data.transforms import (
    CenterCrop,
    Compose,
    HorizontalFlip,
    Resize,
    Rotate,
    diw_transform,
    fastdepth_train_transform,
    fastdepth_val_transform,
    mai2021_transform,
    scale_depth,
)

FAST = settings(max_examples=25, deadline=None)


def coded_sample(h: int, w: int, pairs: torch.Tensor | None = None) -> dict:
    """A sample whose depth encodes each pixel's source coordinates (id = y * w + x + 1) and whose image
    channels are the normalised source coordinates, so alignment can be read back after any transform."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    image = torch.stack([xs / max(w - 1, 1), ys / max(h - 1, 1), torch.zeros(h, w)]).float()
    depth = (ys * w + xs + 1).float().unsqueeze(0)
    s = {"image": image, "depth": depth, "mask": torch.ones(1, h, w, dtype=torch.bool), "path": "coded",
         "intrinsics": torch.tensor([0.9 * w, 0.9 * w, (w - 1) / 2 + 1.5, (h - 1) / 2 - 2.0])}
    if pairs is not None:
        s["pairs"] = pairs
    return s


def decode(depth_value: torch.Tensor, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    ident = depth_value.long() - 1
    return ident // w, ident % w


sizes = st.tuples(st.integers(8, 40), st.integers(8, 40))


def random_pairs(h: int, w: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(h, (k,), generator=g), torch.randint(w, (k,), generator=g),
                        torch.randint(h, (k,), generator=g), torch.randint(w, (k,), generator=g)], 1)


def check_alignment(out: dict, h: int, w: int, tol_y: float, tol_x: float) -> None:
    """Depth (nearest) and image (bilinear) must name the same source location, up to the resampling
    footprint; the mask must be exactly where depth is valid."""
    valid = out["mask"][0]
    assert torch.equal(valid, out["depth"][0] > 0)
    sy, sx = decode(out["depth"][0][valid], w)
    img_x = out["image"][0][valid] * (w - 1)
    img_y = out["image"][1][valid] * (h - 1)
    assert (sx.float() - img_x).abs().max() <= tol_x
    assert (sy.float() - img_y).abs().max() <= tol_y


@FAST
@given(src=sizes, dst=sizes, seed=st.integers(0, 1000))
def test_resize_keeps_everything_aligned(src, dst, seed):
    (h, w), (nh, nw) = src, dst
    s = coded_sample(h, w, random_pairs(h, w, 5, seed))
    out = Resize((nh, nw))(s)
    assert out["image"].shape == (3, nh, nw) and out["depth"].shape == (1, nh, nw)
    # Nearest depth never invents values: every output depth is a source id.
    assert torch.isin(out["depth"], s["depth"]).all()
    check_alignment(out, h, w, tol_y=max(1.0, h / nh) + 0.5, tol_x=max(1.0, w / nw) + 0.5)
    # Each moved pair lands on a pixel whose source is within one source-pixel footprint of the original.
    py, px = decode(out["depth"][0][out["pairs"][:, 0], out["pairs"][:, 1]], w)
    assert ((py - s["pairs"][:, 0]).abs() <= math.ceil(h / nh)).all()
    assert ((px - s["pairs"][:, 1]).abs() <= math.ceil(w / nw)).all()
    # Intrinsics: the ray through a pair's source pixel is the ray through its new pixel.
    fx, fy, cx, cy = s["intrinsics"]
    nfx, nfy, ncx, ncy = out["intrinsics"]
    ray_src = (s["pairs"][:, 1] - cx) / fx
    ray_dst = (out["pairs"][:, 1] - ncx) / nfx
    assert (ray_src - ray_dst).abs().max() <= (1.0 + w / nw) / fx


@FAST
@given(src=sizes, seed=st.integers(0, 1000), data=st.data())
def test_center_crop_keeps_everything_aligned(src, seed, data):
    h, w = src
    ch, cw = data.draw(st.integers(1, h)), data.draw(st.integers(1, w))
    s = coded_sample(h, w, random_pairs(h, w, 5, seed))
    out = CenterCrop((ch, cw))(s)
    check_alignment(out, h, w, tol_y=1e-4, tol_x=1e-4)
    top, left = round((h - ch) / 2), round((w - cw) / 2)
    py, px = decode(out["depth"][0][out["pairs"][:, 0], out["pairs"][:, 1]], w)
    inside = ((s["pairs"][:, 0] >= top) & (s["pairs"][:, 0] < top + ch) & (s["pairs"][:, 1] >= left)
              & (s["pairs"][:, 1] < left + cw))
    assert torch.equal(py[inside], s["pairs"][inside, 0]) and torch.equal(px[inside], s["pairs"][inside, 1])
    assert torch.allclose(out["intrinsics"][2:], s["intrinsics"][2:] - torch.tensor([left, top]).float())


@FAST
@given(src=sizes, seed=st.integers(0, 1000))
def test_flip_keeps_everything_aligned(src, seed):
    h, w = src
    s = coded_sample(h, w, random_pairs(h, w, 5, seed))
    out = HorizontalFlip()(s)
    check_alignment(out, h, w, tol_y=1e-4, tol_x=1e-4)
    py, px = decode(out["depth"][0][out["pairs"][:, 2], out["pairs"][:, 3]], w)
    assert torch.equal(py, s["pairs"][:, 2]) and torch.equal(px, s["pairs"][:, 3])
    assert out["intrinsics"][2] == pytest.approx(float(w - 1 - s["intrinsics"][2]))
    assert torch.equal(HorizontalFlip()(out)["depth"], s["depth"])


@FAST
@given(angle=st.floats(-5.0, 5.0), seed=st.integers(0, 1000))
def test_rotation_keeps_everything_aligned(angle, seed):
    h, w = 40, 48
    s = coded_sample(h, w, random_pairs(h, w, 5, seed))
    out = Rotate(angle)(s)
    # Bilinear image vs nearest depth: half a pixel of each, plus rounding.
    interior = torch.zeros(1, h, w, dtype=torch.bool)
    interior[:, 3:-3, 3:-3] = True
    out["mask"] = out["mask"] & interior
    out["depth"] = out["depth"] * out["mask"]
    check_alignment(out, h, w, tol_y=1.01, tol_x=1.01)
    # Pairs that stay inside follow their pixel (within one pixel of nearest resampling).
    p = out["pairs"]
    ok = (p[:, 0] > 0) & (p[:, 0] < h - 1) & (p[:, 1] > 0) & (p[:, 1] < w - 1)
    py, px = decode(out["depth"][0][p[:, 0], p[:, 1]].clamp_min(1), w)
    hit = ok & (out["depth"][0][p[:, 0], p[:, 1]] > 0)
    assert ((py - s["pairs"][:, 0]).abs() <= 1)[hit].all() and ((px - s["pairs"][:, 1]).abs() <= 1)[hit].all()


@FAST
@given(scale=st.floats(1.0, 1.5), src=sizes)
def test_scale_divides_depth_and_scales_focal(scale, src):
    h, w = src
    s = coded_sample(h, w)
    s["depth"] = torch.rand(1, h, w) * 9 + 0.5
    out = scale_depth(s, scale)
    nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
    assert out["depth"].shape == (1, nh, nw)
    # Nearest resampling picks source depths, then each is divided by the scale.
    assert torch.isin(out["depth"], s["depth"] / scale).all()
    assert float(out["depth"].max()) <= float(s["depth"].max()) / scale * (1 + 1e-6)
    assert out["intrinsics"][0] == pytest.approx(float(s["intrinsics"][0]) * nw / w)


def test_invalid_depth_does_not_bleed():
    s = coded_sample(480, 640)
    s["depth"][:, :, ::3] = 0.0  # every third column invalid, like sparse sensor depth
    s["mask"][:, :, ::3] = False
    out = fastdepth_val_transform()(s)
    assert torch.equal(out["mask"], out["depth"] > 0)
    assert torch.isin(out["depth"][out["mask"]], s["depth"][s["mask"]]).all()


def test_protocol_output_sizes():
    s = coded_sample(480, 640, torch.tensor([[100, 200, 300, 400]]))
    assert fastdepth_val_transform()(s)["image"].shape == (3, 224, 224)
    torch.manual_seed(0)
    t = fastdepth_train_transform()(s)
    assert t["image"].shape == (3, 224, 224) and t["depth"].shape == (1, 224, 224)
    assert torch.equal(t["mask"], t["depth"] > 0)
    assert mai2021_transform()(s)["depth"].shape == (1, 128, 160)
    d = diw_transform()(s)
    assert d["image"].shape == (3, 224, 448)
    assert d["pairs"].tolist() == [[46, 140, 140, 280]]


def test_fastdepth_val_matches_its_definition():
    s = coded_sample(480, 640)
    manual = Compose([Resize(250 / 480), CenterCrop((228, 304)), Resize((224, 224))])(s)
    assert torch.equal(fastdepth_val_transform()(s)["depth"], manual["depth"])
    # 480x640 -> 250x333 -> crop 228x304 -> 224x224: fx scales by 333/640 * 224/304.
    assert fastdepth_val_transform()(s)["intrinsics"][0] == pytest.approx(0.9 * 640 * 333 / 640 * 224 / 304, rel=1e-5)


def test_no_protocol_transform_normalises_the_image():
    # the model normalises (model.normalization); a transform that did too would normalise twice
    s = coded_sample(480, 640)
    for transform in (fastdepth_val_transform(), mai2021_transform()):
        out = transform(s)["image"]
        assert out.min() >= 0 and out.max() <= 1
    import depthlib.data.transforms as T

    assert not hasattr(T, "ImageNetNormalize")


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="size"):
        Resize((0, 4))
    with pytest.raises(ValueError, match="CenterCrop: crop 10x10 is larger"):
        CenterCrop((10, 10))(coded_sample(8, 8))
