"""The procedural generator: determinism, ground-truth conventions, monocular cues, and the synth -> nyu_png
round trip through the command."""

from __future__ import annotations

import argparse
import hashlib

import pytest
import torch
from torch.utils.data import default_collate

from depthlib.data import open_dataset
from depthlib.data.cli import add_subcommands
from depthlib.data.synth import INDOOR_DEPTH, OUTDOOR_MAX_DEPTH, render_batch, scene_intrinsics

SIZE = (36, 48)


def _digest(frames: dict) -> str:
    h = hashlib.sha256()
    for key in ("image", "depth", "mask"):
        h.update(frames[key].contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("scene", ["indoor", "outdoor"])
def test_same_seed_and_index_give_same_bytes(scene):
    a = render_batch(7, [3, 4], SIZE, scene)
    b = render_batch(7, [3, 4], SIZE, scene)
    assert _digest(a) == _digest(b)
    # A frame depends on (seed, index) only, not on the batch it is rendered in.
    single = render_batch(7, [4], SIZE, scene)
    assert torch.equal(single["image"][0], a["image"][1]) and torch.equal(single["depth"][0], a["depth"][1])
    other = render_batch(8, [4], SIZE, scene)
    assert not torch.equal(other["depth"][0], single["depth"][0])


# Bytes of two small frames (x86-64, torch 2.14.1 CPU). The generator uses only IEEE-exact float32 operations on
# pixels, and version 1 and the outdoor scenes give the same bytes on every machine seen so far. Version 2's indoor
# frames (issue 9: NYU-like rooms, Kinect noise and holes) do not: an Intel CPU with AVX-512 and an AMD EPYC of
# family 25 model 17 (Zen 4, also AVX-512, bf16 and VNNI) give two different, each reproducible, byte strings.
# On the AMD machine the bytes were the same under ATEN_CPU_CAPABILITY=default, =avx2 and its own avx512,
# MKL_CBWR=COMPATIBLE or SSE4_2, 1 or 2 threads and 1 or 2 render workers, so the operation that differs is not
# found yet; each hash below names the machine it was measured on, and the statistics test after this one
# holds on any machine.
GOLDEN = {
    ("indoor", 2): {"18c06aa2d4b35d9a52573280e54b509f3180eb58e484b891bc92e80d423feb2a",   # Intel, AVX-512
                    "cf3d67f3895bac47c349b0cfe5dfa36bb64e23afae6f24a689bd9dba0f37772c"},  # AMD EPYC Zen 4, AVX-512
    ("indoor", 1): {"ed6e7a0d12b81b4e72c75a39894553d829551cd535b745e74d2220c0c4edc3fa"},
    ("outdoor", 2): {"cfac6ee4c823ffea387645add1a6cf1683f8f9a88af8ff00721d30a5e6c14fcd"},
    ("outdoor", 1): {"cfac6ee4c823ffea387645add1a6cf1683f8f9a88af8ff00721d30a5e6c14fcd"},
}


@pytest.mark.parametrize("scene, version", sorted(GOLDEN))
def test_frames_match_golden_bytes(scene, version):
    assert _digest(render_batch(2024, [0, 1], SIZE, scene, version=version)) in GOLDEN[scene, version]


def test_version_2_indoor_frames_match_golden_statistics():
    # what must hold on every machine, whatever the last bits: measured on the AMD machine above
    out = render_batch(2024, [0, 1], SIZE, "indoor", version=2)
    depth, mask = out["depth"].double(), out["mask"]
    assert float(out["image"].double().mean()) == pytest.approx(0.370513, abs=1e-4)
    assert float(depth.mean()) == pytest.approx(2.352434, abs=1e-4)
    assert float(mask.double().mean()) == pytest.approx(0.989294, abs=2e-3)  # a few Kinect holes may move
    assert float(depth[mask].median()) == pytest.approx(2.069876, abs=1e-3)


def test_indoor_ground_truth_conventions():
    out = render_batch(0, range(4), (48, 64), "indoor")
    image, depth, mask = out["image"], out["depth"], out["mask"]
    assert image.dtype == torch.float32 and depth.dtype == torch.float32 and mask.dtype == torch.bool
    assert torch.equal(mask, depth > 0)
    lo, hi = INDOOR_DEPTH
    assert float(depth[mask].min()) >= lo and float(depth[mask].max()) <= hi
    assert mask.float().mean() > 0.95  # a closed room: almost every pixel has depth
    # 8-bit quantised colours.
    assert torch.equal((image * 255).round() / 255, image)
    assert torch.allclose(out["intrinsics"][0], torch.tensor([518.8579 / 10, 519.4696 / 10, 325.5824 / 10,
                                                              253.7362 / 10]))


def test_outdoor_sky_is_invalid_and_depth_capped():
    out = render_batch(1, range(4), (48, 96), "outdoor")
    depth, mask = out["depth"], out["mask"]
    assert float(depth[mask].max()) <= OUTDOOR_MAX_DEPTH
    # Sky above the horizon: much of the top quarter is invalid, the bottom rows (road) are all valid.
    assert (~mask[:, :, :12]).float().mean() > 0.2
    assert mask[:, :, -4:].all()
    fx, fy = scene_intrinsics("outdoor", (48, 96))[:2]
    assert fx == fy  # square pixels


def test_monocular_cues_present():
    out = render_batch(3, range(6), (60, 80), "indoor")
    depth, image = out["depth"][:, 0], out["image"]
    # Perspective: the floor at the bottom of the frame is nearer than the middle of the frame.
    assert (depth[:, -5:].mean(dim=(1, 2)) < depth[:, 25:35].mean(dim=(1, 2))).all()
    # Shading and texture: the image is far from flat, and brightness varies within each frame.
    assert (image.std(dim=(1, 2, 3)) > 0.03).all()
    # Depth is piecewise smooth with occlusion boundaries: some large jumps between neighbours.
    jumps = (depth[:, :, 1:] - depth[:, :, :-1]).abs()
    assert (jumps > 0.3).any()


def test_dataset_samples_and_pairs():
    ds = open_dataset("synth", n=3, size=SIZE, seed=5, scene="indoor", pairs=16)
    assert len(ds) == 3
    s = ds[2]
    assert s["path"] == "synth:indoor:5:2"
    assert s["image"].shape == (3, *SIZE) and s["depth"].shape == (1, *SIZE) and s["mask"].shape == (1, *SIZE)
    pairs, rel = s["pairs"], s["relation"]
    assert pairs.shape == (16, 4) and rel.shape == (16,) and pairs.dtype == torch.long
    da = s["depth"][0, pairs[:, 0], pairs[:, 1]]
    db = s["depth"][0, pairs[:, 2], pairs[:, 3]]
    assert torch.equal(rel[rel != 0], torch.sign(da - db).long()[rel != 0])
    assert ((da - db).abs() <= 0.02 * torch.maximum(da, db) + 1e-6)[rel == 0].all()
    batch = default_collate([ds[0], ds[1]])
    assert batch["pairs"].shape == (2, 16, 4)


def test_splits_are_disjoint_streams():
    train = open_dataset("synth", split="train", n=1, size=SIZE, seed=0)[0]
    val = open_dataset("synth", split="val", n=1, size=SIZE, seed=0)[0]
    assert not torch.equal(train["depth"], val["depth"])


@pytest.mark.parametrize("options,match", [
    ({"scene": "forest"}, "scene='forest'"),
    ({"n": 0}, "n=0"),
    ({"size": (2, 8)}, "size"),
])
def test_bad_options_are_named(options, match):
    with pytest.raises(ValueError, match=match):
        open_dataset("synth", **options)


def test_synth_takes_no_root():
    with pytest.raises(ValueError, match="no root"):
        open_dataset("synth", "/tmp")


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="depthlib")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize("scene", ["indoor", "outdoor"])
def test_synth_command_round_trips_through_nyu_png(tmp_path, scene):
    assert _run(["synth", "--out", str(tmp_path), "--n", "3", "--size", "36x48", "--seed", "11",
                 "--scene", scene, "--quiet"]) == 0
    written = open_dataset("nyu_png", tmp_path, split="test")
    direct = open_dataset("synth", n=3, size=SIZE, seed=11, scene=scene)
    assert len(written) == 3
    for i in range(3):
        a, b = written[i], direct[i]
        assert torch.equal(a["image"], b["image"])  # 8-bit colours survive the png exactly
        both = a["mask"] & b["mask"]
        assert both.sum() >= 0.99 * b["mask"].sum() if scene == "indoor" else both.sum() > 0
        # 16-bit millimetres: half a millimetre of rounding at most.
        assert (a["depth"][both] - b["depth"][both]).abs().max() <= 0.0005 + 2e-5  # + float32 spacing


