"""Masked depth losses, ordinal ranking losses, distillation losses and multi-loss rebalancing.

Every dense loss has the signature ``loss(pred, target, mask=None, **options) -> scalar tensor`` with
``pred, target: (B, 1, H, W)`` and ``mask: bool (B, 1, H, W)``. ``mask=None`` means ``target > 0`` (invalid
ground truth is 0, see CONTRIBUTING.md). Losses average over the valid pixels of the whole batch. A batch
without any valid pixel raises ``ValueError`` rather than returning NaN.

Ordinal losses (:func:`ranking`, :func:`ranking_improved`) take ``(pred, pairs, relation)`` with
``pairs: long (B, K, 4)`` ``[yA, xA, yB, xB]`` and ``relation: long (B, K)``. **Convention** (shared with
:func:`depthlib.metrics.whdr` and :func:`depthlib.metrics.relation_from_depth`): ``relation = +1`` means point
A is **farther** than B (DIW's ``'>'``), ``-1`` closer, ``0`` equal. ``space="depth"`` says ``pred`` grows with
distance; ``space="inverse"`` says it shrinks (disparity, MiDaS output).

Distillation losses take ``(student, teacher, ...)``; the teacher is detached.

:func:`get_loss` builds any of them by name; the callable carries ``.kind`` (``"dense"``, ``"ordinal"`` or
``"distillation"``) so a training loop knows which arguments to pass.
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from typing import Callable, Literal, Mapping, Sequence

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from depthlib.metrics import _check_relation, _gather_pairs, fit_scale_shift, sample_ordinal_pairs, valid_interior

__all__ = [
    "l1",
    "l2",
    "smooth_l1",
    "berhu",
    "sobel_edge",
    "silog",
    "ssi",
    "mannequin_si",
    "ranking",
    "ranking_improved",
    "sample_ordinal_pairs",
    "distill_rmse",
    "distill_pairwise",
    "distill_feature_l2",
    "deep_supervision",
    "MultiLossRebalancer",
    "get_loss",
    "list_losses",
]


# --------------------------------------------------------------------------------------------- helpers
def _dense_inputs(pred: Tensor, target: Tensor, mask: Tensor | None, name: str) -> tuple[Tensor, Tensor, Tensor]:
    """Check shapes, build the default mask and refuse an all-invalid batch."""
    for arg, x in (("pred", pred), ("target", target)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: {arg} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"{name}: {arg} must have shape (B, C, H, W), got {tuple(x.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"{name}: pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if mask is None:
        mask = target > 0
    else:
        if mask.dtype != torch.bool:
            raise TypeError(f"{name}: mask must be a bool tensor, got dtype {mask.dtype}")
        if mask.shape != target.shape:
            raise ValueError(f"{name}: mask {tuple(mask.shape)} must have the shape of target {tuple(target.shape)}")
    # a NaN/inf target pixel must never reach the loss, whatever the caller's mask says
    mask = mask & torch.isfinite(target)
    if not bool(mask.any()):
        raise ValueError(f"{name}: the mask has no valid pixel in this batch of {target.shape[0]} (all targets invalid)")
    return pred, target, mask


# --------------------------------------------------------------------------------------------- pixel-wise
def l1(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error over valid pixels (FastDepth's and yucel2021's NYU training loss).

    Args:
        pred, target: ``(B, 1, H, W)``.
        mask: bool ``(B, 1, H, W)``; ``None`` means ``target > 0``.
    """
    pred, target, mask = _dense_inputs(pred, target, mask, "l1")
    return (pred[mask] - target[mask]).abs().mean()


