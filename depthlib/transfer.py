"""Sim-to-real transfer: train on procedural scenes only, evaluate on real NYU Depth v2 pairs.

The measurement of chapter "The data" (issue 9): FastDepth trained on :mod:`depthlib.data.synth` frames of a
given generator version and training-set size, then evaluated on the real NYU test pairs (DenseDepth's 40
``nyu2_test`` pairs here), with the metric numbers (the prediction as it is, in metres) beside the
scale-and-shift-aligned ones (each prediction fitted to its ground truth by least squares in depth space
first, :func:`depthlib.metrics.align_scale_shift`): the gap between the two says how much of the error is
the absolute scale, which a network can only learn from the camera and the rooms' sizes.

Nothing is tuned on the evaluation pairs: each run's recipe is fixed in advance and the pairs are only
evaluated once per run, after training.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Dataset

__all__ = ["synth_like_nyu", "nyu_eval_set", "transfer_run", "transfer_grid", "transfer_summary", "TRANSFER_METRICS"]

#: Columns of :func:`transfer_run`'s metrics (``nyu_`` metric, ``nyu_aligned_`` after scale-and-shift).
TRANSFER_METRICS = ("rmse", "absrel", "delta1")


def _fastdepth_geometry(size: Sequence[int]) -> tuple[int, int]:
    """Render size whose centre crop to ``size`` has the field of view of FastDepth's evaluation crop
    (228x304 of a 240x320-scaled 480x640 frame), so procedural and real inputs show the same angles."""
    h, w = int(size[0]), int(size[1])
    return round(h * 240 / 228), round(w * 320 / 304)


def synth_like_nyu(n: int, size: Sequence[int], *, version: int = 2, seed: int = 0, split: str = "train") -> list[dict[str, Any]]:
    """``n`` procedural indoor samples framed like :func:`nyu_eval_set`'s real ones, held in memory.

    Rendered at the size whose centre crop to ``size`` keeps the NYU camera's field of view through
    FastDepth's crop, then cropped (:class:`depthlib.data.transforms.CenterCrop`).

    Args:
        n: number of frames. size: ``(H, W)`` of the samples. version: generator version (1 or 2).
        seed: sequence seed. split: ``"train"`` or ``"val"`` (disjoint streams).

    Returns:
        list of dicts with ``image (3, H, W)``, ``depth (1, H, W)``, ``mask (1, H, W)``, ``path``.
    """
    from depthlib.data import open_dataset
    from depthlib.data.transforms import CenterCrop

    crop = CenterCrop((int(size[0]), int(size[1])))
    ds = open_dataset("synth", split=split, n=int(n), size=_fastdepth_geometry(size), seed=int(seed),
                      scene="indoor", version=int(version))
    keep = ("image", "depth", "mask", "path", "intrinsics")
    samples = ds.load_batch(range(len(ds)))  # one batched render
    return [{k: v for k, v in crop(s).items() if k in keep and k != "intrinsics"} for s in samples]


def nyu_eval_set(root: Any, size: Sequence[int]) -> list[dict[str, Any]]:
    """The real NYU test pairs of DenseDepth's ``nyu_data`` folder through FastDepth's validation transform
    (resize by 250/480, centre crop 228x304, resize to ``size``), in memory: ``image (3, H, W)``,
    ``depth`` and ``mask`` ``(1, H, W)``, ``path``."""
    from depthlib.data import open_dataset
    from depthlib.data.transforms import fastdepth_val_transform

    ds = open_dataset("nyu_png", root, split="test", transform=fastdepth_val_transform(tuple(size)))
    keep = ("image", "depth", "mask", "path")
    return [{k: v for k, v in ds[i].items() if k in keep} for i in range(len(ds))]


def transfer_run(train: Sequence[dict[str, Any]], evaluation: Sequence[dict[str, Any]], *, seed: int,
                 epochs: int, batch_size: int, lr: float, model: str = "fastdepth",
                 weights: Any = None, max_depth: float = 10.0, loss: str = "l1",
                 config_overrides: dict[str, Any] | None = None) -> dict[str, float]:
    """Train ``model`` on ``train`` with :func:`depthlib.train.fit` (SGD, momentum 0.9, ``lr`` decayed x0.1
    for the last third of the epochs when there are 3 or more) and evaluate it on ``evaluation``.

    Args:
        train, evaluation: samples (``image (3, H, W)``, ``depth``/``mask`` ``(1, H, W)``) of one size.
        seed: the run's random seed (model initialisation, data order).
        epochs, batch_size, lr: the recipe. model: a preset of :func:`depthlib.models.create_model`.
        weights: the encoder's initialisation, as ``create_model(weights=...)`` takes it (``None``, ``"auto"``, ``"imagenet"``, a path).
        max_depth: the evaluation's depth cap in metres (NYU: 10).
        config_overrides: further :class:`depthlib.train.TrainConfig` fields (the speed switches, say).

    Returns:
        ``{"nyu_rmse", "nyu_absrel", "nyu_delta1", "nyu_aligned_rmse", ..., "train_loss", "train_time_s",
        "images_per_s"}``; the ``nyu_`` metrics are per-image means (FastDepth's convention).
    """
    from depthlib.models import create_model
    from depthlib.train import TrainConfig, evaluate, fit

    torch.manual_seed(seed)
    net = create_model(model, weights=weights)
    step = max(1, math.ceil(epochs * 2 / 3)) if epochs >= 3 else epochs + 1
    cfg = TrainConfig(epochs=int(epochs), batch_size=int(batch_size), lr=float(lr), seed=int(seed),
                      step_size=step, loss=loss, max_depth=float(max_depth), progress=False,
                      **dict(config_overrides or {}))
    t0 = time.perf_counter()
    history = fit(net, list(train), None, cfg)
    elapsed = time.perf_counter() - t0
    out: dict[str, float] = {"train_loss": float(history["train_loss"].iloc[-1]), "train_time_s": elapsed,
                             "images_per_s": float(history["images_per_s"].mean())}
    metric = evaluate(net, evaluation, cfg, align=None)
    aligned = evaluate(net, evaluation, cfg, align="depth")
    for name in TRANSFER_METRICS:
        out[f"nyu_{name}"] = float(metric[name])
        out[f"nyu_aligned_{name}"] = float(aligned[name])
    return out


def transfer_grid(evaluation: Sequence[dict[str, Any]], *, versions: Sequence[int] = (1, 2),
                  n_train: Sequence[int] = (96, 384), seeds: Sequence[int] = (0, 1, 2),
                  size: Sequence[int] = (96, 128), epochs: int = 3, batch_size: int = 8, lr: float = 0.05,
                  model: str = "fastdepth", weights: Any = None, data_seed: int = 0,
                  max_depth: float = 10.0) -> pd.DataFrame:
    """Every (generator version, training-set size, seed) run of :func:`transfer_run`, one row each.

    The training sets of one version are nested (the first ``n`` frames of the largest), so a larger set
    only adds frames. ``evaluation`` is never trained on.

    Returns:
        DataFrame with columns ``version``, ``n_train``, ``seed`` and those of :func:`transfer_run`.
    """
    if not evaluation:
        raise ValueError("transfer_grid: the evaluation set is empty (are the real NYU pairs present?)")
    rows = []
    for version in versions:
        frames = synth_like_nyu(max(n_train), size, version=int(version), seed=data_seed)
        for n in n_train:
            for seed in seeds:
                r = transfer_run(frames[:int(n)], evaluation, seed=int(seed), epochs=epochs, batch_size=batch_size,
                                 lr=lr, model=model, weights=weights, max_depth=max_depth)
                rows.append({"version": int(version), "n_train": int(n), "seed": int(seed), **r})
    return pd.DataFrame(rows)


def transfer_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every ``nyu_`` metric per (version, n_train)."""
    cols = [c for c in df.columns if c.startswith("nyu_")]
    g = df.groupby(["version", "n_train"])[cols]
    out = g.mean().join(g.std(ddof=1).add_suffix("_std"))
    out["seeds"] = df.groupby(["version", "n_train"])["seed"].nunique()
    return out.reset_index()

