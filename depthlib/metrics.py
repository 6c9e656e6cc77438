"""Depth metrics with explicit, documented conventions.

The numbers a paper reports depend on choices that are rarely written next to the table. Each one is an
explicit option here:

- **Reduction** (``reduction=``). ``"per_image"`` computes every metric on each image's valid pixels and
  then averages over images: FastDepth (Wofk et al., ICRA 2019) evaluates with batch size 1 and averages
  the per-image metrics over the 654 NYU Depth v2 test images, which is where its RMSE 0.604 / delta1 0.771
  come from (wofk2019, lines 33 and 45-46), and the MAI 2021 evaluation scores si-RMSE one test image at a
  time, then averages. ``"pixel"`` pools all valid
  pixels of all images before computing each metric, which weights large valid areas more.
- **Crop** (``crop=``). ``"eigen"`` is the NYU Depth v2 evaluation crop of Eigen et al. (2014): rows
  45:471 and columns 41:601 of the 480x640 frame; other sizes with the same 4:3 field of view get the box
  scaled and rounded, any other size raises (a 224x224 centre crop has lost the frame the box refers to).
  ``"garg"`` is the KITTI crop of Garg et al. (2016), defined as fractions of the image size:
  rows 0.40810811 H : 0.99189189 H, columns 0.03594771 W : 0.96405229 W. A tuple
  ``(top, bottom, left, right)`` is a pixel box. Pixels outside the box are excluded from the mask.
- **Depth range** (``min_depth=``, ``max_depth=``). Ground truth counts as valid when
  ``min_depth < target`` (and ``target <= max_depth`` when a cap is given; the usual caps are
  :data:`NYU_MAX_DEPTH` = 10 m and :data:`KITTI_MAX_DEPTH` = 80 m). Predictions are always clamped from
  below at ``min_depth`` (so that the log metrics stay finite) and, when a cap is given, from above at
  ``max_depth``, as the NYU/KITTI evaluation code of BTS/AdaBins/Monodepth does. A *negative* prediction
  is clamped too, but never silently: :meth:`DepthMetrics.compute` then emits a
  :class:`NegativeDepthWarning` with the count and the lowest value. A warning, not an error: the clamp is
  the field's convention and a model early in training (or a validation pass during ``fit``) must still get
  its numbers; but negative metres mean the model does not output metric depth (a relative or inverse-depth
  model needs :func:`align_scale_shift` first, or its head lacks a positive activation), so the numbers
  must not be published without a word.
- **si_rmse** is computed exactly as the MAI 2021 challenge computes it. zhang2021 only names the metric
  (line 76, "invariant standard root mean squared error (si-RMSE)") and refers to the challenge report
  (its reference [12], Ignatov et al., CVPRW 2021); the formula is the one in the challenge's released
  evaluation code: ``d = ln(pred) - ln(target)`` on pixels with ``target > 1 mm``,
  ``si_rmse = sqrt(sum(d^2)/n - (sum d)^2/n^2)``. Predictions below 1 mm are clamped to 1 mm. With the
  default ``min_depth=1e-3`` (metres) the valid set and the clamp are exactly the challenge's.
- **Relative (inverse) depth models** such as MiDaS predict disparity up to an unknown scale and shift; their
  raw output must be aligned to metric ground truth before RMSE/MAE mean anything. haly2021 (section 5.3,
  lines 148-150) reports RMSE/MAE of 11321/10471 because it skipped this step:
  use :func:`align_scale_shift` first.

Metric definitions (over valid pixels, ``p`` prediction, ``t`` target, metres): ``rmse`` sqrt(mean (p-t)^2),
``mae`` mean |p-t|, ``absrel`` mean |p-t|/t, ``sqrel`` mean (p-t)^2/t, ``log10`` mean |log10 p - log10 t|,
``rmse_log`` sqrt(mean (ln p - ln t)^2), ``delta{k}`` fraction with max(p/t, t/p) < 1.25^k, ``si_rmse`` above.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, Sequence, Union

import torch
from torch import Tensor

__all__ = [
    "METRIC_NAMES",
    "NYU_MAX_DEPTH",
    "KITTI_MAX_DEPTH",
    "EIGEN_CROP_NYU",
    "GARG_CROP_KITTI",
    "crop_box",
    "depth_metrics",
    "DepthMetrics",
    "fit_scale_shift",
    "align_scale_shift",
    "align_log_scale",
    "relation_from_depth",
    "whdr",
    "mai2021_score",
    "fit_mai2021_constant",
    "valid_interior",
    "sample_ordinal_pairs",
    "edge_error",
    "NegativeDepthWarning",
]


class NegativeDepthWarning(UserWarning):
    """Predictions below zero were clamped to ``min_depth`` in the metrics (see the module docstring)."""


METRIC_NAMES: tuple[str, ...] = (
    "rmse", "mae", "absrel", "sqrel", "log10", "rmse_log", "delta1", "delta2", "delta3", "si_rmse",
)
NYU_MAX_DEPTH = 10.0
KITTI_MAX_DEPTH = 80.0
#: Eigen et al.'s NYU crop ``(top, bottom, left, right)`` on the 480x640 frame.
EIGEN_CROP_NYU = (45, 471, 41, 601)
#: Garg et al.'s KITTI crop as fractions ``(top, bottom, left, right)`` of (H, H, W, W).
GARG_CROP_KITTI = (0.40810811, 0.99189189, 0.03594771, 0.96405229)

CropSpec = Union[None, str, Sequence[int]]

# Per-image sufficient statistics; every metric of an image, and of any set of pooled images, is a
# function of these sums, which is what lets DepthMetrics reproduce one-call numbers exactly.
_SUMS = ("n", "sq", "abs", "absrel", "sqrel", "log10", "d", "d2", "c1", "c2", "c3")


def crop_box(crop: CropSpec, height: int, width: int) -> tuple[int, int, int, int] | None:
    """Return the evaluation box ``(top, bottom, left, right)`` (half-open) for an image size.

    Args:
        crop: ``None``, ``"eigen"`` (NYU), ``"garg"`` (KITTI) or a pixel box ``(top, bottom, left, right)``.
        height: image height H.
        width: image width W.

    Raises:
        ValueError: unknown crop name, a box outside the image, or ``"eigen"`` on a size whose field of view
            is not 4:3 (the box is defined on the full 480x640 NYU frame).
    """
    if crop is None:
        return None
    if isinstance(crop, str):
        if crop == "eigen":
            if height * 640 != width * 480:
                raise ValueError(
                    f"crop='eigen' is defined on the full 480x640 NYU frame (rows 45:471, cols 41:601); "
                    f"got an image of {height}x{width}, which is not a rescaled full frame: pass an explicit "
                    f"(top, bottom, left, right) box or crop=None"
                )
            s = height / 480.0
            top, bottom, left, right = (int(round(v * s)) for v in EIGEN_CROP_NYU)
        elif crop == "garg":
            ft, fb, fl, fr = GARG_CROP_KITTI
            # int() truncation as in Monodepth's/BTS's evaluation code (np.int32 of the products)
            top, bottom, left, right = int(ft * height), int(fb * height), int(fl * width), int(fr * width)
        else:
            raise ValueError(f"crop={crop!r} is not a known crop; use None, 'eigen', 'garg' or (top, bottom, left, right)")
    else:
        try:
            top, bottom, left, right = (int(v) for v in crop)
        except (TypeError, ValueError):
            raise ValueError(f"crop={crop!r} must be None, 'eigen', 'garg' or a (top, bottom, left, right) tuple") from None
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise ValueError(f"crop box (top={top}, bottom={bottom}, left={left}, right={right}) does not fit an image of {height}x{width}")
    return top, bottom, left, right


def _as_batch(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 2:
        return x[None, None]
    if x.dim() == 4 and x.shape[1] == 1:
        return x
    raise ValueError(f"{name} must have shape (B, 1, H, W) or (H, W), got {tuple(x.shape)}")


def _check_inputs(pred: Tensor, target: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    pred = _as_batch(pred, "pred")
    target = _as_batch(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if mask is None:
        mask = target > 0
    else:
        mask = _as_batch(mask, "mask")
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor, got dtype {mask.dtype}")
        if mask.shape != target.shape:
            raise ValueError(f"mask {tuple(mask.shape)} must have the shape of target {tuple(target.shape)}")
    return pred, target, mask


def _valid_mask(target: Tensor, mask: Tensor, crop: CropSpec, min_depth: float, max_depth: float | None) -> Tensor:
    valid = mask & torch.isfinite(target) & (target > min_depth)
    if max_depth is not None:
        valid = valid & (target <= max_depth)
    box = crop_box(crop, target.shape[-2], target.shape[-1])
    if box is not None:
        top, bottom, left, right = box
        inside = torch.zeros_like(valid)
        inside[..., top:bottom, left:right] = True
        valid = valid & inside
    return valid


def _image_sums(pred: Tensor, target: Tensor, valid: Tensor, min_depth: float, max_depth: float | None) -> Tensor:
    """Per-image sufficient statistics, float64 ``(B, len(_SUMS))``."""
    p = pred.detach().to(torch.float64)
    t = target.detach().to(torch.float64)
    p = p.clamp(min=min_depth, max=max_depth) if max_depth is not None else p.clamp(min=min_depth)
    v = valid.to(torch.float64)
    # invalid pixels get t = 1, p = 1 so that no inf/NaN is formed; the mask zeroes their contribution
    t = torch.where(valid, t, torch.ones_like(t))
    p = torch.where(valid, p, torch.ones_like(p))
    err = p - t
    d = torch.log(p) - torch.log(t)
    ratio = torch.maximum(p / t, t / p)
    terms = [
        v,
        err * err,
        err.abs(),
        err.abs() / t,
        err * err / t,
        (torch.log10(p) - torch.log10(t)).abs(),
        d,
        d * d,
        (ratio < 1.25).to(torch.float64),
        (ratio < 1.25**2).to(torch.float64),
        (ratio < 1.25**3).to(torch.float64),
    ]
    return torch.stack([(x * v).sum(dim=(1, 2, 3)) for x in terms], dim=1)


def _metrics_from_sums(s: Tensor) -> Tensor:
    """Metrics (..., 10) in METRIC_NAMES order from sums (..., 11); rows must have n > 0."""
    n = s[..., 0]
    mean = lambda i: s[..., i] / n  # noqa: E731
    d_mean = mean(6)
    # the variance form can go a few ulps below zero for a perfect prediction
    si = (mean(7) - d_mean * d_mean).clamp(min=0).sqrt()
    return torch.stack(
        [mean(1).sqrt(), mean(2), mean(3), mean(4), mean(5), mean(7).sqrt(), mean(8), mean(9), mean(10), si], dim=-1
    )


class DepthMetrics:
    """Streaming depth metrics: ``update`` per batch, ``compute`` once.

    Stores the per-image sufficient statistics (11 float64 numbers per image), so that over any split of a
    dataset into batches ``compute()`` returns exactly (bit for bit) the numbers of :func:`depth_metrics` on the
    concatenated batch, for either reduction. See the module docstring for the conventions.

    Args:
        reduction: ``"per_image"`` (mean over images of per-image metrics; FastDepth, MAI 2021) or ``"pixel"``
            (all valid pixels pooled).
        crop: ``None``, ``"eigen"``, ``"garg"`` or ``(top, bottom, left, right)``; see :func:`crop_box`.
        max_depth: depth cap in metres (NYU 10, KITTI 80) or ``None``.
        min_depth: lower bound in metres for valid targets and for the prediction clamp (default 1 mm).

    Example:
        >>> m = DepthMetrics(reduction="per_image", crop=None, max_depth=10.0)
        >>> _ = m.update(torch.full((2, 1, 4, 4), 2.0), torch.full((2, 1, 4, 4), 2.5))
        >>> round(m.compute()["rmse"], 3)
        0.5
    """

    def __init__(
        self,
        reduction: Literal["per_image", "pixel"] = "per_image",
        crop: CropSpec = None,
        max_depth: float | None = None,
        min_depth: float = 1e-3,
    ) -> None:
        if reduction not in ("per_image", "pixel"):
            raise ValueError(f"reduction={reduction!r} must be 'per_image' or 'pixel'")
        if not (min_depth > 0 and math.isfinite(min_depth)):
            # the log metrics need a strictly positive floor for the prediction clamp
            raise ValueError(f"min_depth={min_depth!r} must be a finite number > 0")
        if max_depth is not None and not (max_depth > min_depth):
            raise ValueError(f"max_depth={max_depth!r} must be larger than min_depth={min_depth!r}")
        if isinstance(crop, str) or crop is None:
            crop_box(crop, 480, 640)  # validates the name early
        self.reduction = reduction
        self.crop = crop
        self.max_depth = max_depth
        self.min_depth = min_depth
        self.reset()

    def reset(self) -> None:
        """Forget all images seen so far."""
        self._rows: list[Tensor] = []
        self._negative = 0
        self._lowest = 0.0

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> "DepthMetrics":
        """Add a batch.

        Args:
            pred: predicted depth in metres, ``(B, 1, H, W)`` or ``(H, W)``.
            target: ground-truth depth in metres, same shape; 0 marks invalid pixels.
            mask: bool, same shape; ``None`` means ``target > 0``.

        Returns:
            self, so that ``DepthMetrics().update(p, t).compute()`` chains.
        """
        pred, target, mask = _check_inputs(pred, target, mask)
        valid = _valid_mask(target, mask, self.crop, self.min_depth, self.max_depth)
        if not bool(torch.isfinite(pred[valid]).all()):
            raise ValueError("DepthMetrics.update: pred has NaN or inf values at valid pixels")
        negative = pred[valid & (pred < 0)]
        if negative.numel():
            self._negative += int(negative.numel())
            self._lowest = min(self._lowest, float(negative.min()))
        self._rows.append(_image_sums(pred, target, valid, self.min_depth, self.max_depth).cpu())
        return self

    @property
    def num_images(self) -> int:
        """Images seen so far (including images without valid pixels)."""
        return sum(int(r.shape[0]) for r in self._rows)

    def _sums(self) -> Tensor:
        if not self._rows:
            raise ValueError("DepthMetrics.compute() called before any update()")
        return torch.cat(self._rows, dim=0)

    def per_image(self) -> dict[str, Tensor]:
        """Per-image metrics, a dict of float64 ``(N,)`` tensors (NaN for images without valid pixels)."""
        sums = self._sums()
        out = torch.full((sums.shape[0], len(METRIC_NAMES)), float("nan"), dtype=torch.float64)
        has = sums[:, 0] > 0
        out[has] = _metrics_from_sums(sums[has])
        return {k: out[:, i] for i, k in enumerate(METRIC_NAMES)}

    def compute(self, reduction: Literal["per_image", "pixel"] | None = None) -> dict[str, float]:
        """Return ``{metric: value}`` for ``METRIC_NAMES``.

        Args:
            reduction: override the reduction given at construction.

        Raises:
            ValueError: no image had a valid pixel.
        """
        reduction = reduction or self.reduction
        if reduction not in ("per_image", "pixel"):
            raise ValueError(f"reduction={reduction!r} must be 'per_image' or 'pixel'")
        sums = self._sums()
        has = sums[:, 0] > 0
        if not bool(has.any()):
            raise ValueError(
                f"no valid pixel in {sums.shape[0]} image(s) after mask, crop={self.crop!r}, "
                f"min_depth={self.min_depth}, max_depth={self.max_depth}"
            )
        if self._negative:
            warnings.warn(
                f"{self._negative} of {int(sums[:, 0].sum())} valid pixels have a negative predicted depth (lowest "
                f"{self._lowest:.4g} m); they were clamped to min_depth={self.min_depth} m, the evaluation convention, "
                "and count as that depth in every metric. Negative metres mean the model does not predict metric "
                "depth: align a relative/inverse-depth prediction first (align_scale_shift)",
                NegativeDepthWarning, stacklevel=2)
        if reduction == "per_image":
            if not bool(has.all()):
                warnings.warn(
                    f"{int((~has).sum())} of {sums.shape[0]} images have no valid pixel and are left out of the per-image mean",
                    stacklevel=2,
                )
            values = _metrics_from_sums(sums[has]).mean(dim=0)
        else:
            values = _metrics_from_sums(sums.sum(dim=0))
        return {k: float(values[i]) for i, k in enumerate(METRIC_NAMES)}


def depth_metrics(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    *,
    reduction: Literal["per_image", "pixel"] = "per_image",
    crop: CropSpec = None,
    max_depth: float | None = None,
    min_depth: float = 1e-3,
) -> dict[str, float]:
    """Standard depth metrics of a batch; conventions in the module docstring.

    Args:
        pred: predicted depth in metres, ``(B, 1, H, W)`` or ``(H, W)``.
        target: ground-truth depth in metres, same shape; 0 marks invalid pixels.
        mask: bool ``(B, 1, H, W)``; ``None`` means ``target > 0``.
        reduction: ``"per_image"`` or ``"pixel"``.
        crop: ``None``, ``"eigen"`` (NYU), ``"garg"`` (KITTI) or ``(top, bottom, left, right)``.
        max_depth: cap in metres (valid targets ``<= max_depth``, predictions clamped to it) or ``None``.
        min_depth: valid targets ``> min_depth``; predictions clamped from below to it.

    Returns:
        dict with float values for ``rmse mae absrel sqrel log10 rmse_log delta1 delta2 delta3 si_rmse``.

    Example:
        >>> t = torch.tensor([[1.0, 2.0], [4.0, 0.0]])  # 0 = invalid
        >>> p = torch.tensor([[1.0, 2.5], [4.0, 9.0]])
        >>> round(depth_metrics(p, t)["mae"], 4)
        0.1667
    """
    return DepthMetrics(reduction, crop, max_depth, min_depth).update(pred, target, mask).compute()


def fit_scale_shift(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image least-squares ``scale, shift = argmin sum_mask (scale * pred + shift - target)^2``.

    The closed form of the 2x2 normal equations, as in MiDaS (Ranftl et al., TPAMI 2020,
    ``compute_scale_and_shift``). Differentiable. An image whose masked ``pred`` is constant (or has fewer
    than two valid pixels) has a singular system: its scale and shift are 0, as in MiDaS.

    Args:
        pred: ``(B, 1, H, W)``.
        target: ``(B, 1, H, W)``, in the space the fit is wanted (MiDaS: disparity).
        mask: bool ``(B, 1, H, W)``.

    Returns:
        ``(scale, shift)``, each ``(B,)``.
    """
    m = mask.to(pred.dtype)
    target = torch.where(mask, target, torch.zeros_like(target))  # keep inf/NaN of invalid pixels out
    dims = (1, 2, 3)
    a00 = (m * pred * pred).sum(dims)
    a01 = (m * pred).sum(dims)
    a11 = m.sum(dims)
    b0 = (m * pred * target).sum(dims)
    b1 = (m * target).sum(dims)
    det = a00 * a11 - a01 * a01
    ok = det.abs() > torch.finfo(pred.dtype).eps * (a00 * a11).abs().clamp(min=torch.finfo(pred.dtype).tiny)
    safe = torch.where(ok, det, torch.ones_like(det))
    scale = torch.where(ok, (a11 * b0 - a01 * b1) / safe, torch.zeros_like(det))
    shift = torch.where(ok, (-a01 * b0 + a00 * b1) / safe, torch.zeros_like(det))
    return scale, shift


