"""Is the exported model still the same model? Outputs and depth metrics of a form against eager fp32.

A fast wrong model is not a result: before a form is timed, its predictions on real images are compared with
the eager fp32 predictions of the same weights, and both are scored against the ground truth with
:func:`depthlib.metrics.depth_metrics`, so the change a form makes is stated in the metrics the papers use.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from depthlib.metrics import align_scale_shift, depth_metrics

__all__ = ["predict", "accuracy_change", "stack_samples"]


def predict(run: Callable, images: torch.Tensor, batch_size: int = 1) -> torch.Tensor:
    """Run ``run`` (a runner: ``(B, 3, H, W)`` -> ``(B, 1, H, W)``) over ``images`` ``(N, 3, H, W)``.

    Returns:
        predictions ``(N, 1, H, W)`` float32.
    """
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, 3, H, W) tensor, got shape {tuple(images.shape)}")
    outs = [torch.as_tensor(np.asarray(run(images[i:i + batch_size]))) for i in range(0, len(images), batch_size)]
    return torch.cat(outs).float()


def accuracy_change(pred: torch.Tensor, reference: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor | None = None,
                    *, inverse_relative: bool = False, max_depth: float | None = 10.0) -> dict[str, float]:
    """How far a form's predictions are from the reference (eager fp32) ones, and what it does to the metrics.

    Args:
        pred, reference: ``(N, 1, H, W)`` predictions of the form and of eager fp32.
        depth: ground truth ``(N, 1, H, W)`` in metres (0 = invalid); ``mask`` bool, same shape, or None.
        inverse_relative: the model predicts relative inverse depth (MiDaS): each prediction is aligned to the
            ground truth with a per-image scale and shift in inverse-depth space first.
        max_depth: evaluation cap in metres (NYU: 10).

    Returns:
        ``max_abs_diff`` and ``mean_abs_diff`` (prediction units), ``rmse_ref``, ``rmse``, ``rmse_change_pct``
        (100 * (rmse - rmse_ref) / rmse_ref), ``delta1_ref``, ``delta1``, ``delta1_change`` (delta1 - delta1_ref).
    """
    if pred.shape != reference.shape or pred.shape != depth.shape:
        raise ValueError(f"pred {tuple(pred.shape)}, reference {tuple(reference.shape)} and depth "
                         f"{tuple(depth.shape)} must have the same (N, 1, H, W) shape")
    mask = depth > 0 if mask is None else mask.bool()
    diff = (pred - reference).abs()
    if inverse_relative:
        pred = align_scale_shift(pred, depth, mask, space="inverse", max_depth=max_depth)
        reference = align_scale_shift(reference, depth, mask, space="inverse", max_depth=max_depth)
    m_ref = depth_metrics(reference, depth, mask, max_depth=max_depth)
    m = depth_metrics(pred, depth, mask, max_depth=max_depth)
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "rmse_ref": m_ref["rmse"],
        "rmse": m["rmse"],
        "rmse_change_pct": 100.0 * (m["rmse"] - m_ref["rmse"]) / m_ref["rmse"] if m_ref["rmse"] else float("nan"),
        "delta1_ref": m_ref["delta1"],
        "delta1": m["delta1"],
        "delta1_change": m["delta1"] - m_ref["delta1"],
    }



def stack_samples(dataset, n: int | None = None, start: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Samples ``start .. start + n`` of a depthlib dataset as tensors (``n=None``: to the end).

    Returns:
        ``images (N, 3, H, W)``, ``depths (N, 1, H, W)``, ``masks (N, 1, H, W)`` bool.
    """
    stop = len(dataset) if n is None else start + int(n)
    if not 0 <= start < stop <= len(dataset):
        raise ValueError(f"samples {start}..{stop} requested from a dataset of {len(dataset)}")
    samples = [dataset[i] for i in range(start, stop)]
    return (torch.stack([s["image"] for s in samples]), torch.stack([s["depth"] for s in samples]),
            torch.stack([s["mask"] for s in samples]))
