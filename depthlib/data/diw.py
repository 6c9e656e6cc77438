"""Depth in the Wild (Chen et al., NIPS 2016): one ordinal point pair per image.

Release layout under ``root``::

    root/DIW_Annotations/DIW_train_val.csv   (or DIW_train.csv / DIW_val.csv of the "splitted" release)
    root/DIW_Annotations/DIW_test.csv
    root/DIW_train_val/<hash>.thumb, root/DIW_test/<hash>.thumb   (JPEG thumbnails)

Each annotation takes two csv lines: the image path (relative to ``root``, e.g. ``./DIW_test/<hash>.thumb``),
then ``y_A, x_A, y_B, x_B, ordinal, width, height`` where the coordinates are 1-based pixels of the original
``width x height`` photo (the released thumbnails can be smaller, so coordinates are rescaled), and
``ordinal`` is ``>`` when point A is *farther* than point B, ``<`` when it is closer (the authors' loader maps
``>`` to +1 and its ranking loss then pushes depth_A above depth_B).

Samples carry ``pairs`` ``(1, 4)`` long ``[yA, xA, yB, xB]`` in pixels of the returned image and
``relation`` ``(1,)`` long with the sign convention of the whole library:
``relation = sign(depth_A - depth_B)``: +1 = A farther, -1 = A closer, 0 = equal.
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable

import torch

from ._common import DataFormatError, DepthDataset, check_ordinal, check_root, check_split, filter_missing, \
    nan_intrinsics, read_rgb, read_text

__all__ = ["DIW", "read_diw_csv"]

_CSV = {"train": ("DIW_train_val.csv", "DIW_train.csv"), "val": ("DIW_val.csv",), "test": ("DIW_test.csv",)}
_ORDINAL = {">": 1, "<": -1, "=": 0}


def read_diw_csv(path: pathlib.Path, root: pathlib.Path) -> list[tuple[pathlib.Path, tuple[float, ...], int]]:
    """Parse a DIW annotation csv -> ``[(image_path, (yA, xA, yB, xB, width, height), relation), ...]``.

    Coordinates stay 1-based in the original photo; :class:`DIW` rescales them to the decoded image.
    """
    lines = [line.strip() for line in read_text(path, "DIW annotation csv").splitlines() if line.strip()]
    if len(lines) % 2:
        raise DataFormatError(f"{path}: {len(lines)} non-empty lines; DIW annotations come in pairs of lines")
    entries = []
    for i in range(0, len(lines), 2):
        cells = [c.strip() for c in lines[i + 1].split(",")]
        if len(cells) != 7 or cells[4] not in _ORDINAL:
            raise DataFormatError(f"{path}: line {i + 2} must be 'y_A,x_A,y_B,x_B,>|<|=,width,height', "
                                  f"got {lines[i + 1]!r}")
        try:
            y_a, x_a, y_b, x_b, width, height = (float(cells[k]) for k in (0, 1, 2, 3, 5, 6))
        except ValueError:
            raise DataFormatError(f"{path}: line {i + 2} has a non-numeric coordinate: {lines[i + 1]!r}") from None
        if width <= 0 or height <= 0:
            raise DataFormatError(f"{path}: line {i + 2} has image size {width}x{height}")
        if not (1 <= y_a <= height and 1 <= y_b <= height and 1 <= x_a <= width and 1 <= x_b <= width):
            raise DataFormatError(f"{path}: line {i + 2} has a point outside its {width:g}x{height:g} image")
        entries.append((root / lines[i], (y_a, x_a, y_b, x_b, width, height), _ORDINAL[cells[4]]))
    return entries


class DIW(DepthDataset):
    """Depth in the Wild ordinal pairs.

    Samples: ``image (3, H, W)``, ``pairs (1, 4)`` long, ``relation (1,)`` long, ``depth (1, H, W)`` zeros,
    ``mask (1, H, W)`` False, ``intrinsics`` NaN, ``path``.

    Args:
        root: the release folder (see module docstring).
        split: ``"train"`` (``DIW_train_val.csv``), ``"val"`` (splitted release only) or ``"test"``.
    Options: ``on_missing`` (``"raise"``/``"skip"``) for annotations whose image is absent.
    """

    kind = "diw"

    def __init__(self, root, split: str = "train", transform: Callable | None = None, *,
                 on_missing: str = "raise") -> None:
        super().__init__(transform)
        hint = "DIW_Annotations.tar.gz and the image archives from the DIW site; `depthlib download diw`"
        root = check_root(root, self.kind, hint)
        check_split(self.kind, split, tuple(_CSV))
        folder = root / "DIW_Annotations"
        listing = next((folder / name for name in _CSV[split] if (folder / name).is_file()), None)
        if listing is None:
            raise FileNotFoundError(f"open_dataset('diw'): none of {[str(folder / n) for n in _CSV[split]]} "
                                    f"exists ({hint})")
        entries = read_diw_csv(listing, root)
        kept = {row[0] for row in filter_missing(self.kind, [(e[0],) for e in entries], str(listing), on_missing)}
        self.entries = [e for e in entries if e[0] in kept]

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, index: int) -> dict[str, Any]:
        path, (y_a, x_a, y_b, x_b, width, height), relation = self.entries[index]
        image = read_rgb(path)
        h, w = image.shape[-2:]

        # 1-based coordinates of the original photo -> 0-based pixels of the decoded thumbnail.
        def scale(v: float, size: float, out: int) -> int:
            return min(out - 1, max(0, int((v - 1.0) / size * out)))

        pairs = torch.tensor([[scale(y_a, height, h), scale(x_a, width, w), scale(y_b, height, h),
                               scale(x_b, width, w)]], dtype=torch.long)
        return check_ordinal({
            "image": image,
            "depth": torch.zeros(1, h, w),
            "mask": torch.zeros(1, h, w, dtype=torch.bool),
            "path": str(path),
            "intrinsics": nan_intrinsics(),
            "pairs": pairs,
            "relation": torch.tensor([relation], dtype=torch.long),
        }, str(path))