def align_log_scale(pred: Tensor, target: Tensor, mask: Tensor | None = None, *, min_depth: float = 1e-3) -> Tensor:
    """``pred`` times the per-image scale that :func:`depth_metrics`'s ``si_rmse`` ignores.

    The scale is ``exp(mean(ln target - ln pred))`` over an image's valid pixels: the factor that makes the
    mean log error zero, so the aligned prediction's errors are the ones si-RMSE measures (zhang2021's metric).
    For figures of networks trained with a scale-invariant loss, whose absolute scale is not learned.

    Args:
        pred: ``(B, 1, H, W)`` positive depths (clamped from below to ``min_depth`` before the log).
        target: ``(B, 1, H, W)``.
        mask: bool ``(B, 1, H, W)``; ``None`` means ``target > 0``. An image without a valid pixel keeps scale 1.

    Returns:
        ``(B, 1, H, W)``, the aligned prediction.
    """
    pred, target, mask = _check_inputs(pred, target, mask)
    mask = mask & (target > 0) & torch.isfinite(target)
    m = mask.to(pred.dtype)
    d = (torch.log(torch.where(mask, target, torch.ones_like(target))) - torch.log(pred.clamp(min=min_depth))) * m
    n = m.sum(dim=(1, 2, 3))
    log_scale = torch.where(n > 0, d.sum(dim=(1, 2, 3)) / n.clamp(min=1), torch.zeros_like(n))
    return pred * torch.exp(log_scale).view(-1, 1, 1, 1)


