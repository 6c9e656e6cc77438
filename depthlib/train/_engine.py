"""Pieces shared by ``fit``, ``evaluate`` and ``lr_range_test``: one way to build the optimiser, the
schedule and the loss, to move a batch to the device and to apply the loss to every prediction head."""

from __future__ import annotations

import contextlib
import functools
import platform
import random
import shutil
import warnings
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
    """The optimiser of ``cfg`` over the model's trainable parameters (``lr`` overrides ``cfg.lr``).

    With ``cfg.fused_optimizer`` the optimiser's fused kernel is used; where PyTorch has none for these
    parameters (their device or dtype), one warning names the switch and the default implementation is used.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    lr = cfg.lr if lr is None else lr
    if cfg.optimizer == "sgd":
        cls, kw = torch.optim.SGD, {"momentum": cfg.momentum}
    elif cfg.optimizer == "adam":
        cls, kw = torch.optim.Adam, {"betas": cfg.betas, "eps": cfg.eps}
    else:
        cls, kw = torch.optim.AdamW, {"betas": cfg.betas, "eps": cfg.eps}
    if cfg.fused_optimizer:
        try:
            return cls(params, lr=lr, weight_decay=cfg.weight_decay, fused=True, **kw)
        except (RuntimeError, ValueError) as err:
            warnings.warn(f"TrainConfig.fused_optimizer=True: no fused {cls.__name__} here ({err}); "
                          "using the default implementation", RuntimeWarning, stacklevel=2)
    return cls(params, lr=lr, weight_decay=cfg.weight_decay, **kw)


@functools.lru_cache(maxsize=None)
def cpu_features() -> dict[str, Any]:
    """What this CPU offers the fast paths: ``{"model": str, "capability": torch's CPU capability,
    "avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni": bool, "native_bf16": bool}``.

    Read from ``/proc/cpuinfo`` (Linux); elsewhere the flags are False (bf16 is then never assumed).
    """
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "flags" and not flags:
                    flags = set(value.split())
                elif key == "model name":
                    model = value.strip()
                if flags and key == "model name":
                    break
    except OSError:
        pass
    out: dict[str, Any] = {"model": model, "capability": torch.backends.cpu.get_cpu_capability()}
    for name in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni"):
        out[name] = name in flags
    out["native_bf16"] = out["avx512_bf16"] or out["amx_bf16"]
    return out


def machine_banner(threads: int) -> str:
    """The two lines every training benchmark prints first: torch, threads, CPUs, load, the CPU and its flags."""
    import os

    feats = cpu_features()
    flags = ", ".join(f"{k}={'yes' if feats[k] else 'no'}"
                      for k in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni"))
    return (f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f} at start; CPU {feats['model']}\n"
            f"CPU flags: {flags}; torch CPU capability {feats['capability']}")


class Speed:
    """The speed switches of a :class:`TrainConfig` as this machine honours them, decided once per ``fit``.

    Attributes: ``channels_last`` (bool), ``cpu_bf16`` (bf16 autocast of the forward pass on the CPU),
    ``compile`` (bool). A switch asked for that cannot be honoured warns once, naming it.
    """

    def __init__(self, cfg: TrainConfig, device: torch.device, *, distributed: bool = False) -> None:
        self.channels_last = cfg.channels_last
        self.cpu_bf16 = False
        if device.type == "cpu" and cfg.cpu_amp is not None:
            native = cpu_features()["native_bf16"]
            self.cpu_bf16 = native
            if cfg.cpu_amp == "bf16" and not native:
                warnings.warn("TrainConfig.cpu_amp='bf16': this CPU has no native bf16 (avx512_bf16 / amx_bf16), "
                              "where emulated bf16 is several times slower; training in float32",
                              RuntimeWarning, stacklevel=3)
        self.compile = cfg.compile
        if cfg.compile and distributed:
            warnings.warn("TrainConfig.compile=True: not applied under DDP here; training eagerly",
                          RuntimeWarning, stacklevel=3)
            self.compile = False
        if self.compile and device.type == "cpu" and not any(
                shutil.which(c) for c in ("g++", "c++", "clang++")):
            warnings.warn("TrainConfig.compile=True: torch.compile needs a C++ compiler on the CPU and none was "
                          "found; training eagerly", RuntimeWarning, stacklevel=3)
            self.compile = False
        self._compiled: Any = None
        self._compiled_ok = False

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on the CPU when decided, else a no-op."""
        if self.cpu_bf16:
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward(self, net: nn.Module, image: torch.Tensor) -> Any:
        """``net(image)``, through ``torch.compile`` when decided; a compilation that fails on the first
        batch warns once and the run continues eagerly (the same weights, nothing lost)."""
        if self.compile and self._compiled is None:
            self._compiled = torch.compile(net)
        if self.compile:
            try:
                out = self._compiled(image)
                self._compiled_ok = True
                return out
            except Exception as err:  # noqa: BLE001 - any backend failure: fall back, as documented
                if self._compiled_ok:
                    raise
                warnings.warn(f"TrainConfig.compile=True: torch.compile failed ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}); training eagerly",
                              RuntimeWarning, stacklevel=3)
                self.compile = False
        return net(image)


def float_output(output: Any) -> Any:
    """A model output (tensor or ``{"depth", "aux"}`` dict) in float32, for a loss computed outside autocast."""
    if torch.is_tensor(output):
        return output.float()
    if isinstance(output, dict):
        return {k: (v.float() if torch.is_tensor(v) else [a.float() for a in v] if isinstance(v, list) else v)
                for k, v in output.items()}
    return output


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
        # normalize() returned a fresh tensor: converting it is the batch's only layout copy
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


def head_losses(output: Any, targets: tuple[Any, ...], loss_fn: LossFn) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The loss of each prediction head, unweighted: ``([L_final, L_aux_1, ...], final (B, 1, H, W))``.

    The auxiliary predictions are upsampled bilinearly to the final size first, as in :func:`compute_loss`
    (``compute_loss`` is ``sum_i head_weight_i * L_i`` of these).
    """
    import torch.nn.functional as F

    final, aux = split_output(output)
    size = final.shape[-2:]
    preds = [final] + [p if p.shape[-2:] == size else F.interpolate(p, size=size, mode="bilinear", align_corners=False)
                       for p in aux]
    return [loss_fn(p, *targets) for p in preds], final


def target_keys(cfg: TrainConfig, loss_fn: LossFn) -> tuple[str, ...]:
    """Batch keys given to the loss after the prediction: ``cfg.target_keys``, else from the loss's
    ``kind`` (:func:`depthlib.losses.get_loss`): dense ``("depth", "mask")``, dense_image ``("depth", "mask", "image")``, ordinal ``("pairs", "relation")``."""
    if cfg.target_keys is not None:
        return cfg.target_keys
    kind = getattr(loss_fn, "kind", "dense")
    if kind == "dense":
        return ("depth", "mask")
    if kind == "dense_image":
        return ("depth", "mask", "image")
    if kind == "ordinal":
        return ("pairs", "relation")
    raise ValueError(
        f"TrainConfig.loss={cfg.loss!r} is a {kind!r} loss: its second argument is not in the batch "
        "(a teacher's output). Keep a supervised TrainConfig.loss and pass the teacher to fit: "
        "fit(..., teacher=teacher, distill=[DistillTerm('pixel_rmse' | 'feature_l2' | 'pairwise', ...)])"
    )


def autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA (``amp`` is validated CUDA-only by ``TrainConfig``), else a no-op."""
    if amp is None:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
