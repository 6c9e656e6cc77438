"""Decoding, validation and sample assembly shared by every reader.

Every reader goes through these helpers so that all kinds fail the same way on bad input (an error naming
the file) and build samples with the same keys, dtypes and invalid-pixel convention.
"""

from __future__ import annotations

import math
import os
import pathlib
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

__all__ = ["DataFormatError", "DepthDataset", "read_rgb", "read_depth_png", "read_text", "make_sample", "nan_intrinsics",
           "check_ordinal"]


class DataFormatError(ValueError):
    """A file exists but its content is not what its format promises (corrupt, truncated, wrong shape/dtype,
    no valid depth). The message always names the file."""


PathLike = str | os.PathLike


def nan_intrinsics() -> torch.Tensor:
    """``(4,)`` float32 NaNs: the intrinsics of a sample whose camera is unknown."""
    return torch.full((4,), math.nan, dtype=torch.float32)


def read_text(path: PathLike, what: str = "text file") -> str:
    """The content of a listing or annotation file (UTF-8), or a :class:`DataFormatError` naming it when it
    is binary (a NUL byte or bytes that are not UTF-8: an image or archive saved under a listing's name)."""
    path = pathlib.Path(path)
    data = path.read_bytes()
    if b"\x00" in data[:65536]:
        raise DataFormatError(f"{path}: a binary file, not a {what} (it holds NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not a UTF-8 {what} (byte {err.start}: {data[err.start:err.start + 1]!r})") from None