def align_scale_shift(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    space: Literal["inverse", "depth"] = "inverse",
    max_depth: float | None = None,
) -> Tensor:
    """Align a relative prediction to metric depth with a per-image least-squares scale and shift.

    With ``space="inverse"`` (MiDaS's protocol, for ``model.output_kind == "inverse_relative"``), ``pred`` is
    a relative inverse depth and the fit is ``scale * pred + shift ~ 1 / target`` on the valid pixels; the
    aligned disparity is clamped from below at ``1 / max_depth`` (``max_depth=None``: each image's largest
    valid target depth) before inverting, because a shift can make far pixels' disparity zero or negative.
    With ``space="depth"``, ``pred`` is a relative depth and the fit is ``scale * pred + shift ~ target``,
    clamped at ``max_depth`` when given.

    Args:
        pred: relative prediction ``(B, 1, H, W)`` or ``(H, W)``.
        target: metric depth ``(B, 1, H, W)`` or ``(H, W)`` in metres, 0 = invalid.
        mask: bool, same shape; ``None`` means ``target > 0``.
        space: ``"inverse"`` or ``"depth"``.
        max_depth: depth cap in metres, see above.

    Returns:
        aligned metric depth, same shape and dtype as ``pred``.
    """
    if space not in ("inverse", "depth"):
        raise ValueError(f"space={space!r} must be 'inverse' or 'depth'")
    shape = pred.shape
    p, t, m = _check_inputs(pred, target, mask)
    m = m & torch.isfinite(t) & (t > 0)
    if not bool(m.flatten(1).any(1).all()):
        raise ValueError("align_scale_shift: an image has no valid target pixel to fit scale and shift on")
    p64, t64 = p.detach().to(torch.float64), t.detach().to(torch.float64)
    if space == "inverse":
        goal = torch.where(m, 1.0 / torch.where(m, t64, torch.ones_like(t64)), torch.zeros_like(t64))
    else:
        goal = t64
    scale, shift = fit_scale_shift(p64, goal, m)
    if bool(((scale == 0) & (shift == 0)).any()):
        warnings.warn("align_scale_shift: a singular fit (constant prediction?) gave scale = shift = 0", stacklevel=2)
    aligned = scale.view(-1, 1, 1, 1) * p64 + shift.view(-1, 1, 1, 1)
    if space == "inverse":
        if max_depth is not None:
            cap = torch.full_like(scale, float(max_depth))
        else:
            cap = torch.where(m, t64, torch.zeros_like(t64)).amax(dim=(1, 2, 3))
        aligned = 1.0 / torch.maximum(aligned, 1.0 / cap.view(-1, 1, 1, 1))
    elif max_depth is not None:
        aligned = aligned.clamp(max=max_depth)
    return aligned.to(pred.dtype).reshape(shape)