def test_synth_command_train_split_is_8bit(tmp_path):
    assert _run(["synth", "--out", str(tmp_path), "--n", "2", "--size", "36x48", "--split", "train",
                 "--quiet"]) == 0
    written = open_dataset("nyu_png", tmp_path, split="train")
    direct = open_dataset("synth", n=2, size=SIZE, seed=0)
    a, b = written[1], direct[1]
    both = a["mask"] & b["mask"]
    assert (a["depth"][both] - b["depth"][both]).abs().max() <= 10.0 / 255 / 2 + 1e-6


def test_synth_command_rejects_bad_size():
    with pytest.raises(SystemExit):
        _run(["synth", "--out", "x", "--size", "240by320"])


def test_threaded_rendering_gives_the_same_bytes_as_sequential():
    from depthlib.data.synth import render_batch

    one = render_batch(3, [0, 1, 2, 5], (24, 32), "indoor", workers=1)
    two = render_batch(3, [0, 1, 2, 5], (24, 32), "indoor", workers=2)
    for key in one:
        assert torch.equal(one[key], two[key]), key


# ---- issue 9: version 2 (NYU-like rooms, Kinect noise and holes) and the batched per-sample paths


def test_version_2_has_kinect_holes_and_noise_version_1_is_exact():
    v1 = render_batch(5, range(4), (48, 64), "indoor", version=1)
    v2 = render_batch(5, range(4), (48, 64), "indoor", version=2)
    assert torch.equal(v1["mask"], v1["depth"] > 0) and bool(v1["mask"].all())
    assert torch.equal(v2["mask"], v2["depth"] > 0)
    holes = 1.0 - v2["mask"].float().mean()
    assert 0.001 < float(holes) < 0.2  # a Kinect's holes: some, not most
    lo, hi = INDOOR_DEPTH
    d = v2["depth"][v2["mask"]]
    assert float(d.min()) >= lo and float(d.max()) <= hi


