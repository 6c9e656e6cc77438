"""The learning-rate range test of Smith (2017), through torch-lr-finder, on depthlib's dict samples."""

from __future__ import annotations

import contextlib
import io
import logging
import math
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from . import _engine
from .checkpoint import capture_rng, restore_rng
from .config import TrainConfig

__all__ = ["lr_range_test"]

logger = logging.getLogger("depthlib.train")


class _Diverged(Exception):
    """Raised by the criterion on a NaN/inf loss: torch-lr-finder's ``loss > diverge_th * best``
    test is False for NaN, so without this the sweep would run on with NaN weights."""


def _dict_batches(loader: DataLoader, device: torch.device, cfg: TrainConfig, keys: tuple[str, ...]) -> Any:
    """torch-lr-finder's documented extension point for non-tuple batches: ``(inputs, labels)`` from
    a sample dict, prepared exactly as ``fit`` prepares it (device, normalisation, channels_last).
    Built on call: torch-lr-finder imports matplotlib.pyplot, which ``import depthlib.train`` avoids."""
    from torch_lr_finder import TrainDataLoaderIter

    class DictBatches(TrainDataLoaderIter):
        def inputs_labels_from_batch(self, batch_data: Any) -> tuple[torch.Tensor, tuple[Any, ...]]:
            return _engine.prepare_batch(batch_data, device, cfg, keys)

    return DictBatches(loader)