def relation_from_depth(
    za: Tensor, zb: Tensor, threshold: float = 0.0, space: Literal["depth", "inverse"] = "depth"
) -> Tensor:
    """Ordinal relation of point A to point B, the convention of every ordinal function in depthlib.

    ``+1``: A is **farther** than B (``depth_A > depth_B * (1 + threshold)``), ``-1``: A is closer
    (``depth_A * (1 + threshold) < depth_B``), ``0``: equal within the threshold. DIW's annotation
    ``'>'`` (A deeper) is ``+1`` and ``'<'`` is ``-1``; yucel2021 encodes *closer* as 1, i.e. ``r_003 = -relation``.

    Args:
        za, zb: values at A and B, any equal shapes; positive depths (``space="depth"``) or positive
            inverse depths (``space="inverse"``, larger = closer). ``threshold=0`` compares signs of the
            difference, so non-positive values are fine there.
        threshold: relative tolerance for "equal" (ReDWeb uses 0.02).
        space: ``"depth"`` or ``"inverse"``.

    Returns:
        long tensor of the broadcast shape with values in {-1, 0, +1}.
    """
    if space not in ("depth", "inverse"):
        raise ValueError(f"space={space!r} must be 'depth' or 'inverse'")
    if threshold < 0:
        raise ValueError(f"threshold={threshold!r} must be >= 0")
    if space == "inverse":
        za, zb = zb, za  # A farther in depth <=> A smaller in inverse depth
    if threshold == 0:
        return torch.sign(za - zb).long()
    k = 1.0 + threshold
    return (za > zb * k).long() - (za * k < zb).long()


