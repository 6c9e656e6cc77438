"""Write generated frames in a real dataset's layout, so the real reader reads them back.

:func:`write_nyu_png`: DenseDepth's ``nyu_data`` layout, read by ``open_dataset("nyu_png", out)``:

- ``split="test"`` (default): ``data/nyu2_test/NNNNN_colors.png`` (8-bit RGB) and ``NNNNN_depth.png``
  (16-bit, millimetres, 0 = invalid); listed in ``data/nyu2_test.csv``. Depths beyond 65.535 m (outdoor
  scenes) do not fit and are stored as 0 (invalid).
- ``split="train"``: ``data/nyu2_train/synth_<scene>/<n>.png`` (8-bit RGB, lossless png rather than
  DenseDepth's jpg) and ``<n>_depth.png`` (8-bit, 255 = 10 m, DenseDepth's train convention; deeper -> 0);
  listed in ``data/nyu2_train.csv``.

:func:`write_mai2021`: the MAI-2021 challenge layout, read by ``open_dataset("mai2021", out, split=split)``:
``<split>/rgb/NNNNN.png`` (8-bit RGB) and ``<split>/depth/NNNNN.png`` (16-bit, millimetres, 0 = invalid, as the
challenge stores its ZED depth; beyond 65.535 m -> 0).
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import numpy as np
import torch
from PIL import Image

from .synth import SCENES, render_batch

__all__ = ["write_nyu_png", "check_nyu_png_target", "write_mai2021", "check_mai2021_target"]


def _save_png(array: np.ndarray, path: pathlib.Path) -> None:
    # Atomic: a crash never leaves a truncated png that a later read would reject.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png.tmp")
    os.close(fd)
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)


def _positive_int(name: str, value, who: str = "write_nyu_png") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{who}: {name}={value!r} must be a positive int")
    return int(value)


def _check_size(size, who: str) -> tuple[int, int]:
    try:
        h, w = (_positive_int("size", v, who) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: size={size!r} must be (H, W) with H, W >= 4") from None
    if h < 4 or w < 4:
        raise ValueError(f"{who}: size={size!r} must be (H, W) with H, W >= 4")
    return h, w


def _check_counts(who: str, n, batch, workers, size) -> tuple[int, int, int | None, tuple[int, int]]:
    """A writer's frame count, batch, render threads (``None`` allowed) and ``(H, W)``, checked."""
    return (_positive_int("n", n, who), _positive_int("batch", batch, who),
            None if workers is None else _positive_int("workers", workers, who), _check_size(size, who))


def _depth_mm(depth: torch.Tensor) -> np.ndarray:
    """``(B, H, W)`` metres -> uint16 millimetres, 0 where the depth does not fit 16 bits."""
    mm = (depth * 1000.0).round()
    return torch.where(mm <= 65535, mm, 0).to(torch.int32).numpy().astype(np.uint16)


def _listed_files(listing: pathlib.Path, out: pathlib.Path) -> list[pathlib.Path]:
    """The files an existing listing names, inside ``out`` only (never delete outside the dataset)."""
    files = []
    try:
        lines = listing.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return files
    root = out.resolve()
    for line in lines:
        for cell in line.split(",")[:2]:
            path = (out / cell.strip()).resolve()
            if cell.strip() and path.suffix == ".png" and root in path.parents:
                files.append(path)
    return files


