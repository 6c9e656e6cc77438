"""Write generated frames in DenseDepth's ``nyu_data`` layout, so ``open_dataset("nyu_png", out)`` reads them.

- ``split="test"`` (default): ``data/nyu2_test/NNNNN_colors.png`` (8-bit RGB) and ``NNNNN_depth.png``
  (16-bit, millimetres, 0 = invalid); listed in ``data/nyu2_test.csv``. Depths beyond 65.535 m (outdoor
  scenes) do not fit and are stored as 0 (invalid).
- ``split="train"``: ``data/nyu2_train/synth_<scene>/<n>.png`` (8-bit RGB, lossless png rather than
  DenseDepth's jpg) and ``<n>_depth.png`` (8-bit, 255 = 10 m, DenseDepth's train convention; deeper -> 0);
  listed in ``data/nyu2_train.csv``.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import numpy as np
import torch
from PIL import Image

from .synth import render_batch

__all__ = ["write_nyu_png"]


def _save_png(array: np.ndarray, path: pathlib.Path) -> None:
    # Atomic: a crash never leaves a truncated png that a later read would reject.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png.tmp")
    os.close(fd)
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)


def write_nyu_png(out: str | os.PathLike, n: int, size: tuple[int, int] = (240, 320), seed: int = 0,
                  scene: str = "indoor", split: str = "test", batch: int = 8, progress: bool = False) -> pathlib.Path:
    """Render frames ``0..n-1`` of sequence ``seed`` and write them under ``out`` (see module docstring).

    Returns the path of the written csv listing.
    """
    if split not in ("test", "train"):
        raise ValueError(f"write_nyu_png: split={split!r} is not 'test' or 'train'")
    if n < 1:
        raise ValueError(f"write_nyu_png: n={n!r} must be >= 1")
    out = pathlib.Path(out)
    folder = out / "data" / (f"nyu2_{split}" if split == "test" else f"nyu2_train/synth_{scene}")
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    indices = list(range(n))
    iterator = range(0, n, batch)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="synth", unit="batch")
    for start in iterator:
        chunk = indices[start:start + batch]
        frames = render_batch(seed, chunk, size, scene)
        rgb = (frames["image"] * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        depth = frames["depth"][:, 0]
        if split == "test":
            mm = (depth * 1000.0).round()
            stored = torch.where(mm <= 65535, mm, 0).to(torch.int32).numpy().astype(np.uint16)
        else:
            q = (depth * (255.0 / 10.0)).round()
            stored = torch.where(q <= 255, q, 0).to(torch.uint8).numpy()
        for row, index in enumerate(chunk):
            if split == "test":
                rgb_path, depth_path = folder / f"{index:05d}_colors.png", folder / f"{index:05d}_depth.png"
            else:
                rgb_path, depth_path = folder / f"{index}.png", folder / f"{index}_depth.png"
            _save_png(rgb[row], rgb_path)
            _save_png(stored[row], depth_path)
            rows.append(f"{rgb_path.relative_to(out).as_posix()},{depth_path.relative_to(out).as_posix()}\n")
    listing = out / "data" / f"nyu2_{split}.csv"
    listing.write_text("".join(rows))
    return listing
