"""The model registry (timm style) and the :class:`DepthNet` wrapper every preset returns."""

from __future__ import annotations

import fnmatch
import math
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DepthNet", "register_model", "create_model", "list_models", "model_doc", "preset_encoder"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


class DepthNet(nn.Module):
    """Encoder + decoder predicting one depth channel at the input resolution.

    Args:
        encoder: returns five maps at strides 2..32 (:class:`depthlib.models.encoders.Encoder`).
        decoder: maps them to ``(depth, aux)`` (see :mod:`depthlib.models.decoders`).
        name: the preset name (used in error messages).
        input_multiple: the spatial multiple the input must have.
        default_input_size: ``(H, W)`` of the paper the preset reproduces.
        output_kind: ``"metric"`` (metres), ``"inverse_relative"`` (MiDaS: relative inverse depth) or
            ``"relative"`` (depth up to an unknown monotonic map, larger = farther: networks trained on ordinal
            pairs, such as ``chen2016-hourglass``).
        internal_size: when set, the input is resized to this ``(H, W)`` first and the prediction resized back
            (zhang2021's fast-downsampling resize layers, both inside the exported graph as in the paper's TFLite).
        normalization: ``{"mean": (3,), "std": (3,)}`` applied to the input first, or ``None`` (the input as it
            is). :func:`create_model` sets it from the weights entry; it is stored in the state dict
            (buffers ``input_mean``, ``input_std``), so a saved and reloaded model normalises as it was trained.

    Attributes:
        normalization: the recorded preprocessing (``None``: none), read by training, evaluation, prediction
            and export alike: data pipelines never normalise, so an image is normalised exactly once.

    Shape:
        - Input: ``x: (B, 3, H, W)``, float RGB in [0, 1] (never pre-normalised), ``H, W`` multiples of
          ``input_multiple``.
        - Output: ``(B, 1, H, W)``; in training mode with intermediate heads a dict
          ``{"depth": (B, 1, H, W), "aux": [(B, 1, h_i, w_i), ...]}``.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, *, name: str, input_multiple: int = 32,
                 default_input_size: tuple[int, int] = (224, 224), output_kind: str = "metric",
                 internal_size: tuple[int, int] | None = None,
                 normalization: dict[str, Any] | None = None) -> None:
        super().__init__()
        if output_kind not in ("metric", "inverse_relative", "relative"):
            raise ValueError(f"output_kind={output_kind!r}; valid: 'metric', 'inverse_relative', 'relative'")
        self.encoder = encoder
        self.decoder = decoder
        self.name = name
        self.input_multiple = int(input_multiple)
        self.default_input_size = tuple(default_input_size)
        self.output_kind = output_kind
        self.internal_size = tuple(internal_size) if internal_size is not None else None
        self.register_buffer("input_mean", torch.zeros(1, 3, 1, 1))
        self.register_buffer("input_std", torch.ones(1, 3, 1, 1))
        self.set_normalization(normalization)

    def set_normalization(self, normalization: dict[str, Any] | None) -> "DepthNet":
        """Record the input normalisation (``{"mean", "std"}`` of 3 values each, or ``None``); returns ``self``."""
        if normalization is None:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        else:
            if set(normalization) != {"mean", "std"} or len(normalization["mean"]) != 3 or len(normalization["std"]) != 3:
                raise ValueError(f"{self.name}: normalization must be None or {{'mean': 3 values, 'std': 3 values}}, "
                                 f"got {normalization!r}")
            mean, std = tuple(normalization["mean"]), tuple(normalization["std"])
            if min(std) <= 0:
                raise ValueError(f"{self.name}: normalization std must be positive, got {std}")
        with torch.no_grad():
            self.input_mean.copy_(torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.input_std.copy_(torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        return self

    @property
    def normalization(self) -> dict[str, tuple[float, ...]] | None:
        mean = tuple(round(float(v), 6) for v in self.input_mean.flatten())
        std = tuple(round(float(v), 6) for v in self.input_std.flatten())
        if mean == (0.0, 0.0, 0.0) and std == (1.0, 1.0, 1.0):
            return None
        return {"mean": mean, "std": std}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # checkpoints written before the normalisation was recorded keep the model's own
        for name in ("input_mean", "input_std"):
            state_dict.setdefault(prefix + name, getattr(self, name).detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def has_aux_heads(self) -> bool:
        return len(getattr(self.decoder, "aux_heads", ())) > 0

    def remove_aux_heads(self) -> "DepthNet":
        """Delete intermediate prediction heads (before export or deployment); returns ``self``."""
        if hasattr(self.decoder, "remove_aux_heads"):
            self.decoder.remove_aux_heads()
        return self

    def init_output_bias(self, value: float, weight_scale: float = 1.0) -> bool:
        """Set the bias of the decoder's last layer before its final ReLU to ``value`` (metres), so that the
        untrained network starts near the training data's depth instead of ``ReLU(N(0, 1))``; ``weight_scale``
        also multiplies that layer's weight (a BatchNorm's scale, or the last convolution's kernel), so that a
        value below 1 starts every pixel close to ``value`` (the usual small initialisation of an output layer).

        FastDepth's head (1x1 conv, BN, ReLU) starts with BN's shift at 0: about half of its pixels predict 0 m,
        and a few dozen optimiser steps move the shift by hundredths of a metre, so a briefly fitted network has
        no metric scale (its ReLU-clipped output stays near 0 m). Starting at the mean depth of the data is the
        usual remedy (initialise the last bias at the target's mean).

        Returns:
            True when the head was set; False for a decoder without such a head (it is left unchanged).
        """
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{self.name}: init_output_bias value must be a positive finite depth in metres, got {value!r}")
        if (isinstance(weight_scale, bool) or not isinstance(weight_scale, (int, float)) or not math.isfinite(weight_scale)
                or weight_scale <= 0):
            raise ValueError(f"{self.name}: init_output_bias weight_scale must be a positive finite number, got {weight_scale!r}")
        head = getattr(self.decoder, "head", None)
        if not isinstance(head, nn.Sequential) or not isinstance(head[-1], nn.ReLU):
            return False
        last = next((m for m in reversed(list(head)[:-1]) if getattr(m, "bias", None) is not None), None)
        if last is None:
            return False
        with torch.no_grad():
            last.bias.fill_(float(value))
            if weight_scale != 1.0 and getattr(last, "weight", None) is not None:
                last.weight.mul_(float(weight_scale))
        return True

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the expected layout or multiple if ``x`` cannot be taken."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name}: expected input of shape (B, 3, H, W), got {tuple(x.shape)}")
        h, w = int(x.shape[-2]), int(x.shape[-1])
        m = self.input_multiple
        if h % m or w % m:
            raise ValueError(
                f"{self.name}: input size {h}x{w} is not a multiple of {m}; this architecture needs H and W "
                f"divisible by {m} (e.g. {h - h % m or m}x{w - w % m or m}; paper size {self.default_input_size})")

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, Any]:
        self.check_input(x)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        x = (x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)
        if self.internal_size is not None and size != self.internal_size:
            x = F.interpolate(x, size=self.internal_size, mode="bilinear", align_corners=False)
        depth, aux = self.decoder(self.encoder(x))
        if tuple(depth.shape[-2:]) != size:
            depth = F.interpolate(depth, size=size, mode="bilinear", align_corners=False)
        if self.training and aux:
            return {"depth": depth, "aux": aux}
        return depth


def register_model(name: str | Callable[..., nn.Module] | None = None, *, encoder: str | None = None):
    """Register a preset factory, timm style: ``@register_model`` or ``@register_model("name-with-dashes")``.

    The factory is called as ``fn(pretrained_encoder=<None, a path or "imagenet">, **overrides)`` and its docstring
    is the preset's doc. ``encoder``: the encoder the preset builds, so that ``weights="auto"`` resolves without
    building the model (a factory with an ``encoder`` keyword declares it through that keyword's default).
    """

    def deco(fn: Callable[..., nn.Module], key: str | None = None) -> Callable[..., nn.Module]:
        key = key or fn.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is already registered")
        if encoder is not None:
            fn.encoder = encoder
        _MODELS[key] = fn
        return fn

    if callable(name):
        return deco(name)
    return lambda fn: deco(fn, name)


def preset_encoder(name: str, **overrides: Any) -> str | None:
    """The encoder preset ``name`` builds with ``overrides`` (``None`` when the preset does not declare it)."""
    import inspect

    fn = _factory(name)
    if "encoder" in overrides:
        return str(overrides["encoder"])
    param = inspect.signature(fn).parameters.get("encoder")
    if param is not None and param.default is not inspect.Parameter.empty:
        return str(param.default)
    return getattr(fn, "encoder", None)


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted preset names, optionally filtered by a shell-style ``pattern`` (``"mbv2-*"``)."""
    _ensure_presets()
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def model_doc(name: str) -> str:
    """The docstring of preset ``name`` (paper, table, resolution)."""
    return _factory(name).__doc__ or ""


def _ensure_presets() -> None:
    import depthlib.models.presets  # noqa: F401  (registers the presets on import)


def _factory(name: str) -> Callable[..., nn.Module]:
    _ensure_presets()
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


_FROM_WEIGHTS = "weights"


def _normalization_arg(value: Any) -> dict[str, tuple[float, ...]] | None:
    from depthlib.models.weights import IMAGENET_MEAN, IMAGENET_STD

    if value in (None, "none"):
        return None
    if value == "imagenet":
        return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    if isinstance(value, dict) and set(value) == {"mean", "std"}:
        return {"mean": tuple(float(v) for v in value["mean"]), "std": tuple(float(v) for v in value["std"])}
    raise ValueError(f"normalization must be 'weights' (the weights entry's), 'imagenet', 'none'/None or "
                     f"{{'mean': ..., 'std': ...}}; got {value!r}")


def create_model(name: str, *, weights: Any = None, normalization: Any = _FROM_WEIGHTS,
                 **overrides: Any) -> nn.Module:
    """Build preset ``name`` (see :func:`list_models`) with encoder ``weights``.

    Args:
        name: preset name; an unknown name raises a ValueError listing the valid ones.
        weights: the encoder's initialisation (decoders are always Kaiming-initialised): ``None`` (random),
            a :class:`~depthlib.models.weights.WeightsEntry` or its name (:func:`list_weights`), ``"auto"``
            (the best weights available locally, else random), ``"imagenet"`` (the converted file when present,
            else torchvision's/timm's, failing at once offline without a cache) or a path to a state dict.
            See :func:`depthlib.models.weights.resolve_weights`.
        normalization: the input preprocessing the model records and applies first in ``forward``:
            ``"weights"`` (default: what the weights entry expects; none for random init), ``"imagenet"``,
            ``"none"`` or ``{"mean": ..., "std": ...}``. An explicit value that disagrees with the weights
            entry's raises a ValueError naming both.
        overrides: preset keyword arguments (see each preset's docstring), e.g.
            ``create_model("fastdepth", encoder="resnet18", decoder="upproj", skip="concat")``.

    Returns:
        a :class:`DepthNet`: ``(B, 3, H, W)`` in [0, 1] ``-> (B, 1, H, W)``; ``model.weights`` is the resolved
        entry (or ``None``) and ``model.normalization`` the recorded preprocessing.
    """
    from depthlib.models.weights import resolve_weights

    if "pretrained_encoder" in overrides:
        raise ValueError("create_model: pretrained_encoder= is now weights= (None, a weights name, 'auto', "
                         "'imagenet' or a path)")
    fn = _factory(name)
    entry = None
    if weights is not None and weights != "none":
        encoder = preset_encoder(name, **overrides)
        if encoder is None:
            raise ValueError(f"model {name!r} does not declare its encoder (register_model(..., encoder=...)), "
                             f"so weights={weights!r} cannot be resolved")
        entry = resolve_weights(encoder, weights)
    expected = entry.transforms() if entry is not None else None
    if normalization == _FROM_WEIGHTS:
        norm = expected
    else:
        norm = _normalization_arg(normalization)
        if entry is not None and norm != expected:
            raise ValueError(f"create_model({name!r}): weights {entry.name!r} expect input normalisation "
                             f"{expected}, but normalization={normalization!r} asks for {norm}; drop the argument "
                             "to use the weights' own")
    try:
        model = fn(pretrained_encoder=None if entry is None else entry.encoder_argument(), **overrides)
    except TypeError as err:
        if "unexpected keyword argument" in str(err):
            raise ValueError(f"model {name!r} does not take {err}; see depthlib.models.model_doc({name!r})") from err
        raise
    if isinstance(model, DepthNet):
        model.set_normalization(norm)
    elif norm is not None:
        raise ValueError(f"model {name!r} is not a DepthNet and cannot record normalization {norm}")
    # What the network is, for checkpoints: fastdepth-noskip and fastdepth share every key and shape, so
    # only the preset and its overrides tell a checkpoint of one from the other (see depthlib.train.load_checkpoint).
    # Weights are recorded by their entry's name: the same file in another folder or machine is the same start.
    model.preset_config = {"preset": name, "overrides": dict(overrides),
                           "weights": None if entry is None else entry.name}
    model.weights = entry
    return model