def check_nyu_png_target(out: str | os.PathLike, split: str = "test", scene: str = "indoor",
                         overwrite: bool = False) -> pathlib.Path:
    """Raise before any rendering when ``out`` cannot take a new dataset.

    Raises:
        FileExistsError: ``out`` is a file, or already holds a dataset of this split (its listing
            ``data/nyu2_<split>.csv`` or pngs in the frames' folder) and ``overwrite`` is False.
    """
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"write_nyu_png: out={str(out)!r} is an existing file, not a folder")
    listing = out / "data" / f"nyu2_{split}.csv"
    folder = out / "data" / (f"nyu2_{split}" if split == "test" else f"nyu2_train/synth_{scene}")
    if listing.exists() and not listing.is_file():
        raise FileExistsError(f"write_nyu_png: {listing} exists and is not a file")
    if overwrite:
        return listing
    held = []
    if listing.is_file():
        rows = sum(1 for line in listing.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip())
        held.append(f"{listing} ({rows} rows)")
    if folder.is_dir():
        pngs = sum(1 for _ in folder.glob("*.png"))
        if pngs:
            held.append(f"{folder} ({pngs} png files)")
    if held:
        raise FileExistsError(
            f"write_nyu_png: {out} already holds a {split} dataset: {', '.join(held)}; nothing was written. "
            "Pass overwrite=True (`depthlib synth --overwrite`) to replace it, or choose another --out")
    return listing


