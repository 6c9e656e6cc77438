"""Protocol transforms: callables ``sample -> sample`` that move image, depth, mask, point pairs and
intrinsics together.

A sample holds ``image (3, H, W)`` float in [0, 1], ``depth (1, H, W)`` metres (0 = invalid),
``mask (1, H, W)`` bool, optional ``pairs (K, 4)`` long ``[yA, xA, yB, xB]`` and ``intrinsics (4,)``
``[fx, fy, cx, cy]`` (pixel centres at integer coordinates). Pixel work is done by
``torchvision.transforms.v2.functional``; crops and flips run on ``tv_tensors`` (``Image``, ``Mask`` for depth
and validity, ``KeyPoints`` for point pairs). What torchvision lacks stays here: resizing keeps invalid zeros
out of interpolation (depth and mask nearest-exact, the image bilinear and antialiased), point pairs resize
about pixel centres, depth is divided by the zoom factor (:class:`RandomScaleDepth`), and intrinsics move with
every op.

Protocols, with their sources:

- :func:`fastdepth_val_transform`: FastDepth (Wofk et al., ICRA 2019; dwofk/fast-depth ``dataloaders/nyu.py``
  ``val_transform``): resize by 250/480, centre crop 228x304, resize to 224x224.
- :func:`fastdepth_train_transform`: same file, ``train_transform``: resize by 250/480, rotate by
  U(-5, 5) degrees, scale by s ~ U(1, 1.5) with depth divided by s (the scene looks s times closer), centre
  crop 228x304, horizontal flip with p = 0.5, resize to 224x224, colour jitter 0.4 (brightness, contrast,
  saturation).
- :func:`mai2021_transform`: Zhang et al. (CVPRW 2021), section 4.1: 480x640 frames resized to 128x160.
- :func:`diw_transform`: Yucel et al. (CVPRW 2021), section 3.1: DIW images resized to 224x448.

No transform here normalises the image: the model records the normalisation its weights expect and applies it
itself (``model.normalization``, set by :func:`depthlib.models.create_model` from the weights entry), so an
image is normalised exactly once whichever way it reaches the model.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torchvision.transforms import InterpolationMode
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

__all__ = [
    "Compose", "Resize", "CenterCrop", "HorizontalFlip", "RandomHorizontalFlip", "Rotate", "RandomRotation",
    "RandomScaleDepth", "ColorJitter", "resize_sample", "scale_depth", "fastdepth_val_transform",
    "fastdepth_train_transform", "mai2021_transform", "diw_transform",
]

Sample = dict[str, Any]


def _hw(sample: Sample) -> tuple[int, int]:
    return int(sample["image"].shape[-2]), int(sample["image"].shape[-1])


def _apply_tv(sample: Sample, fn: Callable[[Any], Any]) -> Sample:
    """Apply a ``torchvision.transforms.v2.functional`` op to the sample's spatial entries as tv_tensors:
    image as ``Image``, depth and mask as ``Mask`` (never interpolated across pixels by geometric ops),
    point pairs as ``KeyPoints`` (``[x, y]`` per point, pixel indices). Intrinsics are not a tv_tensor: the
    caller updates them."""
    out = dict(sample)
    h, w = _hw(sample)
    for key, kind in (("image", tv_tensors.Image), ("depth", tv_tensors.Mask), ("mask", tv_tensors.Mask)):
        if key in sample:
            out[key] = fn(kind(sample[key])).as_subclass(torch.Tensor)
    if "pairs" in sample:
        p = sample["pairs"]
        points = tv_tensors.KeyPoints(p.view(-1, 2).flip(-1).to(torch.float32), canvas_size=(h, w))  # (2K, [x, y])
        moved = fn(points).as_subclass(torch.Tensor)
        out["pairs"] = moved.flip(-1).round().long().reshape(-1, 4)
    return out


class Compose:
    """Apply transforms in order: ``Compose([Resize(...), CenterCrop(...)])(sample)``."""

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class Resize:
    """Resize to ``size = (H', W')`` or by a float ``scale`` (both sides, rounded as in FastDepth).

    Image: bilinear (antialiased). Depth and mask: nearest. Pairs and intrinsics are rescaled.
    ``(3, H, W) -> (3, H', W')``.
    """

    def __init__(self, size: Sequence[int] | float) -> None:
        if isinstance(size, (int, float)) and not isinstance(size, bool):
            if size <= 0:
                raise ValueError(f"Resize: scale={size!r} must be > 0")
        elif len(size) != 2 or min(size) < 1:
            raise ValueError(f"Resize: size={size!r} must be (H, W) with positive sides or a positive scale")
        self.size = size

    def target(self, h: int, w: int) -> tuple[int, int]:
        if isinstance(self.size, (int, float)):
            return max(1, int(h * self.size + 0.5)), max(1, int(w * self.size + 0.5))
        return int(self.size[0]), int(self.size[1])

    def __call__(self, sample: Sample) -> Sample:
        h, w = _hw(sample)
        nh, nw = self.target(h, w)
        return resize_sample(sample, nh, nw)

    def __repr__(self) -> str:
        return f"Resize({self.size!r})"


def resize_sample(sample: Sample, nh: int, nw: int) -> Sample:
    """Resize every spatial entry of ``sample`` to ``(nh, nw)`` (see :class:`Resize`; ReDWeb's ``relative`` and
    ``relative_mask`` go nearest, like depth and mask)."""
    h, w = _hw(sample)
    if (nh, nw) == (h, w):
        return sample
    out = dict(sample)
    out["image"] = TF.resize(sample["image"], [nh, nw], interpolation=InterpolationMode.BILINEAR, antialias=True)
    if "depth" in sample:
        out["depth"] = TF.resize(sample["depth"], [nh, nw], interpolation=InterpolationMode.NEAREST_EXACT)
    if "mask" in sample:  # interpolation kernels take no bool: resample as uint8
        out["mask"] = TF.resize(sample["mask"].to(torch.uint8), [nh, nw],
                                interpolation=InterpolationMode.NEAREST_EXACT).bool()
    if "relative" in sample:  # ReDWeb's relative disparity: nearest, like depth
        out["relative"] = TF.resize(sample["relative"], [nh, nw], interpolation=InterpolationMode.NEAREST_EXACT)
    if "relative_mask" in sample:
        out["relative_mask"] = TF.resize(sample["relative_mask"].to(torch.uint8), [nh, nw],
                                         interpolation=InterpolationMode.NEAREST_EXACT).bool()
    sy, sx = nh / h, nw / w
    if "intrinsics" in sample:
        fx, fy, cx, cy = sample["intrinsics"].unbind(-1)
        out["intrinsics"] = torch.stack([fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5], -1)
    if "pairs" in sample:
        p = sample["pairs"]
        ys = ((p[:, 0::2].double() + 0.5) * sy).floor().clamp(0, nh - 1)
        xs = ((p[:, 1::2].double() + 0.5) * sx).floor().clamp(0, nw - 1)
        out["pairs"] = torch.stack([ys[:, 0], xs[:, 0], ys[:, 1], xs[:, 1]], 1).long()
    return out


class CenterCrop:
    """Central ``size = (h, w)`` window: torchvision's ``center_crop`` on the sample's tv_tensors.

    The principal point shifts by the offsets; pairs outside the window are clamped to its border.
    ``(3, H, W) -> (3, h, w)``.
    """

    def __init__(self, size: Sequence[int]) -> None:
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"CenterCrop: size={size!r} must be (h, w) with positive sides")
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, sample: Sample) -> Sample:
        h, w = _hw(sample)
        ch, cw = self.size
        if ch > h or cw > w:
            raise ValueError(f"CenterCrop: crop {ch}x{cw} is larger than the {h}x{w} sample {sample.get('path')}")
        top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))  # torchvision's offsets
        out = _apply_tv(sample, lambda t: TF.center_crop(t, [ch, cw]))
        if "intrinsics" in sample:
            out["intrinsics"] = sample["intrinsics"] - torch.tensor([0.0, 0.0, left, top])
        if "pairs" in out:  # torchvision lets points leave the canvas; a pair must stay on a pixel
            p = out["pairs"]
            p[:, 0::2] = p[:, 0::2].clamp(0, ch - 1)
            p[:, 1::2] = p[:, 1::2].clamp(0, cw - 1)
        return out

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class HorizontalFlip:
    """Mirror left-right: torchvision's ``horizontal_flip`` on the sample's tv_tensors (a point ``x`` goes to
    ``W - 1 - x``), and ``cx -> W - 1 - cx``. Shapes unchanged."""

    def __call__(self, sample: Sample) -> Sample:
        w = _hw(sample)[1]
        out = _apply_tv(sample, TF.horizontal_flip)
        if "intrinsics" in sample:
            fx, fy, cx, cy = sample["intrinsics"].unbind(-1)
            out["intrinsics"] = torch.stack([fx, fy, (w - 1) - cx, cy], -1)
        return out

    def __repr__(self) -> str:
        return "HorizontalFlip()"


class RandomHorizontalFlip:
    """:class:`HorizontalFlip` with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, sample: Sample) -> Sample:
        return HorizontalFlip()(sample) if torch.rand(()) < self.p else sample

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Rotate:
    """Rotate by ``angle`` degrees (counter-clockwise) about the image centre, keeping the size.

    Image bilinear, depth and mask nearest; uncovered corners get depth 0, mask False, image 0. Pairs and the
    principal point rotate with the image (pairs leaving the frame are clamped to it).
    """

    def __init__(self, angle: float) -> None:
        self.angle = float(angle)

    def __call__(self, sample: Sample) -> Sample:
        h, w = _hw(sample)
        out = dict(sample)
        out["image"] = TF.rotate(sample["image"], self.angle, interpolation=InterpolationMode.BILINEAR)
        if "depth" in sample:
            out["depth"] = TF.rotate(sample["depth"], self.angle, interpolation=InterpolationMode.NEAREST)
        if "mask" in sample:
            out["mask"] = TF.rotate(sample["mask"].to(torch.uint8), self.angle,
                                    interpolation=InterpolationMode.NEAREST).bool()
        if "mask" in out and "depth" in out:
            # Keep the invariant depth == 0 <=> mask False after resampling.
            out["mask"] = out["mask"] & (out["depth"] > 0)
        # Counter-clockwise on screen (y down): x' = c + R (x - c) with R = [[cos, sin], [-sin, cos]].
        a = math.radians(self.angle)
        ca, sa = math.cos(a), math.sin(a)
        xc, yc = (w - 1) / 2.0, (h - 1) / 2.0

        def rot(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            dx, dy = x - xc, y - yc
            return xc + ca * dx + sa * dy, yc - sa * dx + ca * dy

        if "intrinsics" in sample:
            fx, fy, cx, cy = sample["intrinsics"].unbind(-1)
            ncx, ncy = rot(cx, cy)
            out["intrinsics"] = torch.stack([fx, fy, ncx, ncy], -1).to(torch.float32)
        if "pairs" in sample:
            p = sample["pairs"].double()
            xa, ya = rot(p[:, 1], p[:, 0])
            xb, yb = rot(p[:, 3], p[:, 2])
            q = torch.stack([ya, xa, yb, xb], 1).round()
            q[:, 0::2] = q[:, 0::2].clamp(0, h - 1)
            q[:, 1::2] = q[:, 1::2].clamp(0, w - 1)
            out["pairs"] = q.long()
        return out

    def __repr__(self) -> str:
        return f"Rotate({self.angle})"


class RandomRotation:
    """:class:`Rotate` by an angle drawn uniformly in ``[-degrees, degrees]``."""

    def __init__(self, degrees: float) -> None:
        self.degrees = float(degrees)

    def __call__(self, sample: Sample) -> Sample:
        angle = (torch.rand(()).item() * 2 - 1) * self.degrees
        return Rotate(angle)(sample)

    def __repr__(self) -> str:
        return f"RandomRotation({self.degrees})"


class RandomScaleDepth:
    """FastDepth's scale augmentation: enlarge by ``s ~ U(lo, hi)`` and divide depth by ``s``.

    Enlarging the picture s times is what the camera would see from s times closer, so depth shrinks by s.
    ``(3, H, W) -> (3, round(s H), round(s W))``.
    """

    def __init__(self, lo: float = 1.0, hi: float = 1.5) -> None:
        if not 0 < lo <= hi:
            raise ValueError(f"RandomScaleDepth: need 0 < lo <= hi, got lo={lo}, hi={hi}")
        self.lo, self.hi = lo, hi

    def __call__(self, sample: Sample) -> Sample:
        s = self.lo + (self.hi - self.lo) * torch.rand(()).item()
        return scale_depth(sample, s)

    def __repr__(self) -> str:
        return f"RandomScaleDepth({self.lo}, {self.hi})"


def scale_depth(sample: Sample, s: float) -> Sample:
    """Resize by ``s`` and divide depth by ``s`` (see :class:`RandomScaleDepth`)."""
    out = Resize(float(s))(sample)
    if "depth" in out:
        out = dict(out)
        out["depth"] = out["depth"] / s
    return out


class ColorJitter:
    """torchvision's ColorJitter on the image only (geometry untouched), then clamped to [0, 1]."""

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.0):
        self.jitter = v2.ColorJitter(brightness, contrast, saturation, hue)

    def __call__(self, sample: Sample) -> Sample:
        out = dict(sample)
        out["image"] = self.jitter(sample["image"]).clamp(0.0, 1.0)
        return out

    def __repr__(self) -> str:
        return repr(self.jitter)


