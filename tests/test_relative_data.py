"""The ordinal chapter's data: ReDWeb / Mannequin Challenge readers on tiny fake trees, check_ordinal, the
procedural stand-ins (depthlib.data.relative) and relative_chapter_data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from depthlib.data import DataFormatError, check_ordinal, open_dataset, relative_chapter_data, relative_standin
from depthlib.data.download import load_manifest
from depthlib.data.relative import MC_SCALE
from depthlib.data.transforms import diw_transform
from depthlib.metrics import relation_from_depth

SIZE = (32, 64)
RNG = np.random.default_rng(3)


def _jpg(path, h, w):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=95)


def _rd(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8), mode="L").save(path)


def _gather(map_, pairs):
    return map_[0, pairs[:, 0], pairs[:, 1]], map_[0, pairs[:, 2], pairs[:, 3]]


# ------------------------------------------------------------------------------------------- stand-ins
@pytest.mark.parametrize("kind", ["diw", "redweb", "mc", "nyu"])
def test_standin_is_deterministic_and_splits_are_disjoint(kind):
    a = relative_standin(kind, split="train", n=3, size=SIZE, seed=1, n_pairs=50)
    b = relative_standin(kind, split="train", n=3, size=SIZE, seed=1, n_pairs=50)
    test = relative_standin(kind, split="test", n=3, size=SIZE, seed=1, n_pairs=50)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            if torch.is_tensor(x[key]):
                assert torch.equal(x[key], y[key]) or (x[key].isnan().all() and y[key].isnan().all()), key
            else:
                assert x[key] == y[key]
    assert not {s["path"] for s in a} & {s["path"] for s in test}
    train_images = {s["image"].numpy().tobytes() for s in a}
    assert not train_images & {s["image"].numpy().tobytes() for s in test}


def test_standin_keys_dtypes_shapes():
    h, w = SIZE
    common = {"image": ((3, h, w), torch.float32), "depth": ((1, h, w), torch.float32),
              "mask": ((1, h, w), torch.bool), "intrinsics": ((4,), torch.float32)}
    extra = {"diw": {"pairs": ((1, 4), torch.long), "relation": ((1,), torch.long)},
             "redweb": {"pairs": ((40, 4), torch.long), "relation": ((40,), torch.long),
                        "relative": ((1, h, w), torch.float32), "relative_mask": ((1, h, w), torch.bool)},
             "mc": {}, "nyu": {}}
    for kind, keys in extra.items():
        for s in relative_standin(kind, split="train", n=2, size=SIZE, seed=0, n_pairs=40):
            expected = dict(common, **keys)
            assert set(s) == set(expected) | {"path"}, kind
            assert s["path"].startswith(f"standin:{kind}:synth:")
            for key, (shape, dtype) in expected.items():
                assert tuple(s[key].shape) == shape and s[key].dtype == dtype, (kind, key)
            if kind in ("diw", "redweb"):  # no dense metric depth
                assert not s["mask"].any() and not s["depth"].any() and s["intrinsics"].isnan().all()
            else:
                assert s["mask"].any() and torch.equal(s["mask"], s["depth"] > 0)


def test_diw_standin_relations_agree_with_the_synth_depth():
    n = 8
    samples = relative_standin("diw", split="test", n=n, size=SIZE, seed=2)
    indoor = open_dataset("synth", split="test", n=n, size=SIZE, seed=2 + 10_000_019, scene="indoor")
    outdoor = open_dataset("synth", split="test", n=n, size=SIZE, seed=2 + 10_000_019, scene="outdoor")
    symmetric = 0
    for i, s in enumerate(samples):
        frame = (outdoor if i % 2 else indoor)[i]
        assert torch.equal(s["image"], frame["image"])
        assert s["relation"].tolist() in ([1], [-1])
        ya, xa, yb, xb = s["pairs"][0].tolist()
        z = frame["depth"][0].double()
        if i % 2:  # outdoor: sky / beyond 80 m is infinitely far
            z = torch.where(frame["mask"][0], z, torch.full_like(z, math.inf))
        else:  # indoor holes are never picked
            assert frame["mask"][0, ya, xa] and frame["mask"][0, yb, xb]
        za, zb = float(z[ya, xa]), float(z[yb, xb])
        assert (1 if za > zb else -1) == int(s["relation"][0])
        if math.isfinite(za) and math.isfinite(zb):
            assert abs(za / zb - 1) >= 0.02  # no near-tie
        symmetric += ya == yb and xb == SIZE[1] - 1 - xa
    assert 0 < symmetric < n  # about half the pairs mirror about the vertical centre line


def test_redweb_standin_pairs_agree_with_the_stored_disparity():
    for s in relative_standin("redweb", split="train", n=3, size=SIZE, seed=0, n_pairs=500):
        rel = s["relative"]
        assert rel.min() >= 0 and rel.max() <= 1
        assert torch.equal((rel * 255).round() / 255, rel)  # 8-bit values like the release
        assert s["relative_mask"].all()
        za, zb = _gather(rel, s["pairs"])
        assert torch.equal(s["relation"], relation_from_depth(za, zb, 0.02, space="inverse"))
        assert set(s["relation"].unique().tolist()) <= {-1, 0, 1} and (s["relation"] != 0).any()
    # a random scale and shift per image: the nearest and farthest stored values differ between images
    ranges = {(float(s["relative"].min()), float(s["relative"].max()))
              for s in relative_standin("redweb", split="train", n=4, size=SIZE, seed=0, n_pairs=10)}
    assert len(ranges) == 4


def test_mc_standin_scale_varies_per_image_and_keeps_the_structure():
    mc = relative_standin("mc", split="train", n=6, size=SIZE, seed=0)
    exact = open_dataset("synth", split="train", n=6, size=SIZE, seed=30_000_049, scene="indoor")
    scales = []
    for s, frame in zip(mc, exact):
        assert torch.equal(s["mask"], frame["mask"])  # holes kept as MVS holes
        m = s["mask"]
        diff = s["depth"][m].double().log() - frame["depth"][m].double().log()
        assert float(diff.max() - diff.min()) < 1e-5  # one scale per image: si-invariant structure kept
        scales.append(float(diff.mean().exp()))
    assert all(MC_SCALE[0] <= v <= MC_SCALE[1] for v in scales)
    assert len({round(v, 4) for v in scales}) == len(scales)


def test_nyu_standin_is_the_plain_synth_sequence():
    s = relative_standin("nyu", split="test", n=2, size=SIZE, seed=5)
    frame = open_dataset("synth", split="test", n=2, size=SIZE, seed=5, scene="indoor")[1]
    assert torch.equal(s[1]["depth"], frame["depth"]) and torch.equal(s[1]["image"], frame["image"])


def test_standin_cache_hook_is_called_with_a_json_spec():
    calls = []

    def cache(key, spec, fn):
        calls.append((key, spec))
        return fn()

    out = relative_standin("redweb", split="train", n=2, size=SIZE, seed=0, n_pairs=7, cache=cache)
    assert len(out) == 2 and calls[0][0] == "data/relative"
    assert calls[0][1] == {"kind": "redweb", "split": "train", "n": 2, "size": [32, 64], "seed": 0, "n_pairs": 7,
                           "version": 1}


def test_standin_bad_arguments():
    with pytest.raises(ValueError, match="'kitti'.*diw"):
        relative_standin("kitti", split="train", n=1, size=SIZE, seed=0)
    with pytest.raises(ValueError, match="split='val'"):
        relative_standin("diw", split="val", n=1, size=SIZE, seed=0)
    with pytest.raises(ValueError, match="n=0"):
        relative_standin("mc", split="train", n=0, size=SIZE, seed=0)


# ---------------------------------------------------------------------------------------- check_ordinal
def _ordinal(pairs, relation, h=10, w=20):
    return {"image": torch.zeros(3, h, w), "pairs": pairs, "relation": relation}


def test_check_ordinal_accepts_good_and_names_bad_pairs():
    good = _ordinal(torch.tensor([[0, 0, 9, 19]]), torch.tensor([1]))
    assert check_ordinal(good, "x") is good
    with pytest.raises(DataFormatError, match=r"img\.thumb: pair 1 .*\[2, 3, 10, 4\].*10x20 image"):
        check_ordinal(_ordinal(torch.tensor([[0, 0, 1, 1], [2, 3, 10, 4]]), torch.tensor([1, -1])), "img.thumb")
    with pytest.raises(DataFormatError, match="ds: pairs must be a long"):
        check_ordinal(_ordinal(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([1])), "ds")
    with pytest.raises(DataFormatError, match="pairs must be a long"):
        check_ordinal(_ordinal(torch.tensor([[0, 0, 1]]), torch.tensor([1])), "ds")
    with pytest.raises(DataFormatError, match=r"relation must be a long \(1,\)"):
        check_ordinal(_ordinal(torch.tensor([[0, 0, 1, 1]]), torch.tensor([1, 1])), "ds")


def test_check_ordinal_names_a_bad_relation_value():
    with pytest.raises(DataFormatError, match=r"synth-ds: relation\[1\] = 2 is not -1, 0 or \+1"):
        check_ordinal(_ordinal(torch.tensor([[0, 0, 1, 1], [1, 1, 2, 2]]), torch.tensor([1, 2])), "synth-ds")


# ---------------------------------------------------------------------------------------------- ReDWeb
@pytest.fixture()
def redweb_root(tmp_path):
    root = tmp_path / "ReDWeb_V1"
    for i in range(3):
        _jpg(root / "Imgs" / f"img{i}.jpg", 24, 40)
        disparity = np.tile(np.linspace(0, 255, 40), (24, 1)) * (0.5 + 0.25 * i)
        _rd(root / "RDs" / f"img{i}.png", np.clip(disparity, 0, 255))
    return root


def test_redweb_reader_samples(redweb_root):
    ds = open_dataset("redweb", redweb_root, split="train", n_pairs=200)
    assert len(ds) == 3
    s = ds[1]
    assert tuple(s["relative"].shape) == (1, 24, 40) and s["relative"].dtype == torch.float32
    stored = np.array(Image.open(redweb_root / "RDs" / "img1.png"))
    assert torch.equal(s["relative"][0], torch.from_numpy(stored).float() / 255)
    assert s["relative_mask"].all() and not s["mask"].any() and not s["depth"].any()
    assert s["intrinsics"].isnan().all() and s["path"].endswith("img1.jpg")
    assert s["pairs"].shape == (200, 4) and s["relation"].shape == (200,)
    za, zb = _gather(s["relative"], s["pairs"])
    assert torch.equal(s["relation"], relation_from_depth(za, zb, 0.02, space="inverse"))
    # disparity grows to the right: a point farther left is farther away (+1)
    far_left = s["pairs"][:, 1] < s["pairs"][:, 3]
    assert (s["relation"][far_left] >= 0).all()
    # the pairs of an image are fixed: another read, another split, the same pairs; another seed, others
    again = open_dataset("redweb", redweb_root, split="train", n_pairs=200)[1]
    assert torch.equal(again["pairs"], s["pairs"])
    other = open_dataset("redweb", redweb_root, split="train", n_pairs=200, pair_seed=1)[1]
    assert not torch.equal(other["pairs"], s["pairs"])
    assert open_dataset("redweb", redweb_root)[0]["pairs"].shape == (3000, 4)  # ReDWeb's K by default


def test_redweb_fit_val_partition_the_release(redweb_root):
    for i in range(3, 60):
        _jpg(redweb_root / "Imgs" / f"img{i}.jpg", 8, 8)
        _rd(redweb_root / "RDs" / f"img{i}.png", np.arange(64).reshape(8, 8))
    names = lambda split: {e[0].name for e in open_dataset("redweb", redweb_root, split=split).entries}  # noqa: E731
    fit, val, everything = names("fit"), names("val"), names("train")
    assert fit | val == everything and not fit & val and len(everything) == 60 and val


def test_redweb_resize_moves_relative_and_pairs(redweb_root):
    s = open_dataset("redweb", redweb_root, transform=diw_transform(SIZE), n_pairs=50)[0]
    assert tuple(s["relative"].shape) == (1, *SIZE) and tuple(s["relative_mask"].shape) == (1, *SIZE)
    check_ordinal(s, "resized")


def test_redweb_fails_fast_and_names_the_path(tmp_path, redweb_root):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*redwebcvpr18.*depthlib download redweb"):
        open_dataset("redweb", tmp_path / "nowhere")
    (redweb_root / "RDs" / "img2.png").unlink()
    with pytest.raises(FileNotFoundError, match="img2.png"):
        open_dataset("redweb", redweb_root)
    with pytest.warns(UserWarning, match="skipped 1 of 3"):
        assert len(open_dataset("redweb", redweb_root, on_missing="skip")) == 2


def test_redweb_bad_files(redweb_root):
    _rd(redweb_root / "RDs" / "img0.png", np.zeros((10, 10)))
    with pytest.raises(DataFormatError, match=r"img0.png: relative disparity is \(10, 10\).*\(24, 40\)"):
        open_dataset("redweb", redweb_root)[0]
    Image.fromarray(np.zeros((24, 40), np.uint16) + 300).save(redweb_root / "RDs" / "img1.png")
    with pytest.raises(DataFormatError, match="img1.png: expected a 8-bit"):
        open_dataset("redweb", redweb_root)[1]
    _rd(redweb_root / "RDs" / "img2.png", np.full((24, 40), 7))
    with pytest.raises(DataFormatError, match="7 everywhere"):
        open_dataset("redweb", redweb_root)[2]


# ---------------------------------------------------------------------------------- Mannequin Challenge
def _camera_file(path, timestamps):
    pose = " ".join(["1", "0", "0", "0", "0", "1", "0", "0", "0", "0", "1", "0"])
    lines = ["https://www.youtube.com/watch?v=xxxxxxxxxxx"]
    lines += [f"{t} 0.9 1.6 0.5 0.5 0.0 0.0 {pose}" for t in timestamps]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture()
def mc_root(tmp_path):
    root = tmp_path / "mannequin"
    seq = root / "test" / "00c4a2d23c90fbc9"
    _jpg(seq / "1000.jpg", 18, 32)
    depth = np.full((18, 32), 1234, np.uint16)
    depth[:3] = 0  # an MVS hole
    Image.fromarray(depth).save(seq / "1000_depth.png")
    _jpg(seq / "2000.jpg", 18, 32)
    np.save(seq / "2000_depth.npy", np.linspace(0.1, 3.0, 18 * 32, dtype=np.float32).reshape(18, 32))
    _camera_file(root / "test" / "00c4a2d23c90fbc9.txt", [1000, 2000])
    return root


def test_mannequin_reader(mc_root):
    ds = open_dataset("mannequin", mc_root, split="test")
    assert len(ds) == 2
    a, b = ds[0], ds[1]
    assert a["depth"].shape == (1, 18, 32) and a["depth"].dtype == torch.float32
    assert not a["mask"][0, :3].any() and a["mask"][0, 3:].all() and float(a["depth"][0, 5, 5]) == 1234.0
    assert torch.allclose(a["intrinsics"], torch.tensor([0.9 * 32, 1.6 * 18, 0.5 * 32 - 0.5, 0.5 * 18 - 0.5]))
    assert b["mask"].all() and math.isclose(float(b["depth"][0, 0, 0]), 0.1, rel_tol=1e-6)
    assert a["path"].endswith("1000.jpg")
    (mc_root / "test" / "00c4a2d23c90fbc9.txt").unlink()
    assert open_dataset("mannequin", mc_root, split="test")[0]["intrinsics"].isnan().all()


def test_mannequin_fails_fast_and_says_depthlib_does_not_reconstruct(tmp_path, mc_root):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*does not run the MVS reconstruction"):
        open_dataset("mannequin", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"mannequin/train does not exist.*depthlib download mannequin"):
        open_dataset("mannequin", mc_root, split="train")
    (mc_root / "test" / "00c4a2d23c90fbc9" / "2000_depth.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"2000.jpg has no depth"):
        open_dataset("mannequin", mc_root, split="test")


def test_mannequin_bad_camera_file(mc_root):
    _camera_file(mc_root / "test" / "00c4a2d23c90fbc9.txt", [1000])
    with pytest.raises(DataFormatError, match="timestamp 2000 is not a frame of"):
        open_dataset("mannequin", mc_root, split="test")[1]
    (mc_root / "test" / "00c4a2d23c90fbc9.txt").write_text("https://youtu.be/x\n1000 0.9 1.6\n")
    with pytest.raises(DataFormatError, match="line 2 has 3 columns"):
        open_dataset("mannequin", mc_root, split="test")[0]


def test_manifests_name_the_public_releases():
    mc = load_manifest("mannequin")
    assert mc.files[0].url == "https://storage.googleapis.com/mannequinchallenge-data/MannequinChallenge.tar"
    assert "does NOT" in mc.manual
    redweb = load_manifest("redweb")
    assert not redweb.files and "redwebcvpr18" in redweb.source


# ------------------------------------------------------------------------------- relative_chapter_data
def test_relative_chapter_data_standins():
    data = relative_chapter_data(["mc", "redweb", "diw"], size=SIZE, n_train=2, n_test=3, seed=4)
    assert list(data["train"]) == ["mc", "redweb", "diw"] and set(data["evaluations"]) == {"nyu", "diw", "mc"}
    assert all(len(v) == 3 for v in data["evaluations"].values())
    assert data["train"]["redweb"][0]["pairs"].shape == (3000, 4)
    assert "mc stand-in 2 -> redweb stand-in 2 -> diw stand-in 2" in data["describe"] and "seed 4" in data["describe"]
    assert data["spec"]["train_sets"] == ["mc", "redweb", "diw"] and data["spec"]["roots"] is None


def test_relative_chapter_data_takes_a_count_per_evaluation_set():
    data = relative_chapter_data(["diw"], size=SIZE, n_train=1, n_test={"nyu": 2, "diw": 5, "mc": 1}, seed=4)
    assert {k: len(v) for k, v in data["evaluations"].items()} == {"nyu": 2, "diw": 5, "mc": 1}
    assert data["spec"]["n_test"] == {"nyu": 2, "diw": 5, "mc": 1}
    with pytest.raises(ValueError, match=r"must name exactly the evaluation sets .*missing: \['mc'\]"):
        relative_chapter_data(["diw"], size=SIZE, n_train=1, n_test={"nyu": 2, "diw": 5})
    with pytest.raises(ValueError, match=r"n_test\['diw'\]=0 must be an int >= 1"):
        relative_chapter_data(["diw"], size=SIZE, n_train=1, n_test={"nyu": 2, "diw": 0, "mc": 1})


def test_relative_chapter_data_unknown_name():
    with pytest.raises(ValueError, match=r"'megadepth'.*\['nyu', 'diw', 'redweb', 'mc'\]"):
        relative_chapter_data(["diw", "megadepth"], size=SIZE, n_train=1, n_test=1)
    with pytest.raises(ValueError, match="twice"):
        relative_chapter_data(["diw", "diw"], size=SIZE, n_train=1, n_test=1)


def test_relative_chapter_data_real_roots(redweb_root, mc_root):
    data = relative_chapter_data(["redweb"], size=SIZE, n_train=0, n_test=0,
                                 roots={"redweb": redweb_root, "mc": mc_root})
    assert len(data["train"]["redweb"]) == 3 and tuple(data["train"]["redweb"][0]["image"].shape) == (3, *SIZE)
    assert list(data["evaluations"]) == ["mc"] and tuple(data["evaluations"]["mc"][0]["depth"].shape) == (1, *SIZE)
    assert "no root for ['nyu', 'diw']" in data["describe"]
    with pytest.raises(ValueError, match=r"no root for the training sets \['diw'\]"):
        relative_chapter_data(["diw"], size=SIZE, n_train=0, n_test=0, roots={"redweb": redweb_root})