def write_nyu_png(out: str | os.PathLike, n: int, size: tuple[int, int] = (240, 320), seed: int = 0,
                  scene: str = "indoor", split: str = "test", batch: int = 8, progress: bool = False, *,
                  overwrite: bool = False, workers: int | None = None) -> pathlib.Path:
    """Render frames ``0..n-1`` of sequence ``seed`` and write them under ``out`` (see module docstring).

    Never replaces an existing dataset unless ``overwrite=True``: every argument and the target are checked
    before the first frame is rendered. With ``overwrite=True`` the new frames and listing replace the old
    ones, and the old listing's files the new one does not name are deleted (no stale frames stay behind).
    The listing is written last and atomically: until it is, the old listing (if any) stays as it was.

    Args:
        workers: render threads (see :func:`depthlib.data.synth.render_batch`; default: CPU cores).

    Returns:
        the path of the written csv listing.

    Raises:
        ValueError: an invalid ``n``, ``batch``, ``size``, ``split``, ``scene`` or ``workers``.
        FileExistsError: see :func:`check_nyu_png_target`.
    """
    if split not in ("test", "train"):
        raise ValueError(f"write_nyu_png: split={split!r} is not 'test' or 'train'")
    if scene not in SCENES:
        raise ValueError(f"write_nyu_png: scene={scene!r} is not one of {SCENES}")
    n, batch, workers, (h, w) = _check_counts("write_nyu_png", n, batch, workers, size)
    listing = check_nyu_png_target(out, split, scene, overwrite)
    out = pathlib.Path(out)
    previous = _listed_files(listing, out) if listing.is_file() else []
    folder = out / "data" / (f"nyu2_{split}" if split == "test" else f"nyu2_train/synth_{scene}")
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    written: set[pathlib.Path] = set()
    indices = list(range(n))
    iterator = range(0, n, batch)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="synth", unit="batch")
    for start in iterator:
        chunk = indices[start:start + batch]
        frames = render_batch(seed, chunk, (h, w), scene, workers=workers)
        rgb = (frames["image"] * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        depth = frames["depth"][:, 0]
        if split == "test":
            stored = _depth_mm(depth)
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
            written.update((rgb_path.resolve(), depth_path.resolve()))
            rows.append(f"{rgb_path.relative_to(out).as_posix()},{depth_path.relative_to(out).as_posix()}\n")
    fd, tmp = tempfile.mkstemp(dir=listing.parent, prefix=f".{listing.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(rows))
    os.replace(tmp, listing)
    for stale in previous:
        if stale not in written:
            stale.unlink(missing_ok=True)
    return listing


#: The synthetic splits :func:`write_mai2021` writes, each a different procedural sequence (the generator's own
#: split offsets, so a split's frames are those ``open_dataset("synth", split=...)`` renders).
MAI2021_SPLITS = ("train", "val", "test")


def check_mai2021_target(out: str | os.PathLike, split: str = "train", overwrite: bool = False) -> pathlib.Path:
    """Raise before any rendering when ``out/<split>`` cannot take new frames; return that folder.

    Raises:
        ValueError: an unknown ``split``.
        FileExistsError: ``out`` is a file, or ``out/<split>/rgb`` or ``out/<split>/depth`` already holds png
            files and ``overwrite`` is False.
    """
    if split not in MAI2021_SPLITS:
        raise ValueError(f"write_mai2021: split={split!r} is not one of {MAI2021_SPLITS}")
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"write_mai2021: out={str(out)!r} is an existing file, not a folder")
    base = out / split
    if not overwrite:
        held = [f"{d} ({n} png files)" for d in (base / "rgb", base / "depth")
                if d.is_dir() and (n := sum(1 for _ in d.glob("*.png")))]
        if held:
            raise FileExistsError(
                f"write_mai2021: {base} already holds frames: {', '.join(held)}; nothing was written. Pass "
                "overwrite=True to replace them, or choose another out")
    return base


def write_mai2021(out: str | os.PathLike, n: int, size: tuple[int, int] = (480, 640), seed: int = 0,
                  scene: str = "indoor", split: str = "train", batch: int = 8, *, overwrite: bool = False,
                  workers: int | None = None) -> pathlib.Path:
    """Render frames ``0..n-1`` of the procedural ``split`` of sequence ``seed`` in the MAI-2021 layout.

    Writes ``out/<split>/rgb/NNNNN.png`` (8-bit RGB, ``(H, W, 3)``) and ``out/<split>/depth/NNNNN.png``
    (16-bit millimetres ``(H, W)``, 0 = invalid): what ``open_dataset("mai2021", out, split=split)`` reads,
    the challenge's own layout (zhang2021 trains on 480x640 frames). The frames are those of
    ``open_dataset("synth", split=split, seed=seed, size=size, scene=scene)``. Each png is written atomically;
    with ``overwrite=True`` pngs of an earlier run that this one does not write are deleted.

    Args:
        out: dataset root. n: frames. size: ``(H, W)`` (MAI: ``(480, 640)``). seed, scene: the procedural
            sequence. split: ``"train"``, ``"val"`` or ``"test"``. batch: frames rendered per pass.
        workers: render threads (:func:`depthlib.data.synth.render_batch`).

    Returns:
        the split's folder ``out/<split>``.

    Raises:
        ValueError: an invalid ``n``, ``batch``, ``size``, ``split``, ``scene`` or ``workers``, before anything
            is rendered. FileExistsError: see :func:`check_mai2021_target`.
    """
    from .synth import SynthDataset

    who = "write_mai2021"
    if scene not in SCENES:
        raise ValueError(f"{who}: scene={scene!r} is not one of {SCENES}")
    n, batch, workers, (h, w) = _check_counts(who, n, batch, workers, size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"{who}: seed={seed!r} must be an int")
    base = check_mai2021_target(out, split, overwrite)
    folders = {k: base / k for k in ("rgb", "depth")}
    previous = {p.resolve() for d in folders.values() if d.is_dir() for p in d.glob("*.png")}
    for d in folders.values():
        d.mkdir(parents=True, exist_ok=True)
    written: set[pathlib.Path] = set()
    sequence = int(seed) + SynthDataset._SPLIT_OFFSET[split]
    for start in range(0, n, batch):
        chunk = list(range(start, min(n, start + batch)))
        frames = render_batch(sequence, chunk, (h, w), scene, workers=workers)
        rgb = (frames["image"] * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        stored = _depth_mm(frames["depth"][:, 0])
        for row, index in enumerate(chunk):
            paths = (folders["rgb"] / f"{index:05d}.png", folders["depth"] / f"{index:05d}.png")
            _save_png(rgb[row], paths[0])
            _save_png(stored[row], paths[1])
            written.update(p.resolve() for p in paths)
    for stale in previous - written:
        stale.unlink(missing_ok=True)
    return base
