"""Mannequin Challenge (Li et al., "Learning the Depths of Moving People by Watching Frozen People", CVPR 2019).

Google's public release (https://google.github.io/mannequinchallenge, ``MannequinChallenge.tar``, about 40 MB)
holds only camera files, one per YouTube clip, in ``{train,validation,test}/<sequence_id>.txt``: a first line
with the video URL, then one line per frame of 19 numbers: the timestamp (int, microseconds since the start of
the video), ``fx, fy, cx, cy`` in **normalised image coordinates** (top-left corner (0, 0), bottom-right (1, 1))
and two radial distortion coefficients (always 0), then the 3x4 pose ``[R | t]`` row-major.

The frames and the multi-view-stereo depth are **not distributed**: a user downloads the clips, extracts the
frames at the listed timestamps and reconstructs depth (Li et al. ran SfM + MVS on each clip). **depthlib does
not run this reconstruction**; it reads its result from this layout::

    root/{train,validation,test}/<sequence_id>.txt              Google's camera file (optional, for intrinsics)
    root/{train,validation,test}/<sequence_id>/<timestamp>.jpg  the frame (.png also accepted)
    root/{train,validation,test}/<sequence_id>/<timestamp>_depth.png   16-bit depth, or
    root/{train,validation,test}/<sequence_id>/<timestamp>_depth.npy   float32 (H, W) depth

Depth is MVS depth **up to an unknown scale per sequence** (whatever unit the reconstruction has; the png's
integers are taken as they are, no unit conversion), **0 = missing** (MVS holes, the moving or unmatched pixels
a reconstruction leaves empty); the losses and metrics used with it (Li et al.'s scale-invariant MSE,
si-RMSE) do not depend on the scale.

Samples: ``image (3, H, W)`` float32 in [0, 1], ``depth (1, H, W)`` float32 (up to scale, 0 = missing),
``mask (1, H, W)`` bool, ``intrinsics (4,)`` ``[fx, fy, cx, cy]`` in pixels of the frame (from the camera
file: ``fx * W``, ``fy * H``, ``cx * W - 0.5``, ``cy * H - 0.5`` since depthlib puts pixel centres at integer
coordinates; NaN when the sequence has no camera file), ``path`` (the frame).
"""

from __future__ import annotations

import math
import pathlib
from typing import Any, Callable

import numpy as np
import torch

from ._common import DataFormatError, DepthDataset, check_root, check_split, make_sample, nan_intrinsics, \
    read_depth_png, read_rgb, read_text

__all__ = ["MannequinChallenge", "read_mc_cameras"]

_SPLITS = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
_FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
HINT = ("Google's camera files (`depthlib download mannequin`, from google.github.io/mannequinchallenge) plus "
        "frames and multi-view-stereo depth you reconstruct yourself from the YouTube clips: depthlib does not "
        "run the MVS reconstruction; expected layout root/{train,validation,test}/<sequence_id>/<timestamp>.jpg "
        "+ <timestamp>_depth.png (16-bit) or <timestamp>_depth.npy (float32), 0 = missing; see "
        "depthlib/data/mannequin.py")


def read_mc_cameras(path: pathlib.Path) -> dict[int, tuple[float, float, float, float]]:
    """Parse a Mannequin Challenge camera file -> ``{timestamp: (fx, fy, cx, cy)}`` in normalised coordinates.

    Raises:
        DataFormatError: a frame line without 19 numbers (the message names the file and the line).
    """
    lines = read_text(path, "Mannequin Challenge camera file").splitlines()
    cameras: dict[int, tuple[float, float, float, float]] = {}
    for number, line in enumerate(lines[1:], start=2):  # line 1: the video URL
        cells = line.split()
        if not cells:
            continue
        if len(cells) != 19:
            raise DataFormatError(f"{path}: line {number} has {len(cells)} columns; a frame line has 19 "
                                  "(timestamp, fx fy cx cy k1 k2, 3x4 pose)")
        try:
            timestamp = int(cells[0])
            fx, fy, cx, cy = (float(c) for c in cells[1:5])
            [float(c) for c in cells[5:]]
        except ValueError:
            raise DataFormatError(f"{path}: line {number} is not numeric: {line.strip()!r}") from None
        cameras[timestamp] = (fx, fy, cx, cy)
    if not cameras:
        raise DataFormatError(f"{path}: no frame line after the URL line")
    return cameras


