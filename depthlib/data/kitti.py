"""KITTI depth benchmark (Uhrig et al., 3DV 2017): annotated ground truth + RGB of the raw drives.

Layout under ``root`` (the two official archives unpacked side by side)::

    root/data_depth_annotated/{train,val}/<date>_drive_<id>_sync/proj_depth/groundtruth/image_0{2,3}/<frame>.png
    root/raw/<date>/<date>_drive_<id>_sync/image_0{2,3}/data/<frame>.png
    root/raw/<date>/calib_cam_to_cam.txt

Ground truth is a 16-bit png, metres = value / 256, 0 = no ground truth (typically 15-20 % of pixels valid).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Callable

import torch

from ._common import DataFormatError, DepthDataset, check_max_depth, check_root, check_split, filter_missing, make_sample, \
    read_depth_png, read_rgb, read_text

__all__ = ["KITTIDepth", "KITTI_CROPS", "read_kitti_intrinsics"]

# Evaluation crops as fractions of (height, height, width, width), as in monodepth2's evaluate_depth.py:
# Garg et al. (ECCV 2016) and Eigen et al. (NIPS 2014).
KITTI_CROPS = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}


def read_kitti_intrinsics(calib_file: pathlib.Path, camera: str) -> torch.Tensor:
    """``P_rect_0X`` of ``calib_cam_to_cam.txt`` -> ``(4,)`` ``[fx, fy, cx, cy]`` of the rectified image."""
    key = f"P_rect_{camera}:"
    for line in calib_file.read_text().splitlines():
        if line.startswith(key):
            values = [float(v) for v in line[len(key):].split()]
            if len(values) != 12:
                raise DataFormatError(f"{calib_file}: {key} has {len(values)} values, expected 12")
            return torch.tensor([values[0], values[5], values[2], values[6]], dtype=torch.float32)
    raise DataFormatError(f"{calib_file}: no {key} line")


class KITTIDepth(DepthDataset):
    """KITTI depth ground truth with its RGB frame.

    Args:
        root: folder with ``data_depth_annotated/`` and ``raw/`` (see module docstring).
        split: ``"train"`` or ``"val"`` of the depth benchmark (ignored when ``split_file`` is given).
    Options:
        split_file: a list such as Eigen's, one ``<date>/<drive> <frame> <l|r>`` per line (monodepth2
            format); ground truth is looked up in both train and val folders.
        raw_root: folder of the raw drives (default ``root/raw``).
        eval_crop: ``None``, ``"garg"`` or ``"eigen"``: pixels outside the crop are marked invalid.
        max_depth: depths above it are invalid (the studies cap at 80 m); default no cap.
        on_missing: ``"raise"`` (default) or ``"skip"`` (counted warning) for a frame whose RGB or ground
            truth is missing.
    """

    kind = "kitti"

    def __init__(self, root, split: str = "train", transform: Callable | None = None, *,
                 split_file: str | os.PathLike | None = None, raw_root: str | os.PathLike | None = None,
                 eval_crop: str | None = None, max_depth: float = float("inf"), on_missing: str = "raise") -> None:
        super().__init__(transform)
        hint = "KITTI data_depth_annotated.zip and the raw drives; `depthlib download kitti_depth`"
        root = check_root(root, self.kind, hint)
        ann = root / "data_depth_annotated"
        raw = pathlib.Path(raw_root) if raw_root is not None else root / "raw"
        for folder in (ann, raw):
            if not folder.is_dir():
                raise FileNotFoundError(f"open_dataset('kitti'): {folder} does not exist ({hint})")
        if eval_crop is not None and eval_crop not in KITTI_CROPS:
            raise ValueError(f"open_dataset('kitti'): eval_crop={eval_crop!r} is not None or one of {list(KITTI_CROPS)}")
        rows: list[tuple[pathlib.Path, pathlib.Path]] = []
        if split_file is None:
            check_split(self.kind, split, ("train", "val"))
            source = str(ann / split)
            for gt in sorted((ann / split).glob("*/proj_depth/groundtruth/image_0[23]/*.png")):
                drive, cam = gt.parents[3].name, gt.parent.name
                rows.append((raw / drive[:10] / drive / cam / "data" / gt.name, gt))
        else:
            source = str(split_file)
            for line_no, line in enumerate(read_text(split_file, "KITTI split file").splitlines(), start=1):
                if not line.strip():
                    continue
                parts = line.split()
                if len(parts) != 3 or parts[2] not in ("l", "r") or "/" not in parts[0]:
                    raise DataFormatError(f"{split_file}: line {line_no} must be '<date>/<drive> <frame> <l|r>', "
                                          f"got {line!r}")
                date_drive, frame, side = parts
                drive = date_drive.split("/")[-1]
                cam = "image_02" if side == "l" else "image_03"
                name = f"{int(frame):010d}.png"
                gt = ann / "train" / drive / "proj_depth" / "groundtruth" / cam / name
                if not gt.exists():
                    gt = ann / "val" / drive / "proj_depth" / "groundtruth" / cam / name
                rows.append((raw / date_drive / cam / "data" / name, gt))
        if not rows:
            raise FileNotFoundError(f"open_dataset('kitti'): no ground-truth png found in {source}")
        self.rows = filter_missing(self.kind, rows, source, on_missing)
        self.eval_crop, self.max_depth = eval_crop, check_max_depth(self.kind, max_depth)
        self._calib: dict[tuple[pathlib.Path, str], torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def _intrinsics(self, rgb_path: pathlib.Path) -> torch.Tensor | None:
        calib = rgb_path.parents[3] / "calib_cam_to_cam.txt"
        camera = rgb_path.parents[1].name[-2:]
        key = (calib, camera)
        if key not in self._calib:
            self._calib[key] = read_kitti_intrinsics(calib, camera) if calib.is_file() else None
        return self._calib[key]

    def load(self, index: int) -> dict[str, Any]:
        rgb_path, gt_path = self.rows[index]
        image = read_rgb(rgb_path)
        depth = read_depth_png(gt_path, bits=16).to(torch.float32) / 256.0
        h, w = depth.shape
        region = None
        if self.eval_crop is not None:
            t, b, l, r = KITTI_CROPS[self.eval_crop]
            region = (int(t * h), int(b * h), int(l * w), int(r * w))
        return make_sample(image, depth, str(gt_path), self._intrinsics(rgb_path), max_depth=self.max_depth,
                           valid_region=region)