def test_version_2_rooms_are_nearer_than_version_1():
    # NYU's rooms: median depth about 2.5 m; version 1's deep rooms put it well above 3 m
    v1 = render_batch(0, range(16), (24, 32), "indoor", version=1)
    v2 = render_batch(0, range(16), (24, 32), "indoor", version=2)
    assert float(v2["depth"][v2["mask"]].median()) < float(v1["depth"][v1["mask"]].median())


def test_unknown_version_is_named():
    with pytest.raises(ValueError, match="version"):
        render_batch(0, [0], SIZE, "indoor", version=3)
    with pytest.raises(ValueError, match="version"):
        open_dataset("synth", n=2, size=SIZE, version=0)


def test_batched_and_read_ahead_paths_give_the_same_samples():
    ds = open_dataset("synth", n=20, size=SIZE, seed=3)
    in_order = [ds[i] for i in range(20)]  # sequential: rendered 16 at a time
    ds2 = open_dataset("synth", n=20, size=SIZE, seed=3)
    random_order = {i: ds2[i] for i in (7, 2, 19, 0)}  # scattered: one frame each
    batch = ds2.__getitems__([7, 2, 19, 0])
    for j, i in enumerate((7, 2, 19, 0)):
        for key in ("image", "depth", "mask"):
            assert torch.equal(in_order[i][key], random_order[i][key])
            assert torch.equal(batch[j][key], random_order[i][key])
        assert batch[j]["path"] == in_order[i]["path"]
    with pytest.raises(IndexError):
        ds.__getitems__([0, 20])


def test_dataloader_fetches_whole_batches_in_one_render():
    from torch.utils.data import DataLoader

    ds = open_dataset("synth", n=8, size=SIZE, seed=3)
    calls = []
    real = ds.load_batch
    ds.load_batch = lambda idx: calls.append(list(idx)) or real(idx)
    batches = list(DataLoader(ds, batch_size=4))
    assert calls == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert torch.equal(batches[1]["depth"][0], open_dataset("synth", n=8, size=SIZE, seed=3)[4]["depth"])
