"""NYU Depth v2 in its three distributions.

- ``nyu_h5``: FastDepth's / sparse-to-dense's preprocessed tree ``root/{train,val}/<scene>/<n>.h5``.
- ``nyu_labeled``: the official ``nyu_depth_v2_labeled.mat`` (1449 densely filled frames) and ``splits.mat``.
- ``nyu_png``: DenseDepth's ``nyu_data`` layout with ``data/nyu2_{train,test}.csv``.

Units and conventions are documented in ``data/README.md``.
"""

from __future__ import annotations

import csv
import os
import pathlib
from typing import Any, Callable

import h5py
import numpy as np
import torch

from ._common import (
    DataFormatError,
    DepthDataset,
    check_max_depth,
    check_root,
    check_split,
    filter_missing,
    make_sample,
    read_depth_png,
    read_rgb,
    read_text,
)

__all__ = ["NYU_INTRINSICS", "EIGEN_CROP", "NYUH5", "NYULabeled", "NYUPng", "nyu_intrinsics"]

# Colour camera of the NYU Depth v2 toolbox (camera_params.m), in pixels of the 640x480 frame.
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)
# Eigen et al. (NIPS 2014) evaluation crop of the 480x640 frame: rows 45:471, cols 41:601 (half-open),
# the region where the Kinect depth is projected; used by every NYU paper of the book.
EIGEN_CROP = (45, 471, 41, 601)


def nyu_intrinsics(height: int, width: int) -> torch.Tensor:
    """NYU's colour intrinsics scaled from 480x640 to ``(height, width)``: ``(4,)`` ``[fx, fy, cx, cy]``."""
    sx, sy = width / 640.0, height / 480.0
    fx, fy, cx, cy = NYU_INTRINSICS
    return torch.tensor([fx * sx, fy * sy, cx * sx, cy * sy], dtype=torch.float32)


def _eval_region(kind: str, eval_crop: str | None, height: int, width: int, path: Any):
    if eval_crop is None:
        return None
    if eval_crop != "eigen":
        raise ValueError(f"open_dataset({kind!r}): eval_crop={eval_crop!r} is not None or 'eigen'")
    if (height, width) != (480, 640):
        raise DataFormatError(f"{path}: the Eigen crop is defined on 480x640 frames, this one is {height}x{width}")
    return EIGEN_CROP


class NYUH5(DepthDataset):
    """FastDepth's NYU Depth v2 tree: ``root/{train,val}/<scene>/<n>.h5``.

    Each file holds ``rgb`` uint8 ``(3, 480, 640)`` and ``depth`` float ``(480, 640)`` in metres (0 = no
    measurement). Files are listed in sorted order.

    Options:
        eval_crop: ``None`` or ``"eigen"``: mark pixels outside rows 45:471, cols 41:601 invalid.
        max_depth: depths above it are invalid (NYU evaluations cap at 10 m); default no cap.
    """

    kind = "nyu_h5"

    def __init__(self, root, split: str = "train", transform: Callable | None = None, *,
                 eval_crop: str | None = None, max_depth: float = float("inf")) -> None:
        super().__init__(transform)
        hint = "FastDepth's nyudepthv2 tree with train/ and val/; `depthlib download nyudepthv2`"
        root = check_root(root, self.kind, hint)
        check_split(self.kind, split, ("train", "val"))
        folder = root / split
        if not folder.is_dir():
            raise FileNotFoundError(f"open_dataset('nyu_h5'): {folder} does not exist ({hint})")
        self.files = sorted(folder.glob("*/*.h5"))
        if not self.files:
            raise FileNotFoundError(f"open_dataset('nyu_h5'): no <scene>/<n>.h5 file under {folder}")
        self.eval_crop, self.max_depth = eval_crop, check_max_depth(self.kind, max_depth)
        _eval_region(self.kind, eval_crop, 480, 640, folder)  # validates the option early

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> dict[str, Any]:
        path = self.files[index]
        try:
            with h5py.File(path, "r") as f:
                if "rgb" not in f or "depth" not in f:
                    raise DataFormatError(f"{path}: expected datasets 'rgb' and 'depth', found {sorted(f.keys())}")
                for key in ("rgb", "depth"):
                    if not isinstance(f[key], h5py.Dataset):
                        raise DataFormatError(f"{path}: {key!r} must be an HDF5 dataset (an array), found a "
                                              f"{type(f[key]).__name__} holding {sorted(f[key].keys())[:5]}")
                rgb, depth = f["rgb"][()], f["depth"][()]
        except OSError as err:  # h5py raises OSError for truncated or non-HDF5 files
            raise DataFormatError(f"{path}: cannot read as HDF5 ({err})") from None
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[0] != 3:
            raise DataFormatError(f"{path}: 'rgb' must be uint8 (3, H, W), got {rgb.dtype} {rgb.shape}")
        if depth.dtype.kind != "f" or depth.shape != rgb.shape[1:]:
            raise DataFormatError(f"{path}: 'depth' must be float {rgb.shape[1:]}, got {depth.dtype} {depth.shape}")
        h, w = depth.shape
        image = torch.from_numpy(rgb).float().div_(255.0)
        region = _eval_region(self.kind, self.eval_crop, h, w, path)
        return make_sample(image, torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32)), str(path),
                           nyu_intrinsics(h, w), max_depth=self.max_depth, valid_region=region)


