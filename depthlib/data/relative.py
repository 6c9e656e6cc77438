"""Procedural stand-ins for the ordinal-depth chapter's datasets (Yucel et al., CVPRW 2021): DIW, ReDWeb,
Mannequin Challenge and NYU, built from the procedural scenes of :mod:`depthlib.data.synth`.

Each stand-in takes the synth frames and gives them the *supervision* of the dataset it stands for:

- ``"diw"`` (Chen et al., NIPS 2016): one ordinal pair per image, no dense depth. In the wild: indoor scenes at
  even indices, outdoor (street) scenes at odd ones. Pair protocol, as far as the DIW paper describes it: the
  first point is drawn uniformly at random, and in half of the images (a fair coin per image) the second point
  is its mirror about the vertical centre line (same row, ``x -> W - 1 - x``), which removes the "lower in the
  image is closer" shortcut; in the other half it is drawn uniformly at random too. The relation comes from the
  rendered depth; pairs whose depths are nearly equal (``|depth_A / depth_B - 1| < 0.02``) are redrawn, because
  DIW's annotators only answered closer / farther. Outdoor sky and everything past the synth's 80 m are taken
  as infinitely far (what an annotator sees: sky is behind everything); indoor sensor holes have no depth and
  are never picked.
- ``"redweb"`` (Xian et al., CVPR 2018): outdoor scenes with dense relative disparity as stereo on web images
  gives it, up to a random per-image scale and shift: ``lo + (hi - lo) * (1/depth) / max(1/depth)`` with
  ``lo ~ U(0, 64)``, ``hi ~ U(192, 255)`` (sky: disparity 0, i.e. ``lo``), rounded to 8 bits like the release's
  png and divided by 255; then K = 3000 pairs sampled exactly as the ReDWeb reader does, through the same
  function (:func:`depthlib.data.redweb.redweb_sample`).
- ``"mc"`` (Li et al., CVPR 2019): indoor scenes with dense depth times a random per-image scale, log-uniform in
  ``[0.25, 4]`` (MVS depth is known only up to scale); the synth indoor sensor holes are kept as MVS holes.
- ``"nyu"``: the synth indoor frames as they are (metric depth), the NYU evaluation stand-in.

Determinism: the frames of kind ``k`` are frames of the synth sequence ``seed + KIND_OFFSET[k]`` (so the
stand-ins do not share frames; ``"nyu"`` is the plain ``open_dataset("synth", seed=seed)`` sequence), the
split picks the synth stream (``"train"`` and ``"test"`` never share a frame), and every other random choice
(pair points, the coin, scale, shift) comes from a generator seeded with a sha256 of ``(kind, seed, split,
index)``: the same call gives the same bytes.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ._common import DataFormatError, check_ordinal, nan_intrinsics
from .redweb import REDWEB_PAIRS, pair_generator, redweb_sample

__all__ = ["STANDINS", "KIND_OFFSET", "relative_standin", "diw_pair", "MC_SCALE", "DIW_TIE", "REDWEB_RANGE"]

#: ``cache(key, spec, fn)``: returns ``fn()``, possibly stored under ``(key, spec)`` (as in chapters.py).
Cache = Callable[[str, Any, Callable[[], Any]], Any]

STANDINS = {
    "diw": "DIW-like: alternating indoor/outdoor synth frames, one ordinal pair each (no dense depth)",
    "redweb": "ReDWeb-like: outdoor synth frames, 8-bit relative disparity with a random scale and shift, "
              "3000 sampled pairs",
    "mc": "Mannequin-Challenge-like: indoor synth frames, depth times a log-uniform [0.25, 4] scale, holes kept",
    "nyu": "NYU-like: indoor synth frames with metric depth (the NYU evaluation stand-in)",
}
#: Added to the data seed so that each stand-in draws its own synth frames.
KIND_OFFSET = {"nyu": 0, "diw": 10_000_019, "redweb": 20_000_033, "mc": 30_000_049}
#: Range of the per-image depth scale of the MC stand-in (log-uniform).
MC_SCALE = (0.25, 4.0)
#: Relative depth difference below which a DIW-like pair counts as a tie and is redrawn.
DIW_TIE = 0.02
#: Ranges of the 8-bit disparity of the farthest (``lo``) and nearest (``hi``) pixel of a ReDWeb-like map.
REDWEB_RANGE = ((0.0, 64.0), (192.0, 255.0))
_SPLITS = ("train", "test")
_TRIES = 10_000
_VERSION = 1  # of the stand-ins' recipe, part of the cache spec


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


def diw_pair(depth: torch.Tensor, mask: torch.Tensor, outdoor: bool, generator: torch.Generator, where: str
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """One DIW-style ordinal pair of a frame (see the module docstring for the protocol).

    Args:
        depth: ``(1, H, W)`` float32 depth (0 = invalid). mask: ``(1, H, W)`` bool valid pixels.
        outdoor: invalid pixels are sky / beyond range, taken as infinitely far; else they are never picked.
        generator: draws the coin and the points.
        where: the frame, named in errors.

    Returns:
        ``pairs`` ``(1, 4)`` long ``[yA, xA, yB, xB]`` and ``relation`` ``(1,)`` long in {+1, -1}
        (``+1``: A farther).

    Raises:
        DataFormatError: no pair without a tie found in 10000 draws (a frame of one depth).
    """
    h, w = (int(v) for v in depth.shape[-2:])
    z = depth[0].to(torch.float64)
    valid = torch.ones(h, w, dtype=torch.bool) if outdoor else mask[0].clone()
    if outdoor:
        z = torch.where(mask[0], z, torch.full_like(z, math.inf))
    candidates = valid.reshape(-1).nonzero()[:, 0]
    if candidates.numel() < 2:
        raise DataFormatError(f"{where}: fewer than 2 pixels with a depth to pair")
    symmetric = bool(torch.rand((), generator=generator) < 0.5)
    for _ in range(_TRIES):
        ia = int(candidates[int(torch.randint(candidates.numel(), (), generator=generator))])
        ya, xa = divmod(ia, w)
        if symmetric:
            yb, xb = ya, w - 1 - xa
            if not bool(valid[yb, xb]):
                continue
        else:
            ib = int(candidates[int(torch.randint(candidates.numel(), (), generator=generator))])
            yb, xb = divmod(ib, w)
        if (ya, xa) == (yb, xb):
            continue
        za, zb = float(z[ya, xa]), float(z[yb, xb])
        if math.isinf(za) and math.isinf(zb):
            continue  # both sky: no order
        if not (math.isinf(za) or math.isinf(zb)) and abs(za / zb - 1.0) < DIW_TIE:
            continue  # a near-tie: DIW's annotators only answered closer / farther
        return (torch.tensor([[ya, xa, yb, xb]], dtype=torch.long),
                torch.tensor([1 if za > zb else -1], dtype=torch.long))
    raise DataFormatError(f"{where}: no DIW-style pair without a tie in {_TRIES} draws")


def _check_args(kind: str, split: str, n: Any, size: Any, seed: Any, n_pairs: Any) -> tuple[int, int]:
    if kind not in STANDINS:
        raise ValueError(f"relative_standin: kind={kind!r} is not one of {list(STANDINS)}")
    if split not in _SPLITS:
        raise ValueError(f"relative_standin({kind!r}): split={split!r} is not one of {list(_SPLITS)}")
    for name, value, low in (("n", n, 1), ("seed", seed, 0), ("n_pairs", n_pairs, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"relative_standin({kind!r}): {name}={value!r} must be an int >= {low}")
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 4 for v in size)):
        raise ValueError(f"relative_standin({kind!r}): size={size!r} must be (H, W) with integers H, W >= 4")
    return int(size[0]), int(size[1])


def _render(kind: str, split: str, n: int, size: tuple[int, int], seed: int, n_pairs: int) -> list[dict[str, Any]]:
    from .synth import SynthDataset

    scenes = {"diw": None, "redweb": "outdoor", "mc": "indoor", "nyu": "indoor"}[kind]
    synth_seed = seed + KIND_OFFSET[kind]
    frames: dict[int, dict[str, Any]] = {}
    for scene in ("indoor", "outdoor"):
        if scenes is None:
            indices = [i for i in range(n) if (i % 2 == 1) == (scene == "outdoor")]
        else:
            indices = list(range(n)) if scene == scenes else []
        if indices:
            ds = SynthDataset(split, n=n, size=size, seed=synth_seed, scene=scene)
            frames.update(zip(indices, ds.load_batch(indices)))
    samples = []
    for i in range(n):
        f = frames[i]
        where = f"standin:{kind}:{f['path']}"
        g = pair_generator("standin", kind, seed, split, i)
        h, w = size
        if kind == "diw":
            pairs, relation = diw_pair(f["depth"], f["mask"], f["path"].startswith("synth:outdoor"), g, where)
            s = check_ordinal({"image": f["image"], "depth": torch.zeros(1, h, w),
                               "mask": torch.zeros(1, h, w, dtype=torch.bool), "path": where,
                               "intrinsics": nan_intrinsics(), "pairs": pairs, "relation": relation}, where)
        elif kind == "redweb":
            inverse = torch.where(f["mask"], 1.0 / f["depth"].clamp_min(1e-6), torch.zeros_like(f["depth"]))
            (lo_a, lo_b), (hi_a, hi_b) = REDWEB_RANGE
            lo, hi = _uniform(g, lo_a, lo_b), _uniform(g, hi_a, hi_b)
            disparity = lo + (hi - lo) * inverse.double() / float(inverse.max())
            u8 = disparity.round().clamp(0, 255).to(torch.uint8)
            s = redweb_sample(f["image"], u8, where, n_pairs=n_pairs,
                              generator=pair_generator("standin", kind, seed, split, i, "pairs"))
        elif kind == "mc":
            scale = math.exp(_uniform(g, math.log(MC_SCALE[0]), math.log(MC_SCALE[1])))
            s = {"image": f["image"], "depth": f["depth"] * scale, "mask": f["mask"].clone(), "path": where,
                 "intrinsics": f["intrinsics"]}
        else:
            s = {"image": f["image"], "depth": f["depth"], "mask": f["mask"], "path": where,
                 "intrinsics": f["intrinsics"]}
        samples.append(s)
    return samples


def relative_standin(kind: str, *, split: str, n: int, size: Sequence[int], seed: int,
                     cache: Cache | None = None, n_pairs: int = REDWEB_PAIRS) -> list[dict[str, Any]]:
    """Render ``n`` samples of the procedural stand-in of dataset ``kind`` (see the module docstring).

    Args:
        kind: ``"diw"``, ``"redweb"``, ``"mc"`` or ``"nyu"`` (:data:`STANDINS`).
        split: ``"train"`` or ``"test"`` (disjoint synth streams).
        n: samples (>= 1). size: ``(H, W)`` in pixels. seed: the data seed (>= 0).
        cache: ``cache(key, spec, fn) -> value`` storing the rendered samples (the book passes
            :func:`depthlib.book.cached`); ``None`` renders every time.
        n_pairs: pairs per ReDWeb-like image (ReDWeb: 3000); unused by the other kinds.

    Returns:
        a list of sample dicts, all with ``image (3, H, W)`` float32 in [0, 1], ``depth (1, H, W)`` float32,
        ``mask (1, H, W)`` bool, ``intrinsics (4,)`` float32 and ``path`` (``standin:<kind>:synth:...``):

        - ``"diw"``: ``pairs (1, 4)`` long, ``relation (1,)`` long in {+1, -1}; depth zeros, mask False,
          intrinsics NaN (DIW knows no camera);
        - ``"redweb"``: ``relative (1, H, W)`` float32 in [0, 1] (multiples of 1/255, larger = closer),
          ``relative_mask (1, H, W)`` bool (all True), ``pairs (n_pairs, 4)``, ``relation (n_pairs,)``
          in {-1, 0, +1}; depth zeros, mask False, intrinsics NaN;
        - ``"mc"``: depth in metres times an unknown per-image scale (0 = hole), the synth camera;
        - ``"nyu"``: metric depth in metres (0 = hole), the synth camera.

    Raises:
        ValueError: an unknown kind or split, or a bad count or size.
    """
    h, w = _check_args(kind, split, n, size, seed, n_pairs)
    spec = {"kind": kind, "split": split, "n": int(n), "size": [h, w], "seed": int(seed),
            "n_pairs": int(n_pairs) if kind == "redweb" else 0, "version": _VERSION}

    def render() -> dict[str, Any]:
        samples = _render(kind, split, int(n), (h, w), int(seed), int(n_pairs))
        return {key: [s[key] for s in samples] if key == "path" else torch.stack([s[key] for s in samples])
                for key in samples[0]}

    stacked = cache("data/relative", spec, render) if cache is not None else render()
    return [{key: value[i] for key, value in stacked.items()} for i in range(len(stacked["path"]))]
