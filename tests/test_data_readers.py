"""Every dataset kind reads its exact format from fixtures written here; bad input fails naming the file."""

from __future__ import annotations

import pathlib
import warnings

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torch.utils.data import DataLoader, default_collate

from depthlib.data import DataFormatError, list_datasets, open_dataset
from depthlib.data.nyu import EIGEN_CROP, NYU_INTRINSICS

RNG = np.random.default_rng(0)


def _png(path: pathlib.Path, array: np.ndarray) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="JPEG" if path.suffix == ".jpg" else "PNG")
    return path


def _rgb(h: int, w: int) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _check_sample(s: dict, h: int, w: int) -> None:
    assert s["image"].shape == (3, h, w) and s["image"].dtype == torch.float32
    assert 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
    assert s["depth"].shape == (1, h, w) and s["depth"].dtype == torch.float32
    assert s["mask"].shape == (1, h, w) and s["mask"].dtype == torch.bool
    assert torch.equal(s["mask"], s["depth"] > 0)
    assert s["intrinsics"].shape == (4,) and s["intrinsics"].dtype == torch.float32
    assert isinstance(s["path"], str)


def test_list_datasets_names_all_kinds():
    assert set(list_datasets()) == {"nyu_h5", "nyu_labeled", "nyu_png", "kitti", "diw", "mai2021", "synth", "redweb",
                                   "mannequin"}


def test_unknown_kind_and_option_are_named():
    with pytest.raises(ValueError, match="nyu_pgn"):
        open_dataset("nyu_pgn", "x")
    with pytest.raises(ValueError, match="mai2021"):
        open_dataset("mai2021", ".", bogus=1)