def l2(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error over valid pixels (no square root). Shapes as :func:`l1`."""
    pred, target, mask = _dense_inputs(pred, target, mask, "l2")
    return (pred[mask] - target[mask]).pow(2).mean()


def smooth_l1(pred: Tensor, target: Tensor, mask: Tensor | None = None, *, beta: float = 1.0) -> Tensor:
    """``torch.nn.functional.smooth_l1_loss`` over valid pixels (sagar2021 cites PyTorch's, beta = 1).

    Per pixel: ``0.5 x^2 / beta`` if ``|x| < beta`` else ``|x| - 0.5 beta``. Shapes as :func:`l1`.
    """
    pred, target, mask = _dense_inputs(pred, target, mask, "smooth_l1")
    return F.smooth_l1_loss(pred[mask], target[mask], beta=beta)


def berhu(pred: Tensor, target: Tensor, mask: Tensor | None = None, *, threshold: float | None = None) -> Tensor:
    """Reverse Huber loss of Laina et al. (3DV 2016) over valid pixels.

    Per pixel ``|x|`` if ``|x| <= c`` else ``(x^2 + c^2) / (2c)``, where ``c = 0.2 * max |x|`` over the
    valid pixels of the batch (Laina's choice). ``c`` is a per-batch constant: it is detached, so no gradient
    flows through the max. Pass ``threshold`` to fix ``c`` instead.

    Args:
        pred, target: ``(B, 1, H, W)``.
        mask: bool ``(B, 1, H, W)``; ``None`` means ``target > 0``.
        threshold: fixed ``c > 0``, or ``None`` for the adaptive ``0.2 * max |x|``.
    """
    pred, target, mask = _dense_inputs(pred, target, mask, "berhu")
    x = pred[mask] - target[mask]
    ax = x.abs()
    if threshold is None:
        c = 0.2 * ax.detach().max()
    else:
        if not threshold > 0:
            raise ValueError(f"berhu: threshold={threshold!r} must be > 0")
        c = torch.as_tensor(threshold, dtype=x.dtype, device=x.device)
    # c == 0 only for a perfect prediction, where every pixel takes the |x| branch; the clamp keeps the
    # unused quadratic branch (and its gradient) finite
    c_safe = c.clamp(min=torch.finfo(x.dtype).tiny)
    return torch.where(ax <= c, ax, (x * x + c_safe * c_safe) / (2 * c_safe)).mean()


def sobel_edge(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    *,
    lambd: float = 12.0,
    beta: float = 1.0,
    mode: Literal["magnitude", "xy"] = "magnitude",
) -> Tensor:
    """SmoothL1 + lambda * SmoothL1 of Sobel gradients: the edge-preserving loss of sagar2021.

    ``L(G, P) = SmoothL1(G, P) + lambda * SmoothL1(Sobel(G), Sobel(P))`` (sagar2021, lines 139-145, lambda = 12
    "determined experimentally based on the magnitudes of the two losses"). The paper takes Sobel from Kornia
    (its ref. [6], lines 137 and 275); ``kornia.filters.sobel`` by default uses *normalised* kernels (divided by
    their L1 norm, 8) and returns the magnitude ``sqrt(gx^2 + gy^2 + 1e-6)``. Lambda = 12 was tuned against
    that scale: raw Sobel kernels (``normalized=False``) give 8x larger gradients, so the edge term would grow
    8x in SmoothL1's linear range and up to 64x in its quadratic range, and lambda would have to shrink. (The
    paper does not state the normalisation; it used Kornia, whose ``sobel`` defaults to ``normalized=True``.)
    The edge term is averaged over the pixels whose whole 3x3 neighbourhood is valid, so holes in the ground
    truth do not create fake edges.

    Args:
        pred, target: ``(B, 1, H, W)``.
        mask: bool ``(B, 1, H, W)``; ``None`` means ``target > 0``.
        lambd: weight of the edge term (12 in sagar2021).
        beta: SmoothL1 beta of both terms (PyTorch default 1).
        mode: ``"magnitude"`` (``kornia.filters.sobel``, the paper's ``Sobel(.)``) or ``"xy"`` (both signed
            components of ``kornia.filters.spatial_gradient``).

    Warns:
        when no pixel has a fully valid neighbourhood; the edge term is then 0.
    """
    pred, target, mask = _dense_inputs(pred, target, mask, "sobel_edge")
    depth_term = F.smooth_l1_loss(pred[mask], target[mask], beta=beta)
    target = torch.where(mask, target, torch.zeros_like(target))  # NaN-free input for the convolution
    if mode == "magnitude":
        gp, gt = kornia.filters.sobel(pred), kornia.filters.sobel(target)
        edge_mask = valid_interior(mask)
    elif mode == "xy":
        gp, gt = kornia.filters.spatial_gradient(pred), kornia.filters.spatial_gradient(target)  # (B, C, 2, H, W)
        edge_mask = valid_interior(mask).unsqueeze(2).expand_as(gp)
    else:
        raise ValueError(f"sobel_edge: mode={mode!r} must be 'magnitude' or 'xy'")
    if not bool(edge_mask.any()):
        warnings.warn("sobel_edge: no pixel has a fully valid 3x3 neighbourhood; the edge term is 0", stacklevel=2)
        return depth_term
    return depth_term + lambd * F.smooth_l1_loss(gp[edge_mask], gt[edge_mask], beta=beta)


def silog(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, *, lambd: float = 0.5, min_depth: float = 1e-3
) -> Tensor:
    """Scale-invariant log loss of Eigen et al. (NIPS 2014), per image, averaged over images.

    ``D = mean(d^2) - lambd * mean(d)^2`` with ``d = ln(pred) - ln(target)`` over an image's valid pixels;
    ``lambd = 0`` is the log-MSE, ``lambd = 1`` fully scale invariant, Eigen trains with 0.5. Images without a
    valid pixel are left out of the mean.

    Args:
        pred, target: positive depths ``(B, 1, H, W)``.
        mask: bool ``(B, 1, H, W)``; ``None`` means ``target > 0``.
        lambd: the scale-invariance weight in [0, 1].
        min_depth: ``pred`` is clamped from below to it before the log (gradient 0 below it).
    """
    pred, target, mask = _dense_inputs(pred, target, mask, "silog")
    if not 0.0 <= lambd <= 1.0:
        raise ValueError(f"silog: lambd={lambd!r} must be in [0, 1]")
    m = mask.to(pred.dtype)
    safe_t = torch.where(mask, target, torch.ones_like(target))
    d = (torch.log(pred.clamp(min=min_depth)) - torch.log(safe_t)) * m
    n = m.sum(dim=(1, 2, 3))
    has = n > 0
    n = n[has]
    s1, s2 = d.sum(dim=(1, 2, 3))[has], (d * d).sum(dim=(1, 2, 3))[has]
    return (s2 / n - lambd * (s1 / n) ** 2).mean()


def ssi(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, *, alpha: float = 0.5, scales: int = 4
) -> Tensor:
    """MiDaS's scale-and-shift-invariant loss with multi-scale gradient matching (Ranftl et al., TPAMI 2020).

    Per image, ``(s, t)`` = least squares of ``s * pred + t ~ target`` on the valid pixels
    (:func:`depthlib.metrics.fit_scale_shift`, differentiable), ``R = s * pred + t - target``, then::

        L = sum_b sum_valid R^2 / (2 sum_b M_b)
            + alpha * sum_{k<scales} sum_b sum_valid (|dx R_k| + |dy R_k|) / sum_b M_{b,k}

    where ``R_k`` is ``R`` subsampled by ``2^k`` and a gradient counts only where both neighbours are valid
    (MiDaS's "batch-based" reduction). MiDaS applies it to disparity: pass ``target`` in the space of ``pred``.

    Args:
        pred, target: ``(B, 1, H, W)``.
        mask: bool ``(B, 1, H, W)``; ``None`` means ``target > 0``.
        alpha: weight of the gradient-matching term (0.5 in MiDaS).
        scales: number of scales of the gradient term (4 in MiDaS).
    """
    pred, target, mask = _dense_inputs(pred, target, mask, "ssi")
    target = torch.where(mask, target, torch.zeros_like(target))
    scale, shift = fit_scale_shift(pred, target, mask)
    m = mask.to(pred.dtype)
    res = (scale.view(-1, 1, 1, 1) * pred + shift.view(-1, 1, 1, 1) - target) * m
    total = (res * res).sum() / (2 * m.sum())
    if alpha > 0:
        for k in range(scales):
            step = 2**k
            r, mk = res[..., ::step, ::step], m[..., ::step, ::step]
            gx = (r[..., :, 1:] - r[..., :, :-1]).abs() * mk[..., :, 1:] * mk[..., :, :-1]
            gy = (r[..., 1:, :] - r[..., :-1, :]).abs() * mk[..., 1:, :] * mk[..., :-1, :]
            count = mk.sum()
            if count > 0:
                total = total + alpha * (gx.sum() + gy.sum()) / count
    return total


def _grad_pairs(x: Tensor, step: int) -> tuple[Tensor, Tensor]:
    """Differences ``x[i + step] - x[i]`` along width and height of ``(B, 1, H, W)``."""
    return x[..., :, step:] - x[..., :, :-step], x[..., step:, :] - x[..., :-step, :]


def mannequin_si(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, image: Tensor | None = None, *,
    w_grad: float = 0.75, w_sm1: float = 0.075, w_sm2: float = 0.1, scales: int = 5, min_depth: float = 1e-3,
) -> Tensor:
    """The Mannequin Challenge loss of Li et al. (CVPR 2019), yucel2021 eq. 1: ``L_si = L_mse + a1 L_grad + a2 L_sm``.

    ``pred`` is **log depth** (Li et al.'s network predicts it; any additive constant is free), ``target`` depth
    up to an unknown scale (MVS). With ``R = pred - ln(target)`` on the valid pixels, as in the authors' released
    ``JointLoss`` (weights and scales are theirs; this is written from their formulas):

    - ``L_mse``: 1.5 x the scale-invariant MSE ``mean(R^2) - mean(R)^2`` per image (their weight without the
      human mask), averaged over the batch;
    - ``L_grad``: ``w_grad`` x, at ``scales`` scales (subsampling by 2), the mean of ``|R(i+2) - R(i)|`` along
      width and height where both pixels are valid;
    - ``L_sm``: edge-aware smoothness of the prediction, ``w_sm1 * sum_s 2^-s mean(|dx pred| e^-|dx I| +
      |dy pred| e^-|dy I|)`` plus ``w_sm2 * sum_s 2^-s mean(e^-|lap I| |lap pred|)`` (needs ``image``; without it
      the smoothness term is left out).

    Args:
        pred: ``(B, 1, H, W)`` log depth.
        target: ``(B, 1, H, W)`` depth up to scale, 0 where invalid.
        mask: bool ``(B, 1, H, W)``; ``None`` means ``target > 0``.
        image: ``(B, 3, H, W)`` in [0, 1] for the smoothness term (``TrainConfig.target_keys =
            ("depth", "mask", "image")``, which this loss's kind ``"dense_image"`` picks by default).
        w_grad, w_sm1, w_sm2, scales: Li et al.'s 0.75, 0.075, 0.1 and 5.
        min_depth: ``target`` is clamped from below to it before the log.
    """
    pred, target, mask = _dense_inputs(pred, target, mask, "mannequin_si")
    if scales < 1:
        raise ValueError(f"mannequin_si: scales={scales!r} must be >= 1")
    m = mask.to(pred.dtype)
    res = (pred - torch.log(torch.where(mask, target, torch.ones_like(target)).clamp(min=min_depth))) * m
    n = m.sum(dim=(1, 2, 3))
    has = n > 0
    s1, s2 = res.sum(dim=(1, 2, 3))[has], (res * res).sum(dim=(1, 2, 3))[has]
    total = 1.5 * (s2 / n[has] - (s1 / n[has]) ** 2).mean()
    lap = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]], dtype=pred.dtype,
                       device=pred.device).view(1, 1, 3, 3)
    r, mk, p, img = res, m, pred, image
    for k in range(scales):
        if k:
            r, mk, p = r[..., ::2, ::2], mk[..., ::2, ::2], p[..., ::2, ::2]
            img = img[..., ::2, ::2] if img is not None else None
        if min(r.shape[-2:]) < 3:
            break
        gx, gy = _grad_pairs(r, 2)
        vx, vy = mk[..., :, 2:] * mk[..., :, :-2], mk[..., 2:, :] * mk[..., :-2, :]
        count = vx.sum() + vy.sum()
        if count > 0:
            total = total + w_grad * ((gx.abs() * vx).sum() + (gy.abs() * vy).sum()) / count
        if img is not None:
            px, py = _grad_pairs(p, 1)
            ix, iy = _grad_pairs(img, 1)
            wx, wy = torch.exp(-ix.abs().mean(1, keepdim=True)), torch.exp(-iy.abs().mean(1, keepdim=True))
            total = total + w_sm1 * 0.5**k * 0.5 * ((px.abs() * wx).mean() + (py.abs() * wy).mean())
            lap_p = F.conv2d(p, lap)
            lap_i = F.conv2d(img.reshape(-1, 1, *img.shape[-2:]), lap).abs().view(img.shape[0], img.shape[1],
                                                                                   *lap_p.shape[-2:]).mean(1, keepdim=True)
            total = total + w_sm2 * 0.5**k * (torch.exp(-lap_i) * lap_p.abs()).mean()
    return total


# --------------------------------------------------------------------------------------------- ordinal
def _pair_losses(pred: Tensor, pairs: Tensor, relation: Tensor, space: str, name: str) -> tuple[Tensor, Tensor]:
    if space not in ("depth", "inverse"):
        raise ValueError(f"{name}: space={space!r} must be 'depth' or 'inverse'")
    za, zb = _gather_pairs(pred, pairs.to(pred.device), name)
    relation = _check_relation(relation, za, name)
    if za.numel() == 0:
        raise ValueError(f"{name}: no ordinal pair in this batch")
    diff = za - zb if space == "depth" else zb - za  # > 0 when the prediction says A is farther
    r = relation.to(diff.dtype)
    # softplus(x) = log(1 + exp(x)) without overflow
    per_pair = torch.where(relation != 0, F.softplus(-r * diff), diff * diff)
    return per_pair, relation


def ranking(
    pred: Tensor, pairs: Tensor, relation: Tensor, *, space: Literal["depth", "inverse"] = "depth"
) -> Tensor:
    """Ranking loss of DIW (Chen et al., NIPS 2016), yucel2021 eq. 2, averaged over all pairs of the batch.

    Per pair: ``log(1 + exp(-r (zA - zB)))`` for ``r = +-1`` and ``(zA - zB)^2`` for ``r = 0``, where ``z`` is
    the prediction in depth space (``space="inverse"`` flips the sign of the difference). With this module's
    convention (``r = +1``: A farther) the loss pushes ``depth_A > depth_B``. yucel2021 encodes *closer* as 1
    and writes ``log(1 + exp(z_j - z_i))`` for it, i.e. its ``z`` grows as points come closer: its eq. 2 is
    ``ranking(pred, pairs, -r_003, space="inverse")``.

    Args:
        pred: ``(B, 1, H, W)``.
        pairs: long ``(B, K, 4)`` ``[yA, xA, yB, xB]`` in pixels of ``pred`` (``(K, 4)`` when B = 1).
        relation: long ``(B, K)`` in {+1, -1, 0} (``(K,)`` when B = 1).
        space: ``"depth"`` (pred grows with distance) or ``"inverse"``.
    """
    per_pair, _ = _pair_losses(pred, pairs, relation, space, "ranking")
    return per_pair.mean()


def ranking_improved(
    pred: Tensor,
    pairs: Tensor,
    relation: Tensor,
    *,
    space: Literal["depth", "inverse"] = "depth",
    ignore_fraction: float = 0.25,
) -> Tensor:
    """ReDWeb's improved ranking loss (Xian et al., CVPR 2018), yucel2021 eq. 3.

    The per-pair function of eq. 3 is the one of :func:`ranking` (``log(1 + exp(-l (zA - zB)))`` for ordinal,
    squared difference for equal pairs); the improvement, which 003 leaves to the original paper (its
    footnote 1), is hard-pair mining: over the batch, the ``ignore_fraction`` (25 %) of ordinal pairs with the
    smallest loss are dropped, equal pairs are all kept, and the sum is divided by the number of *all*
    pairs, as in Xian et al.'s released code. (That code compares with ``>`` against the 25 %-quantile loss,
    which drops one pair more than ``floor(0.25 n)``; here exactly ``floor(ignore_fraction * n)`` are dropped.)
    Pairs come from dense relative depth with :func:`sample_ordinal_pairs` (ReDWeb: 3000 per image,
    ``threshold=0.02``). Arguments as :func:`ranking`.
    """
    if not 0.0 <= ignore_fraction < 1.0:
        raise ValueError(f"ranking_improved: ignore_fraction={ignore_fraction!r} must be in [0, 1)")
    per_pair, relation = _pair_losses(pred, pairs, relation, space, "ranking_improved")
    flat, rel = per_pair.reshape(-1), relation.reshape(-1)
    ordinal = (rel != 0).nonzero().squeeze(1)
    n_drop = int(math.floor(ignore_fraction * ordinal.numel()))
    keep = torch.ones_like(flat, dtype=torch.bool)
    if n_drop > 0:
        easiest = ordinal[torch.argsort(flat.detach()[ordinal])[:n_drop]]
        keep[easiest] = False
    return (flat * keep.to(flat.dtype)).sum() / flat.numel()


# --------------------------------------------------------------------------------------------- distillation
def distill_rmse(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """Pixel-wise RMSE between student and teacher depth (yucel2021's ``L_aux-RMSE``, eq. 5).

    003 replaces Liu et al.'s classification-based pixel loss by "simple RMSE" (lines 124-126):
    ``sqrt(mean over valid pixels of the batch of (student - teacher)^2)``. The teacher is detached.
    Unlike the supervised losses, ``mask=None`` means *every* pixel (a teacher has no holes).

    Args:
        student: ``(B, 1, H, W)``.
        teacher: ``(B, 1, H, W)``, same space as ``student``.
        mask: optional bool ``(B, 1, H, W)``.
    """
    teacher = teacher.detach()
    if mask is None:
        mask = torch.ones_like(teacher, dtype=torch.bool)
    student, teacher, mask = _dense_inputs(student, teacher, mask, "distill_rmse")
    mse = (student[mask] - teacher[mask]).pow(2).mean()
    # sqrt has an infinite slope at 0: a student equal to its teacher gets gradient 0 instead of NaN
    return mse.clamp(min=torch.finfo(mse.dtype).tiny).sqrt()


def _affinity(feat: Tensor) -> Tensor:
    f = F.normalize(feat.flatten(2), p=2, dim=1, eps=1e-8)  # (B, C, N), unit vectors per node
    return f.transpose(1, 2) @ f  # (B, N, N) cosine similarities


def distill_pairwise(student_feat: Tensor, teacher_feat: Tensor, *, scale: float | None = 0.5) -> Tensor:
    """Pair-wise affinity distillation of Liu et al. (structured KD, TPAMI 2020) as used by yucel2021 (``L_pa``).

    Feature maps are max-pooled into nodes (patches of ``int(scale * H) x int(scale * W)`` pixels, Liu et
    al.'s released default ``scale=0.5``; ``scale=None`` makes every pixel a node), the affinity of two nodes is
    the cosine similarity of their feature vectors, and the loss is the mean squared difference between the
    student's and the teacher's ``N x N`` affinity matrices (Liu's ``sum / N^2 / B``). The channel counts may
    differ; the spatial sizes must match. Memory grows as ``B N^2``. The teacher is detached.

    Args:
        student_feat: ``(B, C_s, H, W)``.
        teacher_feat: ``(B, C_t, H, W)``.
        scale: patch size as a fraction of the feature map, or ``None``.
    """
    teacher_feat = teacher_feat.detach()
    if student_feat.dim() != 4 or teacher_feat.dim() != 4:
        raise ValueError(
            f"distill_pairwise: features must be (B, C, H, W), got {tuple(student_feat.shape)} and {tuple(teacher_feat.shape)}"
        )
    if student_feat.shape[0] != teacher_feat.shape[0] or student_feat.shape[2:] != teacher_feat.shape[2:]:
        raise ValueError(
            f"distill_pairwise: student {tuple(student_feat.shape)} and teacher {tuple(teacher_feat.shape)} "
            f"must share batch size and spatial size (channels may differ)"
        )
    if scale is not None:
        if not 0.0 < scale <= 1.0:
            raise ValueError(f"distill_pairwise: scale={scale!r} must be in (0, 1] or None")
        h, w = teacher_feat.shape[2:]
        kernel = (max(1, int(h * scale)), max(1, int(w * scale)))
        student_feat = F.max_pool2d(student_feat, kernel, stride=kernel, ceil_mode=True)
        teacher_feat = F.max_pool2d(teacher_feat, kernel, stride=kernel, ceil_mode=True)
    return (_affinity(student_feat) - _affinity(teacher_feat)).pow(2).mean()


def distill_feature_l2(student_feat: Tensor, teacher_feat: Tensor, *, interpolate: bool = False) -> Tensor:
    """Feature distillation of zhang2021: L2 distance to the teacher's features before the last activation.

    zhang2021 (line 41): "we use the features before the last activation layer for knowledge distillation.
    The L2 distance is used as the distillation loss." Computed as the mean squared difference per element.
    The teacher is detached.

    Args:
        student_feat: ``(B, C, h, w)``.
        teacher_feat: ``(B, C, H, W)``.
        interpolate: bilinearly resize the student features to ``(H, W)`` when sizes differ (else raise).
    """
    teacher_feat = teacher_feat.detach()
    if student_feat.dim() != 4 or teacher_feat.dim() != 4:
        raise ValueError(
            f"distill_feature_l2: features must be (B, C, H, W), got {tuple(student_feat.shape)} and {tuple(teacher_feat.shape)}"
        )
    if interpolate and student_feat.shape[2:] != teacher_feat.shape[2:]:
        student_feat = F.interpolate(student_feat, size=teacher_feat.shape[2:], mode="bilinear", align_corners=False)
    if student_feat.shape != teacher_feat.shape:
        raise ValueError(
            f"distill_feature_l2: student {tuple(student_feat.shape)} and teacher {tuple(teacher_feat.shape)} "
            f"must have the same shape (interpolate=True resizes the spatial size)"
        )
    return F.mse_loss(student_feat, teacher_feat)


# --------------------------------------------------------------------------------------------- combining
def deep_supervision(
    loss_fn: Callable[..., Tensor],
    output: Tensor | Mapping[str, object],
    *args: object,
    weights: Sequence[float] = (0.5, 0.25, 0.25),
    **kwargs: object,
) -> Tensor:
    """Loss over the final and intermediate predictions, yucel2021 eq. 4: ``sum_i lambda_i L_i``.

    Intermediate predictions (``output["aux"]``, see the model contract) are upsampled bilinearly to the
    final prediction's size before the loss, so that sparse targets and ordinal pairs are used at full
    resolution. 003's final model uses weights 0.5, 0.25, 0.25 (final first).

    Args:
        loss_fn: any loss of this module.
        output: a ``(B, 1, H, W)`` tensor or ``{"depth": (B, 1, H, W), "aux": [(B, 1, h_i, w_i), ...]}``.
        *args, **kwargs: the rest of ``loss_fn``'s arguments (target and mask, or pairs and relation).
        weights: one weight per prediction, final first; must match their number.
    """
    if isinstance(output, Tensor):
        preds = [output]
    else:
        preds = [output["depth"], *output.get("aux", [])]  # type: ignore[list-item]
    if len(weights) != len(preds):
        raise ValueError(f"deep_supervision: {len(weights)} weights for {len(preds)} predictions (final + aux)")
    size = preds[0].shape[-2:]
    total = preds[0].new_zeros(())
    for wgt, p in zip(weights, preds):
        if p.shape[-2:] != size:
            p = F.interpolate(p, size=size, mode="bilinear", align_corners=False)
        total = total + wgt * loss_fn(p, *args, **kwargs)
    return total


class MultiLossRebalancer:
    """Lee & Kim's multi-loss rebalancing (ECCV 2020) with yucel2021's modifications.

    Usage: ``total = rb.combine({"rmse": l1, "rank": l2, "pa": l3})`` every step (records the detached
    values and returns ``sum_i w_i L_i``), and ``rb.rebalance(epoch)`` a few times per epoch (003: five).

    Update rule (Lee & Kim's released ``train.py``): with ``L_i`` the mean of loss ``i`` since the last
    rebalance, ``T = sum_i w_i L_i`` and the previous period's ``L_i'`` and ``T'``::

        w_i <- w_i * clip(1 + lam(epoch) * ((T / T') * (L_i' / L_i) - 1), 0.5, 2)

    so a loss that decays faster than the total gains weight when ``lam > 0`` ("easy first") and loses it when
    ``lam < 0`` ("hard first"). ``lam(epoch) = start + slope * epoch``, stopped at ``end``. Lee & Kim: start 3,
    slope -1.5, end -3 (easy then hard) after an initial stage that scales ``w_i = T * init_scale_i / L_i``.
    yucel2021 (lines 142, 256-268): all weights equal and no initial scaling, auxiliary predictions wrapped
    into one term (use :func:`deep_supervision` per term), hard losses first then easy: the defaults here,
    ``start=-3, slope=1.5, end=3``, ``initialize=False``.

    Args:
        names: the loss terms.
        weights: initial weights (default ``1 / len(names)`` each, 003's 0.33).
        lam_start, lam_slope, lam_end: the schedule of ``lam`` per epoch.
        clip: bounds of the per-update factor.
        initialize: run Lee & Kim's initial scaling at the first rebalance.
        init_scale: per-term target shares for that scaling (default equal).
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        weights: Sequence[float] | None = None,
        lam_start: float = -3.0,
        lam_slope: float = 1.5,
        lam_end: float = 3.0,
        clip: tuple[float, float] = (0.5, 2.0),
        initialize: bool = False,
        init_scale: Sequence[float] | None = None,
    ) -> None:
        self.names = list(names)
        if not self.names or len(set(self.names)) != len(self.names):
            raise ValueError(f"MultiLossRebalancer: names={names!r} must be non-empty and unique")
        n = len(self.names)
        w = [1.0 / n] * n if weights is None else [float(v) for v in weights]
        s = [1.0 / n] * n if init_scale is None else [float(v) for v in init_scale]
        if len(w) != n or len(s) != n:
            raise ValueError(f"MultiLossRebalancer: weights/init_scale need {n} values, one per name")
        for label, values in (("weights", w), ("init_scale", s)):
            bad = [(k, v) for k, v in zip(self.names, values) if not (math.isfinite(v) and v >= 0)]
            if bad or sum(values) <= 0:
                raise ValueError(f"MultiLossRebalancer: {label} must be finite, >= 0 and not all 0; got "
                                 + (", ".join(f"{k}={v!r}" for k, v in bad) if bad else f"{values!r}"))
        if not (0 < clip[0] <= 1 <= clip[1]):
            raise ValueError(f"MultiLossRebalancer: clip={clip!r} must satisfy 0 < low <= 1 <= high")
        self.weights: dict[str, float] = dict(zip(self.names, w))
        self.init_scale = dict(zip(self.names, s))
        self.lam_start, self.lam_slope, self.lam_end = float(lam_start), float(lam_slope), float(lam_end)
        self.clip = (float(clip[0]), float(clip[1]))
        self.initialize = bool(initialize)
        self._sums = {k: 0.0 for k in self.names}
        self._count = 0
        self._prev_losses: dict[str, float] | None = None
        self._prev_total: float | None = None
        self._initialized = False
        self.history: list[dict[str, float]] = []

    def lam(self, epoch: float) -> float:
        """The adjustment strength at ``epoch`` (0-based)."""
        v = self.lam_start + self.lam_slope * epoch
        lo, hi = sorted((self.lam_start, self.lam_end))
        return min(max(v, lo), hi)

    def record(self, losses: Mapping[str, Tensor | float]) -> None:
        """Add one step's loss values (detached) to the current period."""
        missing = set(self.names) - set(losses)
        if missing:
            raise KeyError(f"MultiLossRebalancer.record: missing loss terms {sorted(missing)}")
        for k in self.names:
            raw = losses[k]
            v = float(raw.detach()) if isinstance(raw, Tensor) else float(raw)
            if not math.isfinite(v):
                raise ValueError(f"MultiLossRebalancer.record: loss {k!r} is {v}")
            self._sums[k] += v
        self._count += 1

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        """Record the values and return the weighted sum ``sum_i w_i L_i`` (a tensor with gradient)."""
        self.record(losses)
        return sum(self.weights[k] * losses[k] for k in self.names)  # type: ignore[return-value]

    def rebalance(self, epoch: float) -> dict[str, float]:
        """Update the weights from the losses recorded since the last call; returns the new weights."""
        if self._count == 0:
            raise ValueError("MultiLossRebalancer.rebalance: no loss recorded since the last rebalance")
        mean = {k: self._sums[k] / self._count for k in self.names}
        if any(v <= 0 for v in mean.values()):
            raise ValueError(f"MultiLossRebalancer.rebalance: mean losses must be > 0, got {mean}")
        lam = self.lam(epoch)
        total = sum(self.weights[k] * mean[k] for k in self.names)
        if self.initialize and not self._initialized:
            self.weights = {k: total * self.init_scale[k] / mean[k] for k in self.names}
            self._initialized = True
        elif self._prev_total is not None and self._prev_losses is not None:
            lo, hi = self.clip
            ratio_total = total / self._prev_total
            for k in self.names:
                adjust = 1.0 + lam * (ratio_total * self._prev_losses[k] / mean[k] - 1.0)
                self.weights[k] *= min(max(adjust, lo), hi)
        # like the reference code, the next comparison uses the total under the *new* weights
        self._prev_total = sum(self.weights[k] * mean[k] for k in self.names)
        self._prev_losses = mean
        self._sums = {k: 0.0 for k in self.names}
        self._count = 0
        self.history.append({"epoch": float(epoch), "lam": lam, **{f"w_{k}": v for k, v in self.weights.items()},
                             **{f"loss_{k}": v for k, v in mean.items()}})
        return dict(self.weights)

    def state_dict(self) -> dict:
        """Everything needed to resume bit-identically (plain Python values)."""
        return {
            "names": list(self.names), "weights": dict(self.weights), "sums": dict(self._sums), "count": self._count,
            "prev_losses": None if self._prev_losses is None else dict(self._prev_losses),
            "prev_total": self._prev_total, "initialized": self._initialized, "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore :meth:`state_dict` output; the names must match."""
        if list(state["names"]) != self.names:
            raise ValueError(f"MultiLossRebalancer.load_state_dict: names {state['names']} != {self.names}")
        self.weights = dict(state["weights"])
        self._sums = dict(state["sums"])
        self._count = int(state["count"])
        self._prev_losses = None if state["prev_losses"] is None else dict(state["prev_losses"])
        self._prev_total = state["prev_total"]
        self._initialized = bool(state["initialized"])
        self.history = [dict(h) for h in state["history"]]


# --------------------------------------------------------------------------------------------- registry
_LOSSES: dict[str, tuple[Callable[..., Tensor], str]] = {
    "l1": (l1, "dense"),
    "l2": (l2, "dense"),
    "smooth_l1": (smooth_l1, "dense"),
    "berhu": (berhu, "dense"),
    "sobel_edge": (sobel_edge, "dense"),
    "silog": (silog, "dense"),
    "ssi": (ssi, "dense"),
    "mannequin_si": (mannequin_si, "dense_image"),
    "ranking": (ranking, "ordinal"),
    "ranking_improved": (ranking_improved, "ordinal"),
    "distill_rmse": (distill_rmse, "distillation"),
    "distill_pairwise": (distill_pairwise, "distillation"),
    "distill_feature_l2": (distill_feature_l2, "distillation"),
}


def list_losses() -> list[str]:
    """Names accepted by :func:`get_loss`."""
    return sorted(_LOSSES)


def get_loss(name: str, **options: object) -> Callable[..., Tensor]:
    """A loss by name with its keyword options bound, e.g. ``get_loss("sobel_edge", lambd=12)``.

    The callable's arguments depend on its ``.kind``: ``"dense"`` ``(pred, target, mask=None)``,
    ``"dense_image"`` ``(pred, target, mask, image)``, ``"ordinal"`` ``(pred, pairs, relation)``, ``"distillation"`` ``(student, teacher[, mask])``.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or an option the loss does not take.

    Example:
        >>> loss = get_loss("l1")
        >>> float(loss(torch.tensor([[[[1.0, 3.0]]]]), torch.tensor([[[[2.0, 0.0]]]])))  # 0 = invalid pixel
        1.0
        >>> get_loss("sobel_edge", lambd=12.0).kind
        'dense'
    """
    if name not in _LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(list_losses())}")
    fn, kind = _LOSSES[name]
    params = inspect.signature(fn).parameters
    allowed = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise ValueError(f"loss {name!r} takes no option {bad}; its options: {allowed or 'none'}")
    bound = functools.partial(fn, **options)
    functools.update_wrapper(bound, fn)
    bound.kind = kind  # type: ignore[attr-defined]
    bound.loss_name = name  # type: ignore[attr-defined]
    return bound
