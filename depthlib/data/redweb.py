"""ReDWeb (Xian et al., "Monocular Relative Depth Perception with Web Stereo Data Supervision", CVPR 2018).

3600 web stereo images with dense *relative* depth: the disparity of a stereo matcher, up to an unknown scale
and shift per image, stored as 8-bit grey png where **larger = closer**. Release layout (``ReDWeb_V1``)::

    root/Imgs/<name>.jpg    RGB
    root/RDs/<name>.png     8-bit relative disparity of the same size

ReDWeb is distributed from the authors' page (https://sites.google.com/site/redwebcvpr18/), not from a stable
URL: ``depthlib download redweb`` prints where to get it. The release marks no pixel invalid, so every pixel
is kept (0 is simply the smallest, farthest, disparity).

Samples (:func:`redweb_sample`, shared with the procedural stand-in of :mod:`depthlib.data.relative`):

- ``image`` ``(3, H, W)`` float32 in [0, 1];
- ``relative`` ``(1, H, W)`` float32: the stored disparity / 255, in [0, 1], larger = closer, no unit;
- ``relative_mask`` ``(1, H, W)`` bool: pixels of ``relative`` that hold a disparity (all of them here);
- ``pairs`` ``(K, 4)`` long ``[yA, xA, yB, xB]`` and ``relation`` ``(K,)`` long, sampled from ``relative`` as
  ReDWeb trains (K = 3000 point pairs per image, relative tolerance 0.02 for "equal"):
  :func:`depthlib.metrics.sample_ordinal_pairs` with ``space="inverse"``, ``threshold=0.02``; the relation follows
  the library's convention (``+1``: A farther, i.e. smaller disparity);
- ``depth`` ``(1, H, W)`` zeros and ``mask`` all False (no metric depth), ``intrinsics`` NaN, ``path``.

The pairs of an image are drawn from a ``torch.Generator`` seeded with ``(pair_seed, image name)``, so an image
gets the same pairs in every split, epoch and DataLoader worker; a different ``pair_seed`` draws other pairs.

Splits: the release has no official split, and Yucel et al. (2021) train on all of it. ``"train"`` (and its
alias ``"all"``) is every image; ``"fit"`` and ``"val"`` are a deterministic 95 % / 5 % partition of it by the
sha256 of the image name (``val``: the names whose digest is 0 mod 20), the same on every machine and unchanged
when images are added or removed, for a held-out ReDWeb check that the paper does not make.
"""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any, Callable

import torch

from ._common import DataFormatError, DepthDataset, check_ordinal, check_root, check_split, filter_missing, \
    nan_intrinsics, read_depth_png, read_rgb

__all__ = ["ReDWeb", "redweb_sample", "REDWEB_PAIRS", "REDWEB_THRESHOLD", "pair_generator"]

#: Point pairs per image and the relative "equal" tolerance of ReDWeb's ranking loss (Xian et al. 2018).
REDWEB_PAIRS = 3000
REDWEB_THRESHOLD = 0.02
_SPLITS = ("train", "all", "fit", "val")
_VAL_EVERY = 20
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
HINT = ("ReDWeb_V1 from the authors' page https://sites.google.com/site/redwebcvpr18/ (Xian et al. CVPR 2018), "
        "unpacked so that root/Imgs/<name>.jpg and root/RDs/<name>.png exist; `depthlib download redweb` "
        "prints the steps")