@pytest.mark.parametrize("kind", ["nyu_h5", "nyu_labeled", "nyu_png", "kitti", "diw", "mai2021", "redweb", "mannequin"])
def test_missing_root_names_it(kind, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        open_dataset(kind, missing)


# ----------------------------------------------------------------------------------------------- nyu_h5
@pytest.fixture()
def nyu_h5_root(tmp_path):
    depth = RNG.uniform(0.5, 9.0, (480, 640)).astype(np.float32)
    depth[:10] = 0.0  # a band without measurement
    for split, scene, n in [("train", "office_0001", 2), ("val", "official", 1)]:
        folder = tmp_path / split / scene
        folder.mkdir(parents=True)
        for i in range(n):
            with h5py.File(folder / f"{i:05d}.h5", "w") as f:
                f["rgb"] = RNG.integers(0, 256, (3, 480, 640), dtype=np.uint8)
                f["depth"] = depth
    return tmp_path, depth


def test_nyu_h5_reads_metres_and_rgb(nyu_h5_root):
    root, depth = nyu_h5_root
    ds = open_dataset("nyu_h5", root, split="train")
    assert len(ds) == 2 and len(open_dataset("nyu_h5", root, split="val")) == 1
    s = ds[1]
    _check_sample(s, 480, 640)
    with h5py.File(ds.files[1]) as f:
        rgb = f["rgb"][()]
    assert torch.equal((s["image"] * 255).round().to(torch.uint8), torch.from_numpy(rgb))
    assert torch.equal(s["depth"][0], torch.from_numpy(depth))
    assert not s["mask"][0, :10].any() and s["mask"][0, 10:].all()
    assert torch.allclose(s["intrinsics"], torch.tensor(NYU_INTRINSICS))


def test_nyu_h5_eigen_crop_masks_outside(nyu_h5_root):
    s = open_dataset("nyu_h5", nyu_h5_root[0], split="val", eval_crop="eigen")[0]
    t, b, l, r = EIGEN_CROP
    assert s["mask"][0, t:b, l:r].all()
    assert int(s["mask"].sum()) == (b - t) * (r - l)


def test_nyu_h5_bad_split(nyu_h5_root):
    with pytest.raises(ValueError, match="split='test'"):
        open_dataset("nyu_h5", nyu_h5_root[0], split="test")


def test_nyu_h5_truncated_file_names_it(nyu_h5_root):
    ds = open_dataset("nyu_h5", nyu_h5_root[0], split="train")
    data = ds.files[0].read_bytes()
    ds.files[0].write_bytes(data[: len(data) // 3])
    with pytest.raises(DataFormatError, match=ds.files[0].name):
        ds[0]


def test_nyu_h5_not_hdf5_names_it(nyu_h5_root):
    ds = open_dataset("nyu_h5", nyu_h5_root[0], split="val")
    ds.files[0].write_bytes(b"this is not an HDF5 file at all" * 10)
    with pytest.raises(DataFormatError, match="00000.h5"):
        ds[0]


@pytest.mark.parametrize("rgb,depth,match", [
    (np.zeros((480, 640, 3), np.uint8), np.ones((480, 640), np.float32), "'rgb' must be uint8 \\(3, H, W\\)"),
    (np.zeros((3, 480, 640), np.float32), np.ones((480, 640), np.float32), "'rgb' must be uint8"),
    (np.zeros((3, 480, 640), np.uint8), np.ones((240, 320), np.float32), "'depth' must be float"),
    (np.zeros((3, 480, 640), np.uint8), np.ones((480, 640), np.uint16), "'depth' must be float"),
])
def test_nyu_h5_wrong_shape_or_dtype(tmp_path, rgb, depth, match):
    (tmp_path / "val" / "s").mkdir(parents=True)
    with h5py.File(tmp_path / "val" / "s" / "1.h5", "w") as f:
        f["rgb"], f["depth"] = rgb, depth
    with pytest.raises(DataFormatError, match=match):
        open_dataset("nyu_h5", tmp_path, split="val")[0]


def test_nyu_h5_all_invalid_depth_names_file(tmp_path):
    (tmp_path / "val" / "s").mkdir(parents=True)
    with h5py.File(tmp_path / "val" / "s" / "7.h5", "w") as f:
        f["rgb"] = np.zeros((3, 48, 64), np.uint8)
        f["depth"] = np.full((48, 64), np.nan, np.float32)
    with pytest.raises(DataFormatError, match="7.h5: depth map has no valid pixel"):
        open_dataset("nyu_h5", tmp_path, split="val")[0]


# ------------------------------------------------------------------------------------------ nyu_labeled
def _write_v73_mat(path: pathlib.Path, images: np.ndarray, depths: np.ndarray) -> None:
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 behind a 512-byte text header, arrays transposed."""
    with h5py.File(path, "w", userblock_size=512) as f:
        f["images"] = images  # (N, 3, W, H) as h5py sees MATLAB's H x W x 3 x N
        f["depths"] = depths  # (N, W, H)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with path.open("r+b") as f:
        f.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")


@pytest.fixture()
def nyu_labeled_root(tmp_path):
    n = 3
    images_hw = RNG.integers(0, 256, (n, 3, 480, 640), dtype=np.uint8)
    depths_hw = RNG.uniform(0.7, 9.9, (n, 480, 640)).astype(np.float32)
    _write_v73_mat(tmp_path / "nyu_depth_v2_labeled.mat", images_hw.transpose(0, 1, 3, 2).copy(),
                   depths_hw.transpose(0, 2, 1).copy())
    scipy.io.savemat(tmp_path / "splits.mat", {"trainNdxs": np.array([[1], [3]]), "testNdxs": np.array([[2]])})
    return tmp_path, images_hw, depths_hw


def test_nyu_labeled_transposes_back(nyu_labeled_root):
    root, images, depths = nyu_labeled_root
    ds = open_dataset("nyu_labeled", root, split="all")
    assert len(ds) == 3
    s = ds[2]
    _check_sample(s, 480, 640)
    assert torch.equal((s["image"] * 255).round().to(torch.uint8), torch.from_numpy(images[2]))
    assert torch.equal(s["depth"][0], torch.from_numpy(depths[2]))
    assert torch.allclose(s["intrinsics"], torch.tensor(NYU_INTRINSICS))


def test_nyu_labeled_official_split_is_one_based(nyu_labeled_root):
    root, _, depths = nyu_labeled_root
    train = open_dataset("nyu_labeled", root / "nyu_depth_v2_labeled.mat", split="train")
    test = open_dataset("nyu_labeled", root, split="test")
    assert len(train) == 2 and len(test) == 1
    assert torch.equal(test[0]["depth"][0], torch.from_numpy(depths[1]))
    assert torch.equal(train[1]["depth"][0], torch.from_numpy(depths[2]))


def test_nyu_labeled_split_needs_splits_mat(nyu_labeled_root):
    root = nyu_labeled_root[0]
    (root / "splits.mat").unlink()
    with pytest.raises(FileNotFoundError, match="splits.mat"):
        open_dataset("nyu_labeled", root, split="test")


def test_nyu_labeled_works_in_dataloader_workers(nyu_labeled_root):
    ds = open_dataset("nyu_labeled", nyu_labeled_root[0], split="all")
    ds[0]  # opens a handle in the parent: workers must not reuse it
    batch = next(iter(DataLoader(ds, batch_size=3, num_workers=1)))
    assert batch["depth"].shape == (3, 1, 480, 640)


def test_nyu_labeled_wrong_layout(tmp_path):
    with h5py.File(tmp_path / "nyu_depth_v2_labeled.mat", "w") as f:
        f["images"] = np.zeros((2, 480, 640, 3), np.uint8)
        f["depths"] = np.zeros((2, 640, 480), np.float32)
    with pytest.raises(DataFormatError, match="'images' must be uint8"):
        open_dataset("nyu_labeled", tmp_path, split="all")


# ---------------------------------------------------------------------------------------------- nyu_png
@pytest.fixture()
def nyu_png_root(tmp_path):
    lines = []
    mm = RNG.integers(700, 9999, (3, 48, 64)).astype(np.uint16)
    mm[:, 0, :] = 0
    for i in range(3):
        _png(tmp_path / "data" / "nyu2_test" / f"{i:05d}_colors.png", _rgb(48, 64))
        _png(tmp_path / "data" / "nyu2_test" / f"{i:05d}_depth.png", mm[i])
        lines.append(f"data/nyu2_test/{i:05d}_colors.png,data/nyu2_test/{i:05d}_depth.png\n")
    (tmp_path / "data" / "nyu2_test.csv").write_text("".join(lines))
    d8 = RNG.integers(1, 256, (48, 64)).astype(np.uint8)
    _png(tmp_path / "data" / "nyu2_train" / "kitchen_0001_out" / "1.jpg", _rgb(48, 64))
    _png(tmp_path / "data" / "nyu2_train" / "kitchen_0001_out" / "1.png", d8)
    (tmp_path / "data" / "nyu2_train.csv").write_text(
        "data/nyu2_train/kitchen_0001_out/1.jpg,data/nyu2_train/kitchen_0001_out/1.png\n")
    return tmp_path, mm, d8


def test_nyu_png_test_depth_is_millimetres(nyu_png_root):
    root, mm, _ = nyu_png_root
    ds = open_dataset("nyu_png", root, split="test")
    assert len(ds) == 3
    s = ds[1]
    _check_sample(s, 48, 64)
    assert torch.equal(s["depth"][0], torch.from_numpy(mm[1].astype(np.float32)) / 1000.0)
    assert not s["mask"][0, 0].any()
    assert s["intrinsics"][0] == pytest.approx(NYU_INTRINSICS[0] * 64 / 640)


def test_nyu_png_train_depth_is_8bit_255_is_10m(nyu_png_root):
    root, _, d8 = nyu_png_root
    s = open_dataset("nyu_png", root, split="train")[0]
    assert torch.allclose(s["depth"][0], torch.from_numpy(d8.astype(np.float32)) * (10.0 / 255.0))
    assert float(s["depth"].max()) <= 10.0


def test_nyu_png_missing_file_in_csv(nyu_png_root):
    root = nyu_png_root[0]
    (root / "data" / "nyu2_test" / "00001_depth.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"nyu2_test.csv: entry 2 .*00001_depth.png"):
        open_dataset("nyu_png", root, split="test")
    with pytest.warns(UserWarning, match="skipped 1 of 3"):
        ds = open_dataset("nyu_png", root, split="test", on_missing="skip")
    assert len(ds) == 2


def test_nyu_png_truncated_png_names_it(nyu_png_root):
    root = nyu_png_root[0]
    path = root / "data" / "nyu2_test" / "00002_depth.png"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataFormatError, match="00002_depth.png"):
        open_dataset("nyu_png", root, split="test")[2]


def test_nyu_png_rgb_depth_size_mismatch(nyu_png_root):
    root = nyu_png_root[0]
    _png(root / "data" / "nyu2_test" / "00000_depth.png", np.ones((24, 32), np.uint16))
    with pytest.raises(DataFormatError, match=r"00000_depth.png: depth is \(24, 32\) but the image is \(48, 64\)"):
        open_dataset("nyu_png", root, split="test")[0]


def test_nyu_png_rgb_as_depth_is_rejected(nyu_png_root):
    root = nyu_png_root[0]
    _png(root / "data" / "nyu2_test" / "00000_depth.png", _rgb(48, 64))
    with pytest.raises(DataFormatError, match="1 channel"):
        open_dataset("nyu_png", root, split="test")[0]


def test_nyu_png_all_invalid(nyu_png_root):
    root = nyu_png_root[0]
    _png(root / "data" / "nyu2_test" / "00000_depth.png", np.zeros((48, 64), np.uint16))
    with pytest.raises(DataFormatError, match="00000_depth.png: depth map has no valid pixel"):
        open_dataset("nyu_png", root, split="test")[0]


def test_nyu_png_batches_with_default_collate(nyu_png_root):
    batch = default_collate([open_dataset("nyu_png", nyu_png_root[0], split="test")[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, 48, 64) and batch["intrinsics"].shape == (3, 4)


def test_shared_nyu_pairs(shared_nyu_data):
    ds = open_dataset("nyu_png", shared_nyu_data, split="test")
    assert len(ds) == 40
    for i in (0, 39):
        s = ds[i]
        _check_sample(s, 480, 640)
        raw = np.asarray(Image.open(ds.rows[i][1]))
        assert raw.dtype == np.uint16
        assert torch.equal(s["depth"][0], torch.from_numpy(raw.astype(np.float32)) / 1000.0)
        assert 0.5 < float(s["depth"][s["mask"]].min()) and float(s["depth"].max()) <= 10.0
    cropped = open_dataset("nyu_png", shared_nyu_data, split="test", eval_crop="eigen")[0]
    t, b, l, r = EIGEN_CROP
    outside = torch.ones(480, 640, dtype=torch.bool)
    outside[t:b, l:r] = False
    assert not cropped["mask"][0][outside].any()
    assert torch.equal(cropped["depth"][0, t:b, l:r], ds[0]["depth"][0, t:b, l:r])


# ------------------------------------------------------------------------------------------------ kitti
@pytest.fixture()
def kitti_root(tmp_path):
    drive, date = "2011_09_26_drive_0002_sync", "2011_09_26"
    gt = np.zeros((37, 124), np.uint16)
    gt[20:, ::5] = RNG.integers(256, 80 * 256, (17, 25))  # sparse LiDAR-like ground truth
    frame = "0000000005.png"
    _png(tmp_path / "data_depth_annotated" / "train" / drive / "proj_depth" / "groundtruth" / "image_02" / frame, gt)
    _png(tmp_path / "raw" / date / drive / "image_02" / "data" / frame, _rgb(37, 124))
    calib = tmp_path / "raw" / date / "calib_cam_to_cam.txt"
    calib.write_text("calib_time: 09-Jan-2012 13:57:47\n"
                     "P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 "
                     "1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03\n")
    split = tmp_path / "eigen.txt"
    split.write_text(f"{date}/{drive} 5 l\n")
    return tmp_path, gt, split


def test_kitti_depth_is_value_over_256(kitti_root):
    root, gt, _ = kitti_root
    s = open_dataset("kitti", root, split="train")[0]
    _check_sample(s, 37, 124)
    assert torch.equal(s["depth"][0], torch.from_numpy(gt.astype(np.float32)) / 256.0)
    assert torch.allclose(s["intrinsics"], torch.tensor([721.5377, 721.5377, 609.5593, 172.854]))


def test_kitti_split_file_and_garg_crop(kitti_root):
    root, gt, split = kitti_root
    ds = open_dataset("kitti", root, split_file=split, eval_crop="garg")
    s = ds[0]
    top = int(0.40810811 * 37)
    assert not s["mask"][0, :top].any()
    assert s["mask"].sum() < (gt > 0).sum()
    with pytest.raises(ValueError, match="eval_crop='nyu'"):
        open_dataset("kitti", root, eval_crop="nyu")


def test_kitti_missing_rgb(kitti_root):
    root = kitti_root[0]
    for p in (root / "raw").rglob("0000000005.png"):
        p.unlink()
    with pytest.raises(FileNotFoundError, match="0000000005.png"):
        open_dataset("kitti", root, split="train")


def test_kitti_8bit_ground_truth_rejected(kitti_root):
    root = kitti_root[0]
    gt = next((root / "data_depth_annotated").rglob("*.png"))
    _png(gt, np.ones((37, 124), np.uint8))
    with pytest.raises(DataFormatError, match="expected a 16-bit depth png"):
        open_dataset("kitti", root, split="train")[0]


# -------------------------------------------------------------------------------------------------- diw
@pytest.fixture()
def diw_root(tmp_path):
    # A thumbnail half the size of the original 200x100 photo, as in the release.
    _png(tmp_path / "DIW_test" / "a.thumb", _rgb(50, 100))
    _png(tmp_path / "DIW_test" / "b.thumb", _rgb(50, 100))
    (tmp_path / "DIW_Annotations").mkdir()
    (tmp_path / "DIW_Annotations" / "DIW_test.csv").write_text(
        "./DIW_test/a.thumb\n11,21,91,181,>,200,100\n./DIW_test/b.thumb\n1,1,100,200,<,200,100\n")
    return tmp_path


def test_diw_pairs_rescaled_and_signed(diw_root):
    ds = open_dataset("diw", diw_root, split="test")
    assert len(ds) == 2
    s = ds[0]
    assert s["image"].shape == (3, 50, 100)
    # 1-based (y=11, x=21) of a 100x200 photo -> 0-based pixels of the 50x100 thumbnail.
    assert s["pairs"].tolist() == [[5, 10, 45, 90]] and s["relation"].tolist() == [1]
    t = ds[1]
    assert t["pairs"].tolist() == [[0, 0, 49, 99]] and t["relation"].tolist() == [-1]
    assert not s["mask"].any() and float(s["depth"].abs().sum()) == 0.0
    batch = default_collate([s, t])
    assert batch["pairs"].shape == (2, 1, 4)


def test_diw_malformed_line(diw_root):
    (diw_root / "DIW_Annotations" / "DIW_test.csv").write_text("./DIW_test/a.thumb\n11,21,91,181,?,200,100\n")
    with pytest.raises(DataFormatError, match="DIW_test.csv: line 2"):
        open_dataset("diw", diw_root, split="test")


def test_diw_point_outside_image(diw_root):
    (diw_root / "DIW_Annotations" / "DIW_test.csv").write_text("./DIW_test/a.thumb\n150,21,91,181,>,200,100\n")
    with pytest.raises(DataFormatError, match="outside"):
        open_dataset("diw", diw_root, split="test")


# ---------------------------------------------------------------------------------------------- mai2021
@pytest.fixture()
def mai_root(tmp_path):
    mm = RNG.integers(0, 40000, (2, 48, 64)).astype(np.uint16)
    for i in range(2):
        _png(tmp_path / "train" / "rgb" / f"{i}.png", _rgb(48, 64))
        _png(tmp_path / "train" / "depth" / f"{i}.png", mm[i])
    return tmp_path, mm


def test_mai2021_millimetres_and_zero_invalid(mai_root):
    root, mm = mai_root
    ds = open_dataset("mai2021", root, split="train")
    s = ds[1]
    _check_sample(s, 48, 64)
    assert torch.equal(s["mask"][0], torch.from_numpy(mm[1] >= 1))
    assert torch.equal(s["depth"][0], torch.from_numpy(mm[1].astype(np.float32)) / 1000.0)
    assert torch.isnan(s["intrinsics"]).all()
    assert len(open_dataset("mai2021", root / "train")) == 2  # root may also be the split folder


def test_mai2021_rgb_without_depth(mai_root):
    root = mai_root[0]
    (root / "train" / "depth" / "0.png").unlink()
    with pytest.raises(FileNotFoundError, match="0.png"):
        open_dataset("mai2021", root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(open_dataset("mai2021", root, on_missing="skip")) == 1
    assert any("skipped 1 of 2" in str(w.message) for w in caught)