# FastDepth's NYU pipeline: its frames are 480 high; everything is defined relative to that.
_FASTDEPTH_FIRST = 250.0 / 480.0
_FASTDEPTH_CROP = (228, 304)


def fastdepth_val_transform(output_size: Sequence[int] = (224, 224)) -> Compose:
    """FastDepth validation: resize by 250/480, centre crop 228x304, resize to ``output_size``.

    A 480x640 sample becomes ``(3, 224, 224)``.
    """
    return Compose([Resize(_FASTDEPTH_FIRST), CenterCrop(_FASTDEPTH_CROP), Resize(tuple(output_size))])


def fastdepth_train_transform(output_size: Sequence[int] = (224, 224)) -> Compose:
    """FastDepth training augmentation (order as in dwofk/fast-depth): resize by 250/480, rotate U(-5, 5) deg,
    scale s ~ U(1, 1.5) with depth / s, centre crop 228x304, flip p=0.5, resize to ``output_size``,
    colour jitter 0.4. A 480x640 sample becomes ``(3, 224, 224)``."""
    return Compose([Resize(_FASTDEPTH_FIRST), RandomRotation(5.0), RandomScaleDepth(1.0, 1.5),
                    CenterCrop(_FASTDEPTH_CROP), RandomHorizontalFlip(0.5), Resize(tuple(output_size)),
                    ColorJitter(0.4, 0.4, 0.4)])


def mai2021_transform(size: Sequence[int] = (128, 160)) -> Compose:
    """MAI-2021 (Zhang et al.): 480x640 frames resized to 128x160 for training: ``(3, 128, 160)``."""
    return Compose([Resize(tuple(size))])


def diw_transform(size: Sequence[int] = (224, 448)) -> Compose:
    """DIW protocol of Yucel et al.: images (and their point pairs) resized to 224x448: ``(3, 224, 448)``."""
    return Compose([Resize(tuple(size))])