def lr_range_test(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    smooth_f: float = 0.05,
    diverge_th: float = 5.0,
    *,
    suggestion: str = "steepest",
    skip_start: int = 10,
    skip_end: int = 5,
) -> tuple[pd.DataFrame, float]:
    """Smith's LR range test: train ``num_iter`` batches while the LR grows exponentially.

    The learning rate goes from ``start_lr`` to ``end_lr`` geometrically, one step per batch, with the
    optimiser, loss, auxiliary-head weights, normalisation and batch size of ``config``. The loss is
    smoothed exponentially (``smooth_f``) and the sweep stops once the smoothed loss exceeds
    ``diverge_th`` times its best value, or at the first NaN/inf loss. The model's weights (buffers
    included), its train/eval mode and the global torch RNG are restored afterwards.

    The sweep itself is torch-lr-finder's (``LRFinder.range_test`` with ``step_mode="exp"``): it fits
    depthlib's dict samples through its ``TrainDataLoaderIter`` extension point, and the masked loss
    and auxiliary heads go through the criterion. The suggestion is computed here from its history
    because its ``plot()`` draws a figure to get it.

    Args:
        model: the network ``(B, 3, H, W) -> (B, 1, H, W)`` (or the training-mode dict with aux heads).
        data: dataset of sample dicts; cycled if shorter than ``num_iter`` batches.
        config: optimiser, loss, batch size, device, seed (default ``TrainConfig()``); its ``lr`` and
            schedule are ignored.
        start_lr, end_lr: the sweep's bounds, ``0 < start_lr < end_lr``.
        num_iter: number of batches (LR values) in the sweep.
        smooth_f: exponential smoothing factor of the loss, in [0, 1).
        diverge_th: stop when the smoothed loss exceeds ``diverge_th`` x its minimum.
        suggestion: ``"steepest"``: the LR where the smoothed loss falls fastest per log-LR step
            (minimum of ``np.gradient``, torch-lr-finder's and fastai's rule), after dropping
            ``skip_start`` first and ``skip_end`` last points; ``"min/10"``: a tenth of the LR of the
            smallest smoothed loss (fastai's older rule).

    Returns:
        ``(df, suggested_lr)`` with ``df`` columns ``lr``, ``loss`` (smoothed) and ``raw_loss``.
    """
    from torch_lr_finder import LRFinder

    cfg = TrainConfig() if config is None else config
    if not (0 < start_lr < end_lr) or not math.isfinite(end_lr):
        raise ValueError(f"lr_range_test needs 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
    if not isinstance(num_iter, int) or num_iter < 2:
        raise ValueError(f"num_iter must be an int >= 2, got {num_iter!r}")
    if not 0 <= smooth_f < 1:
        raise ValueError(f"smooth_f must be in [0, 1), got {smooth_f}")
    if not diverge_th > 1:
        raise ValueError(f"diverge_th must be > 1, got {diverge_th}")
    if suggestion not in ("steepest", "min/10"):
        raise ValueError(f"suggestion must be 'steepest' or 'min/10', got {suggestion!r}")
    if suggestion == "steepest" and num_iter < skip_start + skip_end + 2:
        raise ValueError(
            f"num_iter={num_iter} is too short for the 'steepest' suggestion with skip_start={skip_start} "
            f"and skip_end={skip_end}: use num_iter >= {skip_start + skip_end + 2}"
        )

    device = torch.device(cfg.device)
    was_training = model.training
    model_device = next(model.parameters()).device
    model.to(device)
    loss_fn = _engine.resolve_loss(cfg)
    keys = _engine.target_keys(cfg, loss_fn)
    raw: list[float] = []

    def criterion(output: Any, targets: tuple[Any, ...]) -> torch.Tensor:
        loss, _ = _engine.compute_loss(output, targets, loss_fn, cfg.aux_weights)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise _Diverged(value)
        raw.append(value)
        return loss

    # The sweep's shuffling, augmentation and dropout must not move the caller's random streams.
    caller_rng = capture_rng()
    try:
        _engine.seed_everything(cfg.seed)
        gen = torch.Generator()
        gen.manual_seed(cfg.seed)
        loader = DataLoader(
            data,
            batch_size=cfg.batch_size,
            sampler=RandomSampler(data, generator=gen),
            num_workers=cfg.num_workers,
            worker_init_fn=_engine.seed_worker,
            generator=gen,
            drop_last=cfg.drop_last,
        )
        optimizer = _engine.build_optimizer(model, cfg, lr=start_lr)
        finder = LRFinder(model, optimizer, criterion, device=device)
        # torch-lr-finder reports through print(); keep it out of notebooks' outputs, in the log.
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                finder.range_test(
                    _dict_batches(loader, device, cfg, keys),
                    start_lr=start_lr,
                    end_lr=end_lr,
                    num_iter=num_iter,
                    step_mode="exp",
                    smooth_f=smooth_f,
                    diverge_th=diverge_th,
                )
        except _Diverged as err:
            logger.info("lr_range_test: non-finite loss %s at lr %.3g, sweep stopped", err,
                        start_lr * (end_lr / start_lr) ** (len(finder.history["lr"]) / (num_iter - 1)))
        finally:
            finder.reset()  # the weights and buffers of before the sweep
            model.to(model_device)
            model.train(was_training)
        for line in printed.getvalue().splitlines():
            logger.info("torch-lr-finder: %s", line)
    finally:
        restore_rng(caller_rng)

    lrs = np.asarray(finder.history["lr"], dtype=float)
    losses = np.asarray(finder.history["loss"], dtype=float)
    df = pd.DataFrame({"lr": lrs, "loss": losses, "raw_loss": raw[: len(lrs)]})
    return df, _suggest(lrs, losses, suggestion, skip_start, skip_end)


def _suggest(lrs: np.ndarray, losses: np.ndarray, rule: str, skip_start: int, skip_end: int) -> float:
    if len(lrs) == 0:
        raise RuntimeError("lr_range_test: the first batch already gave a non-finite loss; lower start_lr")
    if rule == "min/10":
        return float(lrs[int(np.argmin(losses))] / 10)
    if len(lrs) < skip_start + skip_end + 2:
        raise RuntimeError(
            f"lr_range_test: the loss diverged after {len(lrs)} steps, too few for the 'steepest' "
            f"suggestion (needs {skip_start + skip_end + 2}); lower end_lr, raise num_iter or use "
            "suggestion='min/10'"
        )
    lrs = lrs[skip_start: len(lrs) - skip_end]
    losses = losses[skip_start: len(losses) - skip_end]
    # Equal log-LR spacing: the gradient per index is the slope against log(lr), up to a constant.
    return float(lrs[int(np.argmin(np.gradient(losses)))])