def pair_generator(*parts: Any) -> torch.Generator:
    """A ``torch.Generator`` seeded with a sha256 of ``parts`` (same seed on every machine and process)."""
    digest = hashlib.sha256(":".join(str(p) for p in ("depthlib.pairs",) + parts).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def redweb_sample(image: torch.Tensor, disparity: torch.Tensor, path: str, *, n_pairs: int = REDWEB_PAIRS,
                  generator: torch.Generator | None = None, intrinsics: torch.Tensor | None = None
                  ) -> dict[str, Any]:
    """Assemble a ReDWeb-style sample from an image and its 8-bit relative disparity, and check it.

    The one place where ReDWeb samples are made: the reader and the procedural stand-in
    (:func:`depthlib.data.relative.relative_standin` with ``kind="redweb"``) both call it.

    Args:
        image: ``(3, H, W)`` float32 RGB in [0, 1].
        disparity: ``(H, W)`` or ``(1, H, W)`` uint8 relative disparity (larger = closer), as stored in ``RDs/``.
        path: the source, stored in ``sample["path"]`` and named in errors.
        n_pairs: point pairs to sample (ReDWeb: 3000).
        generator: the pair sampler's generator (see :func:`pair_generator`).
        intrinsics: ``(4,)`` or ``None`` (unknown -> NaN; web images have no calibration).

    Returns:
        the sample dict of the module docstring.

    Raises:
        DataFormatError: a disparity that is not uint8 or whose size differs from the image's, or a disparity
            map with a single value (no pair could be ordered).
    """
    if disparity.dim() == 2:
        disparity = disparity.unsqueeze(0)
    if disparity.dtype != torch.uint8 or disparity.dim() != 3 or disparity.shape[0] != 1:
        raise DataFormatError(f"{path}: relative disparity must be uint8 (H, W), got {disparity.dtype} "
                              f"{tuple(disparity.shape)}")
    if image.dim() != 3 or image.shape[0] != 3:
        raise DataFormatError(f"{path}: image must be (3, H, W), got {tuple(image.shape)}")
    h, w = (int(v) for v in image.shape[-2:])
    if tuple(disparity.shape[-2:]) != (h, w):
        raise DataFormatError(f"{path}: relative disparity is {tuple(disparity.shape[-2:])} but the image is {(h, w)}")
    if int(disparity.min()) == int(disparity.max()):
        raise DataFormatError(f"{path}: relative disparity is {int(disparity.min())} everywhere: no depth order")
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 1:
        raise ValueError(f"redweb_sample: n_pairs={n_pairs!r} must be an int >= 1")
    from depthlib.metrics import sample_ordinal_pairs  # the library's one pair sampler (and sign convention)

    relative = disparity.to(torch.float32) / 255.0
    relative_mask = torch.ones(1, h, w, dtype=torch.bool)
    pairs, relation = sample_ordinal_pairs(relative[None], relative_mask[None], n_pairs=n_pairs,
                                           threshold=REDWEB_THRESHOLD, space="inverse", generator=generator)
    sample = {
        "image": image.contiguous(),
        "relative": relative.contiguous(),
        "relative_mask": relative_mask,
        "pairs": pairs[0],
        "relation": relation[0],
        "depth": torch.zeros(1, h, w),
        "mask": torch.zeros(1, h, w, dtype=torch.bool),
        "intrinsics": nan_intrinsics() if intrinsics is None else torch.as_tensor(intrinsics, dtype=torch.float32),
        "path": str(path),
    }
    return check_ordinal(sample, str(path))


def _in_val(name: str) -> bool:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little") % _VAL_EVERY == 0


class ReDWeb(DepthDataset):
    """ReDWeb_V1 images with dense relative disparity and sampled ordinal pairs (see the module docstring).

    Args:
        root: the release folder holding ``Imgs/`` and ``RDs/``.
        split: ``"train"``/``"all"`` (every image), ``"fit"`` or ``"val"`` (the deterministic 95/5 partition).
    Options: ``n_pairs`` (default 3000), ``pair_seed`` (default 0), ``on_missing`` (``"raise"``/``"skip"``) for
    images without a disparity map.
    """

    kind = "redweb"

    def __init__(self, root, split: str = "train", transform: Callable | None = None, *,
                 n_pairs: int = REDWEB_PAIRS, pair_seed: int = 0, on_missing: str = "raise") -> None:
        super().__init__(transform)
        root = check_root(root, self.kind, HINT)
        check_split(self.kind, split, _SPLITS)
        if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 1:
            raise ValueError(f"open_dataset('redweb'): n_pairs={n_pairs!r} must be an int >= 1")
        if isinstance(pair_seed, bool) or not isinstance(pair_seed, int):
            raise ValueError(f"open_dataset('redweb'): pair_seed={pair_seed!r} must be an int")
        images, maps = root / "Imgs", root / "RDs"
        for folder in (images, maps):
            if not folder.is_dir():
                raise FileNotFoundError(f"open_dataset('redweb'): {folder} does not exist ({HINT})")
        files = sorted(p for p in images.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"open_dataset('redweb'): no image (*.jpg) in {images} ({HINT})")
        if split in ("fit", "val"):
            files = [p for p in files if _in_val(p.stem) == (split == "val")]
            if not files:
                raise FileNotFoundError(f"open_dataset('redweb'): split {split!r} of {images} is empty")
        rows = filter_missing(self.kind, [(p, maps / f"{p.stem}.png") for p in files], str(images), on_missing)
        self.entries: list[tuple[pathlib.Path, pathlib.Path]] = [(a, b) for a, b in rows]
        self.n_pairs, self.pair_seed = int(n_pairs), int(pair_seed)

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, index: int) -> dict[str, Any]:
        image_path, map_path = self.entries[index]
        image = read_rgb(image_path)
        disparity = read_depth_png(map_path, bits=8)
        if tuple(disparity.shape) != tuple(image.shape[-2:]):
            raise DataFormatError(f"{map_path}: relative disparity is {tuple(disparity.shape)} but its image "
                                  f"{image_path} is {tuple(image.shape[-2:])}")
        return redweb_sample(image, disparity, str(image_path), n_pairs=self.n_pairs,
                             generator=pair_generator("redweb", self.pair_seed, image_path.stem))