def _read_split_indices(path: pathlib.Path, split: str) -> np.ndarray:
    """``splits.mat`` -> 0-based indices of ``trainNdxs`` / ``testNdxs`` (stored 1-based, MATLAB style)."""
    key = {"train": "trainNdxs", "test": "testNdxs"}[split]
    try:
        import scipy.io

        try:
            values = scipy.io.loadmat(path)[key]
        except NotImplementedError:  # a v7.3 file: HDF5
            with h5py.File(path, "r") as f:
                values = f[key][()]
    except KeyError:
        raise DataFormatError(f"{path}: no variable {key!r}") from None
    except Exception as err:  # scipy raises ValueError, TypeError, OSError... on garbage: name the file
        raise DataFormatError(f"{path}: cannot read as a MATLAB file ({type(err).__name__}: {err})") from None
    values = np.asarray(values)
    if values.dtype.kind not in "iuf" or values.size == 0:
        raise DataFormatError(f"{path}: {key!r} must hold frame numbers, got {values.dtype} {values.shape}")
    flat = values.reshape(-1)
    if values.dtype.kind == "f" and not (np.isfinite(flat).all() and (flat == np.round(flat)).all()):
        raise DataFormatError(f"{path}: {key!r} holds non-integer frame numbers (first {flat[~(flat == np.round(flat))][:1]})")
    indices = flat.astype(np.int64) - 1
    if len(np.unique(indices)) != len(indices):
        raise DataFormatError(f"{path}: {key!r} lists some frames twice")
    return indices


class NYULabeled(DepthDataset):
    """The official labeled subset, ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5).

    MATLAB stores arrays column-major, so h5py sees ``images`` as ``(1449, 3, 640, 480)`` uint8 and
    ``depths`` as ``(1449, 640, 480)`` float metres (filled, dense); samples are transposed back to
    ``480x640``.

    Args:
        root: the ``.mat`` file, or a folder holding it (and optionally ``splits.mat``).
        split: ``"train"`` (795 frames) or ``"test"`` (654) of the official split, which needs ``splits.mat``
            (looked for beside the ``.mat`` file unless ``splits=`` names it), or ``"all"`` (1449 frames).
    Options: ``eval_crop`` (``None``/``"eigen"``), ``max_depth``, ``splits`` (path).
    """

    kind = "nyu_labeled"

    def __init__(self, root, split: str = "train", transform: Callable | None = None, *,
                 splits: str | os.PathLike | None = None, eval_crop: str | None = None,
                 max_depth: float = float("inf")) -> None:
        super().__init__(transform)
        hint = "nyu_depth_v2_labeled.mat from NYU's site; `depthlib download nyu_labeled`"
        root = check_root(root, self.kind, hint)
        check_split(self.kind, split, ("all", "train", "test"))
        self.path = root / "nyu_depth_v2_labeled.mat" if root.is_dir() else root
        if not self.path.is_file():
            raise FileNotFoundError(f"open_dataset('nyu_labeled'): {self.path} does not exist ({hint})")
        try:
            with h5py.File(self.path, "r") as f:
                if "images" not in f or "depths" not in f:
                    raise DataFormatError(f"{self.path}: expected 'images' and 'depths', found {sorted(f.keys())}")
                images, depths = f["images"], f["depths"]
                n = images.shape[0]
                if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
                    raise DataFormatError(f"{self.path}: 'images' must be uint8 (N, 3, W, H), got "
                                          f"{images.dtype} {images.shape}")
                if depths.dtype.kind != "f" or depths.shape != (n, *images.shape[2:]):
                    raise DataFormatError(f"{self.path}: 'depths' must be float {(n, *images.shape[2:])}, got "
                                          f"{depths.dtype} {depths.shape}")
        except OSError as err:
            raise DataFormatError(f"{self.path}: cannot read as a MATLAB v7.3 (HDF5) file ({err})") from None
        if split == "all":
            self.indices = np.arange(n)
        else:
            split_path = pathlib.Path(splits) if splits is not None else self.path.parent / "splits.mat"
            if not split_path.is_file():
                raise FileNotFoundError(f"open_dataset('nyu_labeled', split={split!r}) needs {split_path} "
                                        f"(`depthlib download nyu_splits`), or use split='all'")
            self.indices = _read_split_indices(split_path, split)
            if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n):
                raise DataFormatError(f"{split_path}: indices outside 1..{n}")
        self.eval_crop, self.max_depth = eval_crop, check_max_depth(self.kind, max_depth)
        self._file: h5py.File | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.indices)

    def _handle(self) -> h5py.File:
        # HDF5 handles must not cross a fork: each DataLoader worker opens its own.
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, -1
        return state

    def load(self, index: int) -> dict[str, Any]:
        i = int(self.indices[index])
        f = self._handle()
        try:
            rgb, depth = f["images"][i], f["depths"][i]
        except OSError as err:
            raise DataFormatError(f"{self.path}: cannot read frame {i} ({err})") from None
        image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 2, 1))).float().div_(255.0)
        depth = torch.from_numpy(np.ascontiguousarray(depth.T, dtype=np.float32))
        h, w = depth.shape
        region = _eval_region(self.kind, self.eval_crop, h, w, self.path)
        return make_sample(image, depth, f"{self.path}:{i}", nyu_intrinsics(h, w), max_depth=self.max_depth,
                           valid_region=region)