def _gather_pairs(pred: Tensor, pairs: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """Values of ``pred (B,1,H,W)`` at ``pairs (B,K,4)`` ``[yA, xA, yB, xB]``: two ``(B, K)`` tensors."""
    if pred.dim() != 4 or pred.shape[1] != 1:
        raise ValueError(f"{name}: pred must have shape (B, 1, H, W), got {tuple(pred.shape)}")
    if pairs.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"{name}: pairs must be an integer tensor [yA, xA, yB, xB], got dtype {pairs.dtype}")
    if pairs.dim() == 2:
        pairs = pairs.unsqueeze(0)
    if pairs.dim() != 3 or pairs.shape[-1] != 4 or pairs.shape[0] != pred.shape[0]:
        raise ValueError(f"{name}: pairs must have shape (B, K, 4) with B={pred.shape[0]} (or (K, 4) when B=1), got {tuple(pairs.shape)}")
    b, _, h, w = pred.shape
    pairs = pairs.long()
    ys, xs = pairs[..., 0::2], pairs[..., 1::2]
    outside = ((ys < 0) | (ys >= h) | (xs < 0) | (xs >= w)).any(dim=-1)
    if bool(outside.any()):
        i, k = (int(v) for v in outside.nonzero()[0])
        raise ValueError(f"{name}: a pair lies outside the {h}x{w} prediction: pairs[{i}, {k}] = "
                         f"{pairs[i, k].tolist()} ({int(outside.sum())} in all; pairs are [yA, xA, yB, xB] in pixels of pred)")
    flat = pred.reshape(b, h * w)
    za = flat.gather(1, pairs[..., 0] * w + pairs[..., 1])
    zb = flat.gather(1, pairs[..., 2] * w + pairs[..., 3])
    return za, zb


