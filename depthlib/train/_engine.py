"""Pieces shared by ``fit``, ``evaluate`` and ``lr_range_test``: one way to build the optimiser, the
schedule and the loss, to move a batch to the device and to apply the loss to every prediction head."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import TrainConfig

LossFn = Callable[..., torch.Tensor]


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed Python and NumPy from the worker's torch seed.

    PyTorch seeds each worker's torch RNG with ``base_seed + worker_id`` (``base_seed`` drawn from the
    loader's generator) but leaves ``random`` and ``numpy`` alone, so augmentations written with them
    would repeat across workers and runs; this is the recipe of PyTorch's reproducibility notes.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), Python's ``random`` and NumPy's global generator."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def build_optimizer(model: nn.Module, cfg: TrainConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """The optimiser of ``cfg`` over the model's trainable parameters (``lr`` overrides ``cfg.lr``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    lr = cfg.lr if lr is None else lr
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-epoch schedule: ``StepLR`` (x0.1 or x0.9 every N epochs), ``PolynomialLR`` over ``cfg.epochs``."""
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.schedule == "poly":
        # PolynomialLR reaches 0 after total_iters steps; with one step per epoch the last epoch
        # still trains at lr * (1 / epochs) ** power.
        return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=cfg.epochs, power=cfg.power)
    return None


def resolve_loss(cfg: TrainConfig) -> LossFn:
    """``cfg.loss`` as a callable: a name goes through :func:`depthlib.losses.get_loss`."""
    if callable(cfg.loss):
        return cfg.loss
    from depthlib.losses import get_loss

    return get_loss(cfg.loss, **cfg.loss_kwargs)


def prepare_batch(
    batch: Any, device: torch.device, cfg: TrainConfig, keys: Sequence[str]
) -> tuple[torch.Tensor, tuple[Any, ...]]:
    """Move a collated sample dict to ``device``: ``(image (B, 3, H, W), targets)``.

    The image stays in [0, 1]: the model normalises it as its weights expect (``model.normalization``,
    recorded by :func:`depthlib.models.create_model`), so training, evaluation, prediction and export share
    one switch. ``targets`` are ``batch[k]`` for ``k`` in ``keys`` (see :func:`target_keys`), in that order.
    """
    if not isinstance(batch, dict) or "image" not in batch:
        raise TypeError(
            "training batches must be dicts with an 'image' key (depthlib samples collated with "
            f"default_collate), got {type(batch).__name__}"
            + (f" with keys {sorted(batch)}" if isinstance(batch, dict) else "")
        )
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(
            f"the loss needs batch keys {keys} (TrainConfig.target_keys) but the batch has no {missing} "
            f"(it has {sorted(batch)})"
        )
    image = batch["image"].to(device, non_blocking=True)
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"batch['image'] must be (B, 3, H, W), got {tuple(image.shape)}")
    if cfg.channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    targets = tuple(batch[k].to(device, non_blocking=True) if torch.is_tensor(batch[k]) else batch[k] for k in keys)
    return image, targets


def split_output(output: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(final (B, 1, H, W), [aux_i (B, 1, h_i, w_i)])`` from a model output (tensor or dict)."""
    if torch.is_tensor(output):
        return output, []
    if isinstance(output, dict) and "depth" in output:
        return output["depth"], list(output.get("aux", []))
    raise TypeError(
        "the model must return a (B, 1, H, W) tensor or, in training mode, a dict "
        f"{{'depth': ..., 'aux': [...]}}; got {type(output).__name__}"
        + (f" with keys {sorted(output)}" if isinstance(output, dict) else "")
    )


def head_weights(n_aux: int, aux_weights: tuple[float, ...] | None) -> tuple[float, ...]:
    """Weights of ``[final, aux_1, ..., aux_n]``; the default is yucel2021's (0.5 final, rest split)."""
    if aux_weights is None:
        return (1.0,) if n_aux == 0 else (0.5,) + (0.5 / n_aux,) * n_aux
    if len(aux_weights) != n_aux + 1:
        raise ValueError(
            f"TrainConfig.aux_weights={aux_weights} has {len(aux_weights)} weights but the model returned "
            f"1 final + {n_aux} auxiliary predictions: give {n_aux + 1} weights [final, aux_1, ...]"
        )
    return aux_weights


def compute_loss(
    output: Any, targets: tuple[Any, ...], loss_fn: LossFn, aux_weights: tuple[float, ...] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted loss over every prediction head; returns ``(loss, final prediction (B, 1, H, W))``.

    The sum is :func:`depthlib.losses.deep_supervision` (yucel2021, eq. 4): auxiliary predictions
    ``(B, 1, h_i, w_i)`` are upsampled bilinearly to the final prediction's size rather than the targets
    downsampled, because downsampling a sparse depth map with a validity mask has no good answer
    (nearest picks arbitrary pixels, averaging mixes in the zeros of invalid pixels) and pixel-pair
    targets (DIW) have no low-resolution version, while upsampling keeps one loss, one mask and the
    full-resolution supervision for every head.
    """
    from depthlib.losses import deep_supervision

    final, aux = split_output(output)
    if not aux:
        return loss_fn(final, *targets), final
    weights = head_weights(len(aux), aux_weights)
    return deep_supervision(loss_fn, output, *targets, weights=weights), final


def target_keys(cfg: TrainConfig, loss_fn: LossFn) -> tuple[str, ...]:
    """Batch keys given to the loss after the prediction: ``cfg.target_keys``, else from the loss's
    ``kind`` (:func:`depthlib.losses.get_loss`): dense ``("depth", "mask")``, ordinal ``("pairs", "relation")``."""
    if cfg.target_keys is not None:
        return cfg.target_keys
    kind = getattr(loss_fn, "kind", "dense")
    if kind == "dense":
        return ("depth", "mask")
    if kind == "ordinal":
        return ("pairs", "relation")
    raise ValueError(
        f"TrainConfig.loss={cfg.loss!r} is a {kind!r} loss: its second argument is not in the batch "
        "(a teacher's output for distillation); train it with a loop that computes that argument"
    )


def autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA (``amp`` is validated CUDA-only by ``TrainConfig``), else a no-op."""
    if amp is None:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