class MannequinChallenge(DepthDataset):
    """Mannequin Challenge frames with reconstructed MVS depth (up to scale), see the module docstring.

    Args:
        root: the folder holding ``train/``, ``validation/``, ``test/``.
        split: ``"train"``, ``"validation"`` (alias ``"val"``) or ``"test"``: the release's split of the clips.
    Options: ``on_missing`` (``"raise"``/``"skip"``) for frames without a depth file.
    """

    kind = "mannequin"

    def __init__(self, root, split: str = "train", transform: Callable | None = None, *,
                 on_missing: str = "raise") -> None:
        super().__init__(transform)
        root = check_root(root, self.kind, HINT)
        check_split(self.kind, split, tuple(_SPLITS))
        if on_missing not in ("raise", "skip"):
            raise ValueError(f"open_dataset('mannequin'): on_missing={on_missing!r} is not 'raise' or 'skip'")
        folder = root / _SPLITS[split]
        if not folder.is_dir():
            raise FileNotFoundError(f"open_dataset('mannequin'): {folder} does not exist ({HINT})")
        sequences = sorted(p for p in folder.iterdir() if p.is_dir())
        self.entries: list[tuple[pathlib.Path, pathlib.Path, pathlib.Path | None]] = []
        skipped = 0
        for seq in sequences:
            camera = folder / f"{seq.name}.txt"
            for frame in sorted(p for p in seq.iterdir() if p.suffix.lower() in _FRAME_SUFFIXES
                                and not p.stem.endswith("_depth")):
                depth = next((d for d in (seq / f"{frame.stem}_depth.png", seq / f"{frame.stem}_depth.npy")
                              if d.is_file()), None)
                if depth is None:
                    if on_missing == "raise":
                        raise FileNotFoundError(f"open_dataset('mannequin'): {frame} has no depth "
                                                f"({seq / (frame.stem + '_depth.png')} or .npy; {HINT})")
                    skipped += 1
                    continue
                self.entries.append((frame, depth, camera if camera.is_file() else None))
        if skipped:
            import warnings
            warnings.warn(f"{folder}: skipped {skipped} frames without a depth file", stacklevel=3)
        if not self.entries:
            raise FileNotFoundError(f"open_dataset('mannequin'): no reconstructed frame "
                                    f"(<sequence_id>/<timestamp>.jpg + _depth) under {folder} ({HINT})")
        self._cameras: dict[pathlib.Path, dict[int, tuple[float, float, float, float]]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def _intrinsics(self, camera: pathlib.Path | None, frame: pathlib.Path, h: int, w: int) -> torch.Tensor:
        if camera is None:
            return nan_intrinsics()
        if camera not in self._cameras:
            self._cameras[camera] = read_mc_cameras(camera)
        try:
            timestamp = int(frame.stem)
        except ValueError:
            raise DataFormatError(f"{frame}: frames are named <timestamp>.jpg (microseconds, as in {camera})") from None
        if timestamp not in self._cameras[camera]:
            raise DataFormatError(f"{frame}: timestamp {timestamp} is not a frame of {camera}")
        fx, fy, cx, cy = self._cameras[camera][timestamp]
        return torch.tensor([fx * w, fy * h, cx * w - 0.5, cy * h - 0.5], dtype=torch.float32)

    def load(self, index: int) -> dict[str, Any]:
        frame, depth_path, camera = self.entries[index]
        image = read_rgb(frame)
        h, w = image.shape[-2:]
        if depth_path.suffix == ".npy":
            try:
                array = np.load(depth_path, allow_pickle=False)
            except (OSError, ValueError) as err:
                raise DataFormatError(f"{depth_path}: cannot read as a .npy array ({err})") from None
            if array.ndim != 2 or array.dtype.kind != "f":
                raise DataFormatError(f"{depth_path}: depth must be a float (H, W) array, got {array.dtype} "
                                      f"{array.shape}")
            depth = torch.from_numpy(np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0))
        else:
            depth = read_depth_png(depth_path, bits=16).to(torch.float32)
        if tuple(depth.shape) != (h, w):
            raise DataFormatError(f"{depth_path}: depth is {tuple(depth.shape)} but its frame {frame} is {(h, w)}")
        sample = make_sample(image, depth, str(frame), self._intrinsics(camera, frame, h, w), max_depth=math.inf)
        return sample
