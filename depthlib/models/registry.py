"""The model registry (timm style) and the :class:`DepthNet` wrapper every preset returns."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DepthNet", "register_model", "create_model", "list_models", "model_doc"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


class DepthNet(nn.Module):
    """Encoder + decoder predicting one depth channel at the input resolution.

    Args:
        encoder: returns five maps at strides 2..32 (:class:`depthlib.models.encoders.Encoder`).
        decoder: maps them to ``(depth, aux)`` (see :mod:`depthlib.models.decoders`).
        name: the preset name (used in error messages).
        input_multiple: the spatial multiple the input must have.
        default_input_size: ``(H, W)`` of the paper the preset reproduces.
        output_kind: ``"metric"`` (metres) or ``"inverse_relative"`` (MiDaS: relative inverse depth).
        internal_size: when set, the input is resized to this ``(H, W)`` first and the prediction resized back
            (seed 002's fast-downsampling resize layers, both inside the exported graph as in the paper's TFLite).

    Shape:
        - Input: ``x: (B, 3, H, W)``, float, ImageNet-normalised by the data pipeline, ``H, W`` multiples of
          ``input_multiple``.
        - Output: ``(B, 1, H, W)``; in training mode with intermediate heads a dict
          ``{"depth": (B, 1, H, W), "aux": [(B, 1, h_i, w_i), ...]}``.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, *, name: str, input_multiple: int = 32,
                 default_input_size: tuple[int, int] = (224, 224), output_kind: str = "metric",
                 internal_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        if output_kind not in ("metric", "inverse_relative"):
            raise ValueError(f"output_kind={output_kind!r}; valid: 'metric', 'inverse_relative'")
        self.encoder = encoder
        self.decoder = decoder
        self.name = name
        self.input_multiple = int(input_multiple)
        self.default_input_size = tuple(default_input_size)
        self.output_kind = output_kind
        self.internal_size = tuple(internal_size) if internal_size is not None else None

    @property
    def has_aux_heads(self) -> bool:
        return len(getattr(self.decoder, "aux_heads", ())) > 0

    def remove_aux_heads(self) -> "DepthNet":
        """Delete intermediate prediction heads (before export or deployment); returns ``self``."""
        if hasattr(self.decoder, "remove_aux_heads"):
            self.decoder.remove_aux_heads()
        return self

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
        if self.internal_size is not None and size != self.internal_size:
            x = F.interpolate(x, size=self.internal_size, mode="bilinear", align_corners=False)
        depth, aux = self.decoder(self.encoder(x))
        if tuple(depth.shape[-2:]) != size:
            depth = F.interpolate(depth, size=size, mode="bilinear", align_corners=False)
        if self.training and aux:
            return {"depth": depth, "aux": aux}
        return depth


def register_model(name: str | Callable[..., nn.Module] | None = None):
    """Register a preset factory, timm style: ``@register_model`` or ``@register_model("name-with-dashes")``.

    The factory is called as ``fn(pretrained_encoder=None, **overrides)`` and its docstring is the preset's doc.
    """

    def deco(fn: Callable[..., nn.Module], key: str | None = None) -> Callable[..., nn.Module]:
        key = key or fn.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is already registered")
        _MODELS[key] = fn
        return fn

    if callable(name):
        return deco(name)
    return lambda fn: deco(fn, name)


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


def create_model(name: str, *, pretrained_encoder: str | os.PathLike | None = None, **overrides: Any) -> nn.Module:
    """Build preset ``name`` (see :func:`list_models`).

    Args:
        name: preset name; an unknown name raises a ValueError listing the valid ones.
        pretrained_encoder: ``None`` (random init; decoders are always Kaiming-initialised), ``"imagenet"``
            (torchvision/timm weight API, fails at once offline without a cache) or a path to a state dict.
        overrides: preset keyword arguments (see each preset's docstring), e.g.
            ``create_model("fastdepth", encoder="resnet18", decoder="upproj", skip="concat")``.

    Returns:
        a :class:`DepthNet`: ``(B, 3, H, W) -> (B, 1, H, W)``.
    """
    fn = _factory(name)
    try:
        model = fn(pretrained_encoder=pretrained_encoder, **overrides)
    except TypeError as err:
        if "unexpected keyword argument" in str(err):
            raise ValueError(f"model {name!r} does not take {err}; see depthlib.models.model_doc({name!r})") from err
        raise
    # What the network is, for checkpoints: fastdepth-noskip and fastdepth share every key and shape, so
    # only the preset and its overrides tell a checkpoint of one from the other (see depthlib.train.load_checkpoint).
    # A weights file is recorded by its name: the same file in another folder or machine is the same start.
    weights = None if pretrained_encoder is None else os.fspath(pretrained_encoder)
    if weights is not None and weights != "imagenet":
        weights = os.path.basename(weights)
    model.preset_config = {"preset": name, "overrides": dict(overrides), "weights": weights}
    return model
