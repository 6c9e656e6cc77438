"""The training recipe as one validated, serialisable dataclass."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

__all__ = ["TrainConfig"]

_OPTIMIZERS = ("sgd", "adam", "adamw")
_SCHEDULES = ("step", "poly", "none")
_AMP = (None, "bf16", "fp16")
_REDUCTIONS = ("per_image", "pixel")
# A device string torch understands and this project runs on: "cpu", "cuda", "cuda:1", "mps".
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
_CPU_AMP = (None, "auto", "bf16")


@dataclasses.dataclass
class TrainConfig:
    """Everything :func:`depthlib.train.fit` needs besides the model and the data.

    The papers' recipes, as configs:

    - FastDepth / yucel2021 on NYU: ``TrainConfig(optimizer="sgd", lr=0.01, momentum=0.9,
      weight_decay=1e-4, schedule="step", step_size=10, gamma=0.1, batch_size=8, loss="l1")``.
    - sagar2021: ``optimizer="sgd", lr=0.08`` (from its LR range test), ``schedule="step", step_size=10,
      gamma=0.9``, ``loss="sobel_edge"``.
    - zhang2021 (MAI 2021): ``optimizer="adam", lr=8e-3, eps=1e-3, schedule="poly", power=0.9``.

    Args:
        epochs: number of epochs of the whole run (the schedule spans them).
        batch_size: the **global** batch size: under DDP each of the ``W`` processes loads
            ``batch_size / W`` samples, so a run has the same optimisation on 1 or ``W`` devices.
        optimizer: ``"sgd"`` (with ``momentum``), ``"adam"`` or ``"adamw"`` (with ``betas``, ``eps``).
        lr: base learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty (SGD, Adam) or decoupled weight decay (AdamW).
        betas, eps: Adam(W) parameters (zhang2021 uses ``eps=1e-3``).
        schedule: ``"step"`` (lr x ``gamma`` every ``step_size`` epochs), ``"poly"``
            (lr x ``(1 - epoch / epochs) ** power``, stepped per epoch) or ``"none"``.
        step_size, gamma, power: schedule parameters.
        loss: a name for :func:`depthlib.losses.get_loss` or a callable
            ``loss(pred, *targets) -> scalar tensor``.
        loss_kwargs: keyword arguments for ``get_loss`` (ignored for a callable).
        loss_weight: factor on the supervised loss in the objective (every head; with ``rebalance`` the
            rebalancer's weight applies on top). ``0`` trains on the distillation terms alone (yucel2021 Table 5's
            "PI-only"); the history's ``train_loss`` is the optimised objective either way.
        target_keys: batch keys passed to the loss after the prediction; ``None`` picks them from
            the loss's kind: ``("depth", "mask")`` for dense losses, ``("pairs", "relation")`` for
            DIW's ordinal ones.
        aux_weights: weights of ``[final, aux_1, ..., aux_n]`` for models that return
            ``{"depth", "aux"}`` in training mode. ``None`` gives the final prediction 0.5 and splits
            0.5 equally between the auxiliary heads (yucel2021's 0.5 / 0.25 / 0.25 for two heads).
        seed: seeds torch, Python and NumPy, the data order and the workers' augmentations.
        deterministic: ``torch.use_deterministic_algorithms(True)`` during ``fit`` (restored after).
        num_workers: DataLoader worker processes.
        drop_last: drop the last incomplete training batch.
        channels_last: model and inputs in ``torch.channels_last`` memory format (default on: the layout
            oneDNN's convolutions want, 1.3-1.5x per training step on the CPUs measured).
        amp: ``None``, ``"bf16"`` or ``"fp16"`` autocast; CUDA only (``"fp16"`` adds a GradScaler).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; under torchrun each process uses
            ``cuda:LOCAL_RANK`` when this is a CUDA device.
        max_depth, min_depth: depth caps for the validation metrics (NYU 10 m, KITTI 80 m).
        metric_reduction: ``"per_image"`` (FastDepth's published numbers) or pixel-pooled,
            passed to :mod:`depthlib.metrics`.
        eval_batch_size: batch size of the validation pass (defaults to ``batch_size``).
        log_every: batches between two refreshes of the progress bar's loss / delta1 (each refresh
            synchronises with the device).
        progress: show tqdm bars; ``None`` shows them only on a terminal or in a notebook.

    Speed switches (``benchmarks/bench_train.py`` measures them; each one the machine cannot honour falls
    back with one warning naming it, never an error or a silent change of results):

    Args:
        cpu_amp: bf16 autocast of the forward pass on the CPU (the loss and the weights stay float32):
            ``"auto"`` uses it only where the CPU has native bf16 (``avx512_bf16`` or ``amx_bf16``;
            emulated bf16 on an AVX2-only CPU made a FastDepth step 8x slower), ``"bf16"`` asks for it
            (warns and trains in float32 without native bf16), ``None`` (default) never: even with AMX,
            a FastDepth step under bf16 autocast measured 1.1x (224x224) to 1.5x (64x96) the CPU time of
            a float32 channels_last step (depthwise convolutions and per-layer casts gain nothing).
            CUDA runs use ``amp`` instead.
        fused_optimizer: the optimiser's fused kernel (``fused=True``: one pass over all parameters per
            step instead of a loop of small ops); ``False`` keeps PyTorch's default implementation.
        persistent_workers: with ``num_workers > 0``, keep the DataLoader workers (and their prefetched
            batches) alive from one epoch to the next instead of starting them again every epoch. Off by
            default: persistent workers carry their RNG across epochs, so a run resumed from ``last.pt``
            would draw other augmentations than the uninterrupted one (no bit-identical resume).
        compile: ``torch.compile`` the model for training (off by default: on the quick profile's runs
            its compile time, tens of seconds on 2 cores, is not paid back; see the benchmark).

    Loss rebalancing (Lee & Kim 2020 as yucel2021 uses it, :class:`depthlib.losses.MultiLossRebalancer`):

    Args:
        rebalance: ``None`` (default: fixed weights) or a dict; missing keys take their defaults and the
            stored config holds them all (so it is saved and compared on resume):

            - ``per_epoch`` (int >= 1, default 5, yucel2021's "five times every epoch"): rebalances per epoch,
              after the batches ``ceil(j * n / per_epoch)``, ``j = 1 .. per_epoch`` of the epoch's ``n`` (the
              last one ends the epoch; more than ``n`` rebalances after every batch).
            - ``order``: ``"hard_first"`` (default, yucel2021: ``lam`` from -3 by +1.5 per epoch up to 3) or
              ``"easy_first"`` (Lee & Kim: from 3 by -1.5 down to -3).
            - ``initialize`` (bool, default False): Lee & Kim's weight initialisation ("WI") at the first
              rebalance.
            - ``wrap_aux`` (bool, default True, yucel2021's "FIP"): each term's heads are combined with the
              fixed ``aux_weights`` first; ``False`` makes every head of the head-wise terms (the supervised
              loss and ``pixel_rmse``) its own rebalanced term, ``"loss/0"`` (final), ``"loss/1"``, ...,
              ``"pixel_rmse/0"``, ... (a model without auxiliary heads has nothing to split).
            - ``weights`` (``None`` or ``{term: weight}``): initial weights, finite and ``>= 0``, one per
              rebalanced term (checked against the terms when training starts); default ``1 / n`` each.

            The rebalanced terms are the supervised loss (``"loss"``) and every distillation term by its name
            except ``"holistic"`` ones (their generator loss has no sign; they keep ``DistillTerm.weight``); the
            objective is ``sum_i w_i L_i`` with the rebalancer's weights in place of ``DistillTerm.weight``.
            See :func:`depthlib.train.fit` for the recorded weights.
    """

    epochs: int = 1
    batch_size: int = 8
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str = "step"
    step_size: int = 10
    gamma: float = 0.1
    power: float = 0.9
    loss: str | Callable[..., Any] = "l1"
    loss_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    loss_weight: float = 1.0
    target_keys: tuple[str, ...] | None = None
    aux_weights: tuple[float, ...] | None = None
    seed: int = 0
    deterministic: bool = True
    num_workers: int = 0
    drop_last: bool = False
    channels_last: bool = True
    amp: str | None = None
    device: str = "cpu"
    max_depth: float | None = None
    min_depth: float = 1e-3
    metric_reduction: str = "per_image"
    eval_batch_size: int | None = None
    log_every: int = 10
    progress: bool | None = None
    # ---- speed switches (issue 9); validated in _validate_speed
    cpu_amp: str | None = None
    fused_optimizer: bool = True
    persistent_workers: bool = False
    compile: bool = False
    # ---- loss rebalancing (yucel2021, Lee & Kim); validated in _validate_rebalance
    rebalance: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # Lists arrive from YAML profiles; tuples keep the config hashable-looking and comparable.
        # A scalar or a string is not a sequence of them: validate() names the field instead.
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)
        if isinstance(self.target_keys, list):
            self.target_keys = tuple(self.target_keys)
        if isinstance(self.aux_weights, list):
            self.aux_weights = tuple(self.aux_weights)
        self.validate()
        self.betas = tuple(float(b) for b in self.betas)
        if self.rebalance is not None:
            self.rebalance = _rebalance_spec(self.rebalance)
        if self.aux_weights is not None:
            self.aux_weights = tuple(float(w) for w in self.aux_weights)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field with an invalid value.

        Every field is checked, types included: a string where a bool belongs (``drop_last="False"``,
        ``deterministic="no"``, which Python would take as true), a scalar where a pair belongs
        (``betas=0.9``), a number as a string (``max_depth="10"``), an unknown loss, reduction or device.
        Whether a CUDA device is present is checked by :func:`depthlib.train.fit` when it starts.
        """
        _positive_int(self, "epochs")
        _positive_int(self, "batch_size")
        _choice(self, "optimizer", _OPTIMIZERS)
        _positive_float(self, "lr")
        _nonnegative_float(self, "momentum")
        _nonnegative_float(self, "loss_weight")
        _nonnegative_float(self, "weight_decay")
        betas = self.betas
        if (not isinstance(betas, (tuple, list)) or len(betas) != 2
                or not all(_is_number(b) and 0.0 <= b < 1.0 for b in betas)):
            raise ValueError(f"TrainConfig.betas must be a pair of numbers in [0, 1), e.g. (0.9, 0.999), got {betas!r}")
        _positive_float(self, "eps")
        _choice(self, "schedule", _SCHEDULES)
        _positive_int(self, "step_size")
        _positive_float(self, "gamma")
        _positive_float(self, "power")
        if isinstance(self.loss, str):
            if not isinstance(self.loss_kwargs, dict):
                raise ValueError(f"TrainConfig.loss_kwargs must be a dict, got {self.loss_kwargs!r}")
            from depthlib.losses import get_loss

            try:
                get_loss(self.loss, **self.loss_kwargs)
            except ValueError as err:
                raise ValueError(f"TrainConfig.loss={self.loss!r}, loss_kwargs={self.loss_kwargs!r}: {err}") from None
        elif not callable(self.loss):
            raise ValueError(f"TrainConfig.loss must be a loss name or a callable, got {self.loss!r}")
        if not isinstance(self.loss_kwargs, dict):
            raise ValueError(f"TrainConfig.loss_kwargs must be a dict, got {self.loss_kwargs!r}")
        if self.target_keys is not None and (
            not isinstance(self.target_keys, (tuple, list)) or not self.target_keys
            or not all(isinstance(k, str) for k in self.target_keys)
        ):
            raise ValueError(f"TrainConfig.target_keys must be a non-empty tuple of batch keys, got {self.target_keys!r}")
        if self.aux_weights is not None and (
            not isinstance(self.aux_weights, (tuple, list)) or len(self.aux_weights) < 1
            or not all(_is_number(w) and math.isfinite(w) and w >= 0 for w in self.aux_weights)
        ):
            raise ValueError(f"TrainConfig.aux_weights must be non-negative finite weights, got {self.aux_weights!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"TrainConfig.seed must be a non-negative int, got {self.seed!r}")
        for name in ("deterministic", "drop_last", "channels_last"):
            _bool(self, name)
        if not isinstance(self.num_workers, int) or isinstance(self.num_workers, bool) or self.num_workers < 0:
            raise ValueError(f"TrainConfig.num_workers must be a non-negative int, got {self.num_workers!r}")
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise ValueError(
                f"TrainConfig.device must be 'cpu', 'cuda', 'cuda:<index>' or 'mps', got {self.device!r}")
        _choice(self, "amp", _AMP)
        if self.amp is not None and not self.device.startswith("cuda"):
            raise ValueError(
                f"TrainConfig.amp={self.amp!r} needs a CUDA device, got device={self.device!r}: "
                "mixed precision is only supported on CUDA here"
            )
        _positive_float(self, "min_depth")
        if self.max_depth is not None:
            _positive_float(self, "max_depth")
            if self.max_depth <= self.min_depth:
                raise ValueError(
                    f"TrainConfig.max_depth={self.max_depth!r} must be larger than min_depth={self.min_depth!r}")
        _choice(self, "metric_reduction", _REDUCTIONS)
        if self.eval_batch_size is not None:
            _positive_int(self, "eval_batch_size")
        _positive_int(self, "log_every")
        if self.progress is not None and not isinstance(self.progress, bool):
            raise ValueError(f"TrainConfig.progress must be None, True or False, got {self.progress!r}")
        _validate_speed(self)
        if self.rebalance is not None:
            _rebalance_spec(self.rebalance)

    def to_dict(self) -> dict[str, Any]:
        """Primitives only (a callable loss is recorded by its qualified name), for checkpoints."""
        out = dataclasses.asdict(self)
        if callable(self.loss):
            out["loss"] = f"callable:{getattr(self.loss, '__module__', '?')}.{getattr(self.loss, '__qualname__', repr(self.loss))}"
        out["betas"] = list(self.betas)
        if self.target_keys is not None:
            out["target_keys"] = list(self.target_keys)
        if self.aux_weights is not None:
            out["aux_weights"] = list(self.aux_weights)
        if self.rebalance is not None:
            out["rebalance"] = _rebalance_spec(self.rebalance)
        return out


#: TrainConfig.rebalance's keys and defaults; the orders' lam schedules (start, slope per epoch, end).
REBALANCE_DEFAULTS: dict[str, Any] = {"per_epoch": 5, "order": "hard_first", "initialize": False, "wrap_aux": True,
                                      "weights": None}
REBALANCE_ORDERS: dict[str, tuple[float, float, float]] = {"hard_first": (-3.0, 1.5, 3.0),
                                                           "easy_first": (3.0, -1.5, -3.0)}


def _rebalance_spec(spec: Any) -> dict[str, Any]:
    """``TrainConfig.rebalance`` with the defaults filled in; ``ValueError`` naming the key and value."""
    if not isinstance(spec, dict):
        raise ValueError(f"TrainConfig.rebalance must be None or a dict, got {spec!r}")
    unknown = sorted(set(spec) - set(REBALANCE_DEFAULTS), key=str)
    if unknown:
        raise ValueError(f"TrainConfig.rebalance: unknown key(s) {unknown}; the keys are {list(REBALANCE_DEFAULTS)}")
    out = {**REBALANCE_DEFAULTS, **spec}
    per = out["per_epoch"]
    if isinstance(per, bool) or not isinstance(per, int) or per < 1:
        raise ValueError(f"TrainConfig.rebalance['per_epoch'] must be an int >= 1, got {per!r}")
    if out["order"] not in REBALANCE_ORDERS:
        raise ValueError(f"TrainConfig.rebalance['order'] must be one of {tuple(REBALANCE_ORDERS)}, got {out['order']!r}")
    for key in ("initialize", "wrap_aux"):
        if not isinstance(out[key], bool):
            raise ValueError(f"TrainConfig.rebalance[{key!r}] must be True or False, got {out[key]!r}")
    weights = out["weights"]
    if weights is not None:
        if not isinstance(weights, dict) or not weights:
            raise ValueError(f"TrainConfig.rebalance['weights'] must be None or a non-empty dict {{term: weight}}, "
                             f"got {weights!r}")
        for k, v in weights.items():
            if not isinstance(k, str):
                raise ValueError(f"TrainConfig.rebalance['weights']: term names must be strings, got {k!r}")
            if not _is_number(v) or not math.isfinite(v) or v < 0:
                raise ValueError(f"TrainConfig.rebalance['weights'][{k!r}] must be a finite number >= 0, got {v!r}")
        if sum(weights.values()) <= 0:
            raise ValueError(f"TrainConfig.rebalance['weights'] must not all be 0, got {weights!r}")
        out["weights"] = {k: float(v) for k, v in weights.items()}
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bool(cfg: TrainConfig, name: str) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, bool):
        hint = " (a string is not a bool: 'False' and 'no' would be taken as true)" if isinstance(value, str) else ""
        raise ValueError(f"TrainConfig.{name} must be True or False, got {value!r}{hint}")


def _validate_speed(cfg: TrainConfig) -> None:
    """The speed switches: types only; what the machine can honour is decided (with a warning) in ``fit``."""
    _choice(cfg, "cpu_amp", _CPU_AMP)
    for name in ("channels_last", "fused_optimizer", "persistent_workers", "compile"):
        if not isinstance(getattr(cfg, name), bool):
            raise ValueError(f"TrainConfig.{name} must be True or False, got {getattr(cfg, name)!r}")


def _positive_int(cfg: TrainConfig, name: str) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}")


def _positive_float(cfg: TrainConfig, name: str) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"TrainConfig.{name} must be a positive finite number, got {value!r}")


def _nonnegative_float(cfg: TrainConfig, name: str) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"TrainConfig.{name} must be a non-negative finite number, got {value!r}")


def _choice(cfg: TrainConfig, name: str, choices: tuple) -> None:
    value = getattr(cfg, name)
    if not any(value is c or (isinstance(value, str) and value == c) for c in choices):
        raise ValueError(f"TrainConfig.{name} must be one of {choices}, got {value!r}")