def _open_image(path: pathlib.Path) -> Image.Image:
    """Open and fully decode an image file with Pillow, mapping every decoding failure to DataFormatError."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path}: file is empty")
    try:
        img = Image.open(path)
        img.load()  # decode now: a truncated file fails here, naming the file, not later in a worker
    except (OSError, SyntaxError, ValueError) as err:  # UnidentifiedImageError is an OSError
        raise DataFormatError(f"{path}: cannot decode as an image ({err})") from None
    return img


def read_rgb(path: PathLike) -> torch.Tensor:
    """Decode an 8-bit colour image (png, jpeg, any content Pillow knows; grey is expanded to RGB).

    Returns:
        ``(3, H, W)`` float32 in [0, 1].
    """
    path = pathlib.Path(path)
    img = _open_image(path)
    if img.mode not in ("RGB", "RGBA", "L", "P", "CMYK", "YCbCr", "LA"):
        raise DataFormatError(f"{path}: expected an 8-bit colour image, got Pillow mode {img.mode!r}")
    array = np.asarray(img.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def read_depth_png(path: PathLike, bits: int | Sequence[int] = 16) -> torch.Tensor:
    """Decode a single-channel depth png without any value conversion.

    Args:
        path: png file.
        bits: accepted bit depth(s), 8 and/or 16; another depth raises :class:`DataFormatError`.

    Returns:
        ``(H, W)`` tensor of the raw stored values: uint8 for an 8-bit png, int32 for a 16-bit one.
    """
    path = pathlib.Path(path)
    allowed = {bits} if isinstance(bits, int) else set(bits)
    img = _open_image(path)
    if img.mode in ("I;16", "I;16B", "I;16L"):
        array, got = np.asarray(img).astype(np.uint16), 16
    elif img.mode == "I":  # 16-bit grey decoded into 32-bit integers by some Pillow versions
        array = np.asarray(img)
        if array.min() < 0 or array.max() > 65535:
            raise DataFormatError(f"{path}: values outside the 16-bit range")
        array, got = array.astype(np.uint16), 16
    elif img.mode == "L":
        array, got = np.asarray(img), 8
    else:
        raise DataFormatError(f"{path}: a depth png must have 1 channel, got Pillow mode {img.mode!r}")
    if got not in allowed:
        raise DataFormatError(f"{path}: expected a {'/'.join(map(str, sorted(allowed)))}-bit depth png, "
                              f"got {got}-bit")
    if array.dtype == np.uint16:
        # torch has no uint16 arithmetic worth using; int32 holds every value exactly.
        return torch.from_numpy(array.astype(np.int32))
    return torch.from_numpy(array.copy())


def make_sample(
    image: torch.Tensor,
    depth: torch.Tensor,
    path: str,
    intrinsics: torch.Tensor | None = None,
    *,
    min_depth: float = 0.0,
    max_depth: float = math.inf,
    valid_region: tuple[int, int, int, int] | None = None,
) -> dict[str, Any]:
    """Assemble a sample dict with the project's conventions and check it.

    Args:
        image: ``(3, H, W)`` float32 in [0, 1].
        depth: ``(H, W)`` or ``(1, H, W)`` float depth in metres; non-finite or ``<= min_depth`` or
            ``> max_depth`` values are invalid.
        path: source file named in errors and stored in ``sample["path"]``.
        intrinsics: ``(4,)`` ``[fx, fy, cx, cy]`` or ``None`` (unknown -> NaN).
        valid_region: ``(top, bottom, left, right)``; pixels outside are marked invalid (evaluation crops).

    Returns:
        dict with ``image (3,H,W) float32``, ``depth (1,H,W) float32`` (0 = invalid), ``mask (1,H,W) bool``,
        ``path str``, ``intrinsics (4,) float32``.

    Raises:
        DataFormatError: image and depth sizes differ, or no pixel is valid.
    """
    depth = depth.to(torch.float32)
    if depth.dim() == 2:
        depth = depth.unsqueeze(0)
    if image.dim() != 3 or image.shape[0] != 3:
        raise DataFormatError(f"{path}: image must be (3, H, W), got {tuple(image.shape)}")
    if depth.shape[-2:] != image.shape[-2:]:
        raise DataFormatError(
            f"{path}: depth is {tuple(depth.shape[-2:])} but the image is {tuple(image.shape[-2:])}"
        )
    mask = torch.isfinite(depth) & (depth > min_depth) & (depth <= max_depth)
    if valid_region is not None:
        top, bottom, left, right = valid_region
        region = torch.zeros_like(mask)
        region[:, top:bottom, left:right] = True
        mask &= region
    if not bool(mask.any()):
        raise DataFormatError(f"{path}: depth map has no valid pixel")
    depth = depth.masked_fill(~mask, 0.0)
    if intrinsics is None:
        intrinsics = nan_intrinsics()
    return {
        "image": image.contiguous(),
        "depth": depth.contiguous(),
        "mask": mask,
        "path": str(path),
        "intrinsics": torch.as_tensor(intrinsics, dtype=torch.float32).clone(),
    }


def check_ordinal(sample: dict[str, Any], where: str) -> dict[str, Any]:
    """Check the ordinal keys of a sample and return it unchanged.

    ``sample["pairs"]`` must be a long ``(K, 4)`` tensor ``[yA, xA, yB, xB]`` with every point inside the
    ``H x W`` of ``sample["image"]`` (``(3, H, W)``), and ``sample["relation"]`` a long ``(K,)`` tensor with values
    in {-1, 0, +1} (``+1``: A farther, see :func:`depthlib.metrics.relation_from_depth`). The DIW and ReDWeb
    readers, the procedural stand-ins of :mod:`depthlib.data.relative` and the ordinal training code call it, so
    a bad annotation stops a run where it is read, naming its source.

    Args:
        sample: a sample dict with ``image``, ``pairs`` and ``relation``.
        where: the source named in errors (a file path or a dataset name).

    Raises:
        DataFormatError: missing keys, wrong dtype or shape, a point outside the image (the message names the
            pair index, its coordinates and the image size) or a relation outside {-1, 0, +1} (it names the value).
    """
    missing = [k for k in ("image", "pairs", "relation") if k not in sample]
    if missing:
        raise DataFormatError(f"{where}: an ordinal sample needs {missing} (has {sorted(sample)})")
    pairs, relation = sample["pairs"], sample["relation"]
    h, w = (int(v) for v in sample["image"].shape[-2:])
    if not isinstance(pairs, torch.Tensor) or pairs.dtype != torch.long or pairs.dim() != 2 or pairs.shape[1] != 4:
        got = f"{pairs.dtype} {tuple(pairs.shape)}" if isinstance(pairs, torch.Tensor) else type(pairs).__name__
        raise DataFormatError(f"{where}: pairs must be a long (K, 4) tensor [yA, xA, yB, xB], got {got}")
    if (not isinstance(relation, torch.Tensor) or relation.dtype != torch.long
            or tuple(relation.shape) != (pairs.shape[0],)):
        got = f"{relation.dtype} {tuple(relation.shape)}" if isinstance(relation, torch.Tensor) else type(relation).__name__
        raise DataFormatError(f"{where}: relation must be a long ({pairs.shape[0]},) tensor (one per pair), got {got}")
    ys, xs = pairs[:, 0::2], pairs[:, 1::2]
    outside = ((ys < 0) | (ys >= h) | (xs < 0) | (xs >= w)).any(dim=1)
    if bool(outside.any()):
        k = int(outside.nonzero()[0, 0])
        raise DataFormatError(f"{where}: pair {k} [yA, xA, yB, xB] = {pairs[k].tolist()} lies outside the "
                              f"{h}x{w} image ({int(outside.sum())} of {pairs.shape[0]} pairs outside; 0-based pixels)")
    bad = (relation != 1) & (relation != 0) & (relation != -1)
    if bool(bad.any()):
        k = int(bad.nonzero()[0, 0])
        raise DataFormatError(f"{where}: relation[{k}] = {int(relation[k])} is not -1, 0 or +1 "
                              "(+1: A farther, -1: A closer, 0: equal)")
    return sample


def check_root(root: PathLike | None, kind: str, hint: str) -> pathlib.Path:
    """Resolve ``root`` or raise a FileNotFoundError that says what to fetch and where to put it."""
    if root is None:
        raise ValueError(f"open_dataset({kind!r}): root is required ({hint})")
    root = pathlib.Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"open_dataset({kind!r}): root {root} does not exist ({hint})")
    return root


def check_max_depth(kind: str, max_depth: Any) -> float:
    """``max_depth`` as a float > 0 (``inf``: no cap), or a ValueError naming it (``"10"`` is a string)."""
    if isinstance(max_depth, bool) or not isinstance(max_depth, (int, float)) or not max_depth > 0:
        raise ValueError(f"open_dataset({kind!r}): max_depth={max_depth!r} must be a number of metres > 0 "
                         "(float('inf') for no cap)")
    return float(max_depth)


def check_split(kind: str, split: str, allowed: Sequence[str]) -> str:
    if split not in allowed:
        raise ValueError(f"open_dataset({kind!r}): split={split!r} is not one of {list(allowed)}")
    return split


def filter_missing(
    kind: str, rows: list[tuple[pathlib.Path, ...]], source: str, on_missing: str
) -> list[tuple[pathlib.Path, ...]]:
    """Check that every file of every row exists.

    ``on_missing="raise"`` (default) raises naming the listing, the row and the missing file;
    ``"skip"`` drops such rows and emits one warning with their count.
    """
    if on_missing not in ("raise", "skip"):
        raise ValueError(f"open_dataset({kind!r}): on_missing={on_missing!r} is not 'raise' or 'skip'")
    kept, skipped, first = [], 0, None
    for line, row in enumerate(rows, start=1):
        missing = next((p for p in row if not p.is_file()), None)
        if missing is None:
            kept.append(row)
            continue
        if on_missing == "raise":
            raise FileNotFoundError(f"{source}: entry {line} points to a missing file {missing}")
        skipped += 1
        first = first or missing
    if skipped:
        warnings.warn(f"{source}: skipped {skipped} of {len(rows)} entries with a missing file (first: {first})",
                      stacklevel=3)
    if not kept:
        raise FileNotFoundError(f"{source}: no usable entry")
    return kept


class DepthDataset(Dataset):
    """Base class: a list of entries, a loader per entry, and an optional ``transform(sample) -> sample``."""

    kind: str = ""

    def __init__(self, transform: Callable[[dict], dict] | None = None) -> None:
        self.transform = transform

    def __len__(self) -> int:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def load(self, index: int) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {len(self)} samples")
        sample = self.load(index % len(self))
        return self.transform(sample) if self.transform is not None else sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, n={len(self)}, transform={self.transform!r})"