def _check_relation(relation: Tensor, za: Tensor, name: str) -> Tensor:
    if relation.dim() == 1:
        relation = relation.unsqueeze(0)
    if relation.shape != za.shape:
        raise ValueError(f"{name}: relation must have shape (B, K) = {tuple(za.shape)} (or (K,) when B=1), got {tuple(relation.shape)}")
    bad = (relation != 1) & (relation != 0) & (relation != -1)
    if bool(bad.any()):
        i, k = (int(v) for v in bad.nonzero()[0])
        raise ValueError(f"{name}: relation values must be +1 (A farther), -1 (A closer) or 0 (equal); "
                         f"relation[{i}, {k}] = {relation[i, k].item()!r} ({int(bad.sum())} in all)")
    return relation.to(za.device).long()


def whdr(
    pred: Tensor,
    pairs: Tensor,
    relation: Tensor,
    threshold: float = 0.0,
    *,
    space: Literal["depth", "inverse"] = "depth",
    weights: Tensor | None = None,
    reduction: Literal["mean", "sum", "none"] = "mean",
) -> float | Tensor:
    """Weighted Human Disagreement Rate of a prediction on ordinal pairs (DIW's metric, Chen et al. 2016).

    The predicted relation of each pair is :func:`relation_from_depth` of the predicted values (relative
    ``threshold``; DIW uses 0 since its pairs are never "equal"), and WHDR is the weighted fraction of pairs
    where it differs from ``relation``. Convention: ``relation = +1`` means A is **farther** than B.

    Args:
        pred: ``(B, 1, H, W)`` depth (``space="depth"``) or inverse depth (``space="inverse"``).
        pairs: long ``(B, K, 4)`` ``[yA, xA, yB, xB]`` in pixels of ``pred``, or ``(K, 4)`` when B = 1.
        relation: long ``(B, K)`` (or ``(K,)``) in {+1, -1, 0}.
        threshold: relative tolerance for a predicted "equal".
        space: what ``pred`` holds.
        weights: optional float ``(B, K)`` pair weights (1 each by default).
        reduction: ``"mean"`` (float), ``"sum"`` (float: weighted count of disagreements, for accumulating
            over a loader together with the sum of weights) or ``"none"`` (``(B, K)`` 0/1 tensor).
    """
    za, zb = _gather_pairs(pred.detach(), pairs.to(pred.device), "whdr")
    relation = _check_relation(relation, za, "whdr")
    wrong = (relation_from_depth(za, zb, threshold, space) != relation).to(torch.float64)
    if reduction == "none":
        return wrong
    w = torch.ones_like(wrong) if weights is None else weights.to(wrong).reshape(wrong.shape)
    if reduction == "sum":
        return float((w * wrong).sum())
    if reduction != "mean":
        raise ValueError(f"reduction={reduction!r} must be 'mean', 'sum' or 'none'")
    if float(w.sum()) <= 0:
        raise ValueError("whdr: no pair (or all weights zero)")
    return float((w * wrong).sum() / w.sum())


