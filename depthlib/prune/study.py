"""The pruning chapters' experiments: one sweep = prune, count, time, evaluate (their way and correctly), fine-tune.

:func:`sweep` runs one pruning method over sparsities on a copy of a trained model and returns one row per
sparsity; :func:`ssi_disparity` is MiDaS's scale-and-shift-invariant loss on metric-depth samples (the
target turned into disparity first), the loss haly2021 needed and did not have.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from depthlib.profiler import count_macs, count_params, measure_latency
from depthlib.prune.structured import prune
from depthlib.prune.unstructured import (make_permanent, nominal_params, prune_unstructured, prune_whole_layers,
                                         sparsity_report)

__all__ = ["METHODS", "ssi_disparity", "sweep"]

#: Pruning methods of :func:`sweep`.
METHODS = ("unstructured", "whole_layer", "structured")


def ssi_disparity(pred: Tensor, depth: Tensor, mask: Tensor | None = None) -> Tensor:
    """:func:`depthlib.losses.ssi` of ``pred`` (relative disparity) against ``1 / depth`` on the valid pixels.

    Shapes: ``pred, depth: (B, 1, H, W)``, ``mask: bool (B, 1, H, W)`` (``None``: ``depth > 0``).
    """
    from depthlib.losses import ssi

    valid = depth > 0 if mask is None else mask & (depth > 0)
    disparity = torch.where(valid, 1.0 / depth.clamp_min(1e-6), torch.zeros_like(depth))
    return ssi(pred, disparity, valid)


def sweep(model: nn.Module, method: str, sparsities: Sequence[float], evaluation: Any, *, config: Any,
          input_size: Sequence[int], train_data: Any = None, finetune: Any = None,
          latency_kwargs: dict[str, Any] | None = None) -> pd.DataFrame:
    """Prune copies of ``model`` with ``method`` at each sparsity; measure, evaluate, optionally fine-tune.

    Args:
        model: the trained network (untouched), e.g. ``midas-small``.
        method: ``"unstructured"`` (haly2021's fine-grained L1 on every Conv2d), ``"whole_layer"`` (their
            "channel" pruning) or ``"structured"`` (Torch-Pruning channel pruning to
            ``(1 - sparsity) x params`` parameters, L1 importance: the same parameter count, dense).
        sparsities: e.g. :data:`depthlib.prune.HALY_FINE_SPARSITIES`.
        evaluation: the evaluation samples (metric depth).
        config: the :class:`~depthlib.train.TrainConfig` whose normalisation and depth range evaluation uses.
        input_size: ``(1, 3, H, W)`` for MACs and latency.
        train_data, finetune: when both given, each pruned model is also fine-tuned with ``fit(train_data,
            config=finetune)`` (unstructured masks kept during it, then made permanent) and evaluated again.
        latency_kwargs: for :func:`depthlib.profiler.measure_latency`.

    Returns:
        one row per sparsity: ``method, sparsity, params, nonzero_params, nominal_params, macs, dense_mb,
        gzip_mb, latency_ms``, their way (``their_rmse``, ``their_mae``: raw output against metres, no
        alignment), correctly (``rmse, mae, absrel, delta1``: least-squares scale and shift in inverse depth),
        and with fine-tuning ``ft_rmse, ft_absrel, ft_delta1``; ``note`` says why a row has no model
        (a parameter count structured pruning cannot reach).
    """
    from depthlib.train import evaluate, fit

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    size = tuple(int(v) for v in input_size)
    base_params = count_params(model)
    rows = []
    tune = finetune is not None and train_data is not None
    for s in sparsities:
        row: dict[str, Any] = {"method": method, "sparsity": float(s), "nominal_params": nominal_params(base_params, s),
                               "note": ""}
        if method == "unstructured":
            net = prune_unstructured(model, s)
        elif method == "whole_layer":
            net, zeroed = prune_whole_layers(model, s)
            row["layers_zeroed"] = len(zeroed)
        else:
            try:
                net = prune(model, torch.rand(size), target_params=int(row["nominal_params"]), steps=20,
                            max_ratio=0.95) if s > 0 else copy.deepcopy(model)
            except ValueError as err:
                row["note"] = str(err)
                rows.append(row)
                continue
        rep = sparsity_report(net)
        row.update(params=rep["params"], nonzero_params=rep["nonzero_params"], dense_mb=rep["dense_bytes"] / 1e6,
                   gzip_mb=rep["gzip_bytes"] / 1e6, macs=count_macs(net, size),
                   latency_ms=measure_latency(net, size, **dict(latency_kwargs or {})))
        theirs = evaluate(net, evaluation, config, align=None)
        row.update(their_rmse=theirs["rmse"], their_mae=theirs["mae"])
        ours = evaluate(net, evaluation, config, align="inverse")
        row.update(rmse=ours["rmse"], mae=ours["mae"], absrel=ours["absrel"], delta1=ours["delta1"])
        if tune:
            # the same zeros again, masks kept so that fine-tuning cannot regrow them (made permanent after)
            if method == "unstructured":
                net = prune_unstructured(model, s, permanent=False)
            elif method == "whole_layer":
                net = prune_whole_layers(model, s, permanent=False)[0]
            fit(net, train_data, None, dataclasses.replace(finetune, progress=False))
            make_permanent(net)
            tuned = evaluate(net, evaluation, config, align="inverse")
            row.update(ft_rmse=tuned["rmse"], ft_absrel=tuned["absrel"], ft_delta1=tuned["delta1"],
                       ft_nonzero_params=sparsity_report(net)["nonzero_params"])
        rows.append(row)
    out = pd.DataFrame(rows)
    return out

