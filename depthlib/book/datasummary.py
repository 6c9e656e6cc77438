"""Summaries of a dataset's depth values for the data chapter: ranges, validity and a histogram."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


def depth_summary(dataset: Dataset, *, max_depth: float = 80.0, bins: int = 160,
                  limit: int | None = None) -> dict[str, Any]:
    """Statistics of the valid depths (metres) of the first ``limit`` samples of ``dataset``.

    Args:
        dataset: yields depthlib samples with ``"depth"`` ``(1, H, W)`` metres and ``"mask"`` ``(1, H, W)``.
        max_depth: right edge of the histogram in metres (farther depths are counted in the last bin).
        bins: histogram bins between 0 and ``max_depth``.
        limit: samples to read (default all).

    Returns:
        ``{"table": {...}, "edges": list (bins + 1,), "density": list (bins,)}``: ``table`` has
        ``images``, ``height``, ``width`` (of the first sample), ``valid_fraction``, ``valid_pixels``,
        ``min_m``, ``median_m``, ``p99_m``, ``max_m``; ``density`` integrates to 1 over the edges (1/m).

    Raises:
        ValueError: the dataset is empty or has no valid pixel.
    """
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise ValueError("depth_summary: the dataset is empty")
    edges = np.linspace(0.0, max_depth, bins + 1)
    counts = np.zeros(bins, dtype=np.int64)
    values, total = [], 0
    height = width = 0
    for i in range(n):
        sample = dataset[i]
        depth, mask = sample["depth"], sample["mask"]
        if i == 0:
            height, width = int(depth.shape[-2]), int(depth.shape[-1])
        valid = depth[mask & (depth > 0)].to(torch.float32).numpy()
        total += depth.numel()
        values.append(valid)
        counts += np.histogram(np.clip(valid, 0.0, max_depth), bins=edges)[0]
    all_values = np.concatenate(values)
    if all_values.size == 0:
        raise ValueError(f"depth_summary: no valid pixel in {n} samples")
    table = {
        "images": n, "height": height, "width": width,
        "valid_fraction": all_values.size / total, "valid_pixels": int(all_values.size),
        "min_m": float(all_values.min()), "median_m": float(np.median(all_values)),
        "p99_m": float(np.percentile(all_values, 99)), "max_m": float(all_values.max()),
    }
    density = counts / (counts.sum() * np.diff(edges))
    return {"table": table, "edges": edges.tolist(), "density": density.tolist()}