# ------------------------------------------------------------------------------- the MAI 2021 challenge score
def mai2021_score(si_rmse, runtime_ms, c: float):
    """The MAI 2021 depth challenge's score: ``2 ** (-20 * si_rmse) / (c * runtime_ms)``.

    Zhang et al. (paper 002, section 4.1) give the formula and not the constant ``c``; recover it from a
    table of published rows with :func:`fit_mai2021_constant`.

    Args:
        si_rmse: scale-invariant RMSE (as :func:`depth_metrics` computes it), a float or an array.
        runtime_ms: the runtime of one 480x640 image in milliseconds (the challenge's Raspberry Pi 4 with
            TFLite; any runtime in the same unit gives a score on the same scale).
        c: the normalising constant, ``> 0``.

    Returns:
        The score, a float for float inputs, else a NumPy array.

    Raises:
        ValueError: a non-positive runtime or ``c``.
    """
    import numpy as np

    si = np.asarray(si_rmse, dtype=np.float64)
    rt = np.asarray(runtime_ms, dtype=np.float64)
    if not c > 0:
        raise ValueError(f"mai2021_score: c must be > 0, got {c!r}")
    if np.any(~(rt > 0)):
        raise ValueError(f"mai2021_score: runtime_ms must be > 0, got {runtime_ms!r}")
    score = np.power(2.0, -20.0 * si) / (c * rt)
    return float(score) if score.ndim == 0 else score


def fit_mai2021_constant(si_rmse, runtime_ms, score) -> tuple[float, "object"]:
    """The constant ``c`` of :func:`mai2021_score` that a table of published rows implies.

    Each row implies ``c_i = 2 ** (-20 si_rmse_i) / (runtime_i * score_i)``; the fit is their median (a
    single misprinted row, which Table 2 of paper 002 has, would pull a mean). The spread of the ``c_i``
    says whether one constant explains the table: rounding of the printed values moves a row by a few
    tenths of a percent, a typo by far more.

    Args:
        si_rmse, runtime_ms, score: equal-length sequences of a table's rows (runtime in milliseconds).

    Returns:
        ``(c, per_row)``: the fitted constant and the NumPy array of the constants each row implies.

    Raises:
        ValueError: sequences of different lengths, an empty table, or a non-positive runtime or score.
    """
    import numpy as np

    si = np.asarray(si_rmse, dtype=np.float64).ravel()
    rt = np.asarray(runtime_ms, dtype=np.float64).ravel()
    sc = np.asarray(score, dtype=np.float64).ravel()
    if not (len(si) == len(rt) == len(sc)) or len(si) == 0:
        raise ValueError(f"fit_mai2021_constant: need equal, non-empty sequences, got lengths "
                         f"{len(si)}, {len(rt)}, {len(sc)}")
    if np.any(~(rt > 0)) or np.any(~(sc > 0)):
        raise ValueError("fit_mai2021_constant: runtimes and scores must be > 0")
    per_row = np.power(2.0, -20.0 * si) / (rt * sc)
    return float(np.median(per_row)), per_row