# DenseDepth's train depth pngs are 8-bit with 255 = 10 m (its loader: depth / 255 * 10); test pngs are
# 16-bit millimetres. The bit depth of each file tells which.
NYU_PNG8_MAX_DEPTH = 10.0


def decode_nyu_png_depth(path, split: str | None = None) -> torch.Tensor:
    """DenseDepth depth png -> ``(H, W)`` float32 metres (16-bit: mm / 1000; 8-bit: v / 255 * 10).

    ``split="test"`` accepts 16-bit files only and ``"train"`` 8-bit only: a file of the other bit depth
    listed in a split would otherwise be decoded with the other split's encoding (an 8-bit file in the
    test split read as 255 = 10 m gives depths about 7 times too small, with no error). ``None`` accepts
    both, by the file's own bit depth.
    """
    bits = {"test": 16, "train": 8, None: (8, 16)}[split]
    try:
        raw = read_depth_png(path, bits=bits)
    except DataFormatError as err:
        if split is not None and "-bit depth png, got" in str(err):
            own = "16-bit millimetres" if split == "test" else "8-bit with 255 = 10 m"
            raise DataFormatError(f"{err}: DenseDepth's {split} split stores depth as {own}; this file is not "
                                  f"of the {split} split's encoding (list it in the other split's csv)") from None
        raise
    if raw.dtype == torch.uint8:
        return raw.to(torch.float32) * (NYU_PNG8_MAX_DEPTH / 255.0)
    return raw.to(torch.float32) / 1000.0


class NYUPng(DepthDataset):
    """DenseDepth's ``nyu_data`` layout.

    ``root/data/nyu2_{split}.csv`` lists ``rgb_path,depth_path`` per line, relative to ``root``. RGB is 8-bit
    (png or jpg); depth is a 16-bit png in millimetres (test split) or an 8-bit png with 255 = 10 m (train
    split), told apart by the file's bit depth. 0 = no measurement.

    Options: ``eval_crop`` (``None``/``"eigen"``), ``max_depth``, ``on_missing`` (``"raise"``/``"skip"``).
    """

    kind = "nyu_png"

    def __init__(self, root, split: str = "train", transform: Callable | None = None, *,
                 eval_crop: str | None = None, max_depth: float = float("inf"), on_missing: str = "raise") -> None:
        super().__init__(transform)
        hint = "DenseDepth's nyu_data.zip unpacked so that root/data/nyu2_test.csv exists, or `depthlib synth`"
        root = check_root(root, self.kind, hint)
        check_split(self.kind, split, ("train", "test"))
        listing = root / "data" / f"nyu2_{split}.csv"
        if not listing.is_file():
            raise FileNotFoundError(f"open_dataset('nyu_png'): {listing} does not exist ({hint})")
        rows = []
        text = read_text(listing, "csv listing of rgb_path,depth_path")
        for line, cells in enumerate(csv.reader(text.splitlines()), start=1):
            if not cells:
                continue
            if len(cells) < 2:
                raise DataFormatError(f"{listing}: line {line} must be 'rgb_path,depth_path', got {cells}")
            rows.append((root / cells[0].strip(), root / cells[1].strip()))
        if not rows:
            raise DataFormatError(f"{listing}: lists no frame (an empty csv)")
        self.rows = filter_missing(self.kind, rows, str(listing), on_missing)
        self.eval_crop, self.max_depth, self.split = eval_crop, check_max_depth(self.kind, max_depth), split

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, index: int) -> dict[str, Any]:
        rgb_path, depth_path = self.rows[index]
        image = read_rgb(rgb_path)
        depth = decode_nyu_png_depth(depth_path, self.split)
        h, w = depth.shape
        region = _eval_region(self.kind, self.eval_crop, h, w, depth_path)
        return make_sample(image, depth, str(depth_path), nyu_intrinsics(h, w), max_depth=self.max_depth,
                           valid_region=region)
