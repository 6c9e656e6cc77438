"""MAI-2021 monocular depth challenge data (Ignatov et al., CVPRW 2021).

Layout: ``root/[<split>/]rgb/<name>.png`` and ``root/[<split>/]depth/<name>.png`` with the same file names;
RGB 8-bit 640x480, depth 16-bit png in millimetres (ZED stereo camera, up to ~40 m), 0 = unknown; values
below 1 mm are invalid.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ._common import DepthDataset, check_max_depth, check_root, filter_missing, make_sample, read_depth_png, read_rgb

__all__ = ["MAI2021"]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


class MAI2021(DepthDataset):
    """MAI-2021 pairs ``rgb/<name>`` + ``depth/<name>``.

    Args:
        root: folder holding ``rgb/`` and ``depth/``, or their parent when ``root/<split>/rgb`` exists.
        split: sub-folder name (``"train"``, ``"val"``, ...); ignored when ``root/rgb`` exists directly.
    Options: ``max_depth``, ``on_missing`` (``"raise"``/``"skip"`` for an RGB without its depth).
    """

    kind = "mai2021"

    def __init__(self, root, split: str = "train", transform: Callable | None = None, *,
                 max_depth: float = float("inf"), on_missing: str = "raise") -> None:
        super().__init__(transform)
        hint = "the MAI-2021 depth challenge archive (registration at codalab); `depthlib download mai2021`"
        root = check_root(root, self.kind, hint)
        base = root / split if (root / split / "rgb").is_dir() else root
        if not (base / "rgb").is_dir():
            raise FileNotFoundError(f"open_dataset('mai2021'): neither {root / split / 'rgb'} nor {root / 'rgb'} "
                                    f"exists ({hint})")
        rgbs = sorted(p for p in (base / "rgb").iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not rgbs:
            raise FileNotFoundError(f"open_dataset('mai2021'): no image in {base / 'rgb'}")
        rows = [(p, base / "depth" / (p.stem + ".png")) for p in rgbs]
        if on_missing == "raise":
            # name the first file without its partner, in either direction, before any sample is read
            lonely = next((d for _, d in rows if not d.is_file()), None)
            if lonely is not None:
                raise FileNotFoundError(
                    f"open_dataset('mai2021'): rgb and depth names do not match in {base}: {lonely.parent.parent / 'rgb' / lonely.stem}"
                    f"{next(p.suffix for p, d in rows if d == lonely)} has no depth {lonely} (each rgb/<name> needs "
                    f"depth/<name>.png; on_missing='skip' leaves such frames out)")
            stems = {p.stem for p in rgbs}
            orphan = next((d for d in sorted((base / "depth").glob("*.png")) if d.stem not in stems), None) \
                if (base / "depth").is_dir() else None
            if orphan is not None:
                raise FileNotFoundError(
                    f"open_dataset('mai2021'): rgb and depth names do not match in {base}: {orphan} has no rgb "
                    f"image {base / 'rgb' / orphan.stem}.png (or .jpg)")
        self.rows = filter_missing(self.kind, rows, str(base / "rgb"), on_missing)
        self.max_depth = check_max_depth(self.kind, max_depth)

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, index: int) -> dict[str, Any]:
        rgb_path, depth_path = self.rows[index]
        raw = read_depth_png(depth_path, bits=16)
        # Stored in integer millimetres, so "below 1 mm" is exactly the value 0, which make_sample masks.
        depth = raw.to(torch.float32) / 1000.0
        return make_sample(read_rgb(rgb_path), depth, str(depth_path), None, max_depth=self.max_depth)