def valid_interior(mask: Tensor) -> Tensor:
    """Pixels whose whole 3x3 neighbourhood is valid: the only places a Sobel response of the target is real.

    Outside the image counts as valid because kornia's filters replicate the border. Used by the Sobel edge
    loss (:func:`depthlib.losses.sobel_edge`) and :func:`edge_error` alike.

    Args:
        mask: ``(B, 1, H, W)`` bool.

    Returns:
        ``(B, 1, H, W)`` bool.
    """
    invalid = (~mask.bool()).to(torch.float32)
    return torch.nn.functional.max_pool2d(invalid, kernel_size=3, stride=1, padding=1) == 0


def edge_error(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-image mean absolute difference of Sobel gradient magnitudes: how well depth edges are placed.

    sagar2021 adds a Sobel term to the loss to sharpen edges (its Fig. 7) but reports no number for it, since
    losses of different scales cannot be compared. This metric compares the gradients themselves, with
    kornia's normalised Sobel kernels (the ones the loss uses), over :func:`valid_interior` pixels (a gradient
    across an invalid pixel would measure the hole, not the scene).

    Args:
        pred: ``(B, 1, H, W)`` metres.
        target: ``(B, 1, H, W)`` metres, 0 = invalid.
        mask: ``(B, 1, H, W)`` bool; default ``target > 0``.

    Returns:
        ``(B,)`` metres per pixel (NaN for an image without a valid interior pixel).
    """
    import kornia

    if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 1:
        raise ValueError(f"edge_error: pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be "
                         "(B, 1, H, W)")
    mask = (target > 0) if mask is None else mask.bool()
    interior = valid_interior(mask)
    target = torch.where(mask, target.float(), torch.zeros_like(target, dtype=torch.float32))
    diff = (kornia.filters.sobel(pred.float()) - kornia.filters.sobel(target)).abs()
    total = (diff * interior).flatten(1).sum(1)
    count = interior.flatten(1).sum(1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, math.nan))


def sample_ordinal_pairs(
    target: Tensor,
    mask: Tensor | None = None,
    *,
    n_pairs: int = 3000,
    threshold: float = 0.02,
    space: Literal["depth", "inverse"] = "depth",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample point pairs and their ordinal relation from dense (relative) ground truth, as ReDWeb does.

    A and B are drawn uniformly (with replacement) among each image's valid pixels; the relation follows
    :func:`relation_from_depth` (``+1``: A farther). The procedural scenes' DIW-style pairs
    (``open_dataset("synth", pairs=K)``) and the ReDWeb ranking loss both sample with this function.

    Relative ``threshold``: ReDWeb's 0.02.

    Args:
        target: ``(B, 1, H, W)`` depth (``space="depth"``) or inverse depth (``space="inverse"``; ReDWeb's maps).
        mask: bool ``(B, 1, H, W)``; ``None`` means ``target > 0``.
        n_pairs: pairs per image.
        threshold: relative tolerance of the "equal" relation.
        space: what ``target`` holds.
        generator: a ``torch.Generator`` for reproducible sampling.

    Returns:
        ``pairs`` long ``(B, n_pairs, 4)`` ``[yA, xA, yB, xB]`` and ``relation`` long ``(B, n_pairs)``.
    """
    if target.dim() != 4 or target.shape[1] != 1:
        raise ValueError(f"sample_ordinal_pairs: target must be (B, 1, H, W), got {tuple(target.shape)}")
    mask = (target > 0) if mask is None else mask.bool()
    if mask.shape != target.shape:
        raise ValueError(f"sample_ordinal_pairs: mask {tuple(mask.shape)} and target {tuple(target.shape)} differ")
    b, _, h, w = target.shape
    weights = mask.reshape(b, h * w).to(torch.float32)
    if bool((weights.sum(1) == 0).any()):
        raise ValueError("sample_ordinal_pairs: an image has no valid pixel to sample pairs from")
    idx = torch.multinomial(weights.cpu(), 2 * n_pairs, replacement=True, generator=generator).to(target.device)
    ia, ib = idx[:, :n_pairs], idx[:, n_pairs:]
    pairs = torch.stack([ia // w, ia % w, ib // w, ib % w], dim=-1)
    flat = target.reshape(b, h * w)
    relation = relation_from_depth(flat.gather(1, ia), flat.gather(1, ib), threshold, space)
    return pairs, relation
