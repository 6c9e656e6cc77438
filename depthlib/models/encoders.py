"""Encoders with one interface: a list of five feature maps at strides 2, 4, 8, 16 and 32.

Every encoder is an :class:`Encoder`: ``encoder(x)`` with ``x: (B, 3, H, W)`` returns
``[f2, f4, f8, f16, f32]`` where ``f_s: (B, encoder.channels[i], H/s, W/s)``. The taps are taken with
torchvision's :func:`~torchvision.models.feature_extraction.create_feature_extractor` (torchvision backbones),
timm's ``features_only=True`` (timm backbones) or the same tool on our own MobileNet v1 -- never by hand-written
slicing of ``children()``.

Weights (``weights=``):

- ``None``: random initialisation (the backbone's own init).
- ``"imagenet"``: through torchvision's weight enums or timm's pretrained configs. A populated cache works
  offline; otherwise the download host is probed with a 3 s timeout and an unreachable host raises a
  :class:`RuntimeError` at once that names the local-file option.
- a path (``str`` or :class:`os.PathLike`): a state dict loaded with ``torch.load(..., weights_only=True)``
  into the *full* classification network before the taps are taken, so a plain ``torchvision.models.X()``
  or ``timm.create_model(X)`` state dict fits. Dicts wrapping it under ``"state_dict"`` or ``"model"`` (the
  layout of ``../shared/weights/mobilenet_v1_imagenet_from_tflite.pth``) are unwrapped. Only classifier keys may
  be missing or extra; anything else raises a :class:`ValueError` naming the keys.

Loading the converted TFLite weights of ``../shared/weights`` (README there)::

    create_encoder("mobilenet_v1", weights="../shared/weights/mobilenet_v1_imagenet_from_tflite.pth")
    create_encoder("mobilenet_v2", weights="../shared/weights/mobilenet_v2_imagenet_from_tflite.pth")

Both expect torchvision's ImageNet normalisation (``depthlib.data.transforms.ImageNetNormalize``).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import socket
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from depthlib.models.mobilenet_v1 import MobileNetV1

__all__ = ["Encoder", "create_encoder", "list_encoders", "load_state_dict_file", "ENCODER_ALIASES"]

STRIDES: tuple[int, ...] = (2, 4, 8, 16, 32)

# Keys a classification checkpoint may carry that an encoder does not need (and vice versa).
_CLASSIFIER_PREFIXES = ("fc.", "classifier.", "conv_head.", "bn2.", "head.")


@dataclasses.dataclass(frozen=True)
class _Spec:
    source: str  # "torchvision", "timm" or "own"
    arch: str  # torchvision/timm architecture name
    return_nodes: tuple[str, ...] = ()  # torchvision/own: graph nodes at strides 2..32
    kwargs: tuple[tuple[str, Any], ...] = ()
    doc: str = ""


_SPECS: dict[str, _Spec] = {
    "mobilenet_v1": _Spec(
        "own", "mobilenet_v1", ("model.1", "model.3", "model.5", "model.11", "model.13"),
        doc="MobileNet v1 1.0, FastDepth's 14 layers (ReLU6); 1024 channels at stride 32"),
    "mobilenet_v2": _Spec(
        "torchvision", "mobilenet_v2", ("features.1", "features.3", "features.6", "features.13", "features.18"),
        doc="torchvision MobileNetV2 1.0 incl. the final 1x1 conv to 1280 (sagar2021, Table 1)"),
    "mobilenet_v3_small": _Spec(
        "torchvision", "mobilenet_v3_small", ("features.0", "features.1", "features.3", "features.8", "features.12"),
        doc="torchvision MobileNetV3-Small 1.0 (576 channels at stride 32)"),
    "mobilenet_v3_large": _Spec(
        "torchvision", "mobilenet_v3_large", ("features.1", "features.3", "features.6", "features.12", "features.16"),
        doc="torchvision MobileNetV3-Large (960 channels at stride 32); accepts width_mult"),
    "efficientnet_b0": _Spec(
        "torchvision", "efficientnet_b0", ("features.1", "features.2", "features.3", "features.5", "features.8"),
        doc="torchvision EfficientNet-B0 incl. the final 1x1 conv to 1280"),
    "shufflenet_v2": _Spec(
        "torchvision", "shufflenet_v2_x1_0", ("conv1", "maxpool", "stage2", "stage3", "conv5"),
        doc="torchvision ShuffleNetV2 x1.0 (1024 channels at stride 32)"),
    "mnasnet": _Spec(
        "torchvision", "mnasnet1_0", ("layers.7", "layers.8", "layers.9", "layers.11", "layers.16"),
        doc="torchvision MNASNet 1.0 incl. the final 1x1 conv to 1280"),
    "resnet18": _Spec(
        "torchvision", "resnet18", ("relu", "layer1", "layer2", "layer3", "layer4"), doc="torchvision ResNet-18"),
    "resnet50": _Spec(
        "torchvision", "resnet50", ("relu", "layer1", "layer2", "layer3", "layer4"), doc="torchvision ResNet-50"),
    "ghostnet": _Spec("timm", "ghostnet_100", doc="timm GhostNet 1.0"),
    "mixnet_s": _Spec("timm", "mixnet_s", doc="timm MixNet-S"),
    "mixnet_m": _Spec("timm", "mixnet_m", doc="timm MixNet-M"),
    "efficientnet_lite0": _Spec("timm", "tf_efficientnet_lite0", doc="timm EfficientNet-Lite0 (TF port, 'same' padding)"),
    "efficientnet_lite3": _Spec("timm", "tf_efficientnet_lite3", doc="timm EfficientNet-Lite3 (TF port), MiDaS small's backbone"),
    "efficientnet_es": _Spec("timm", "efficientnet_es", doc="timm EfficientNet-EdgeTPU-S (yucel2021's 'EfficientNet ES')"),
}

ENCODER_ALIASES: dict[str, str] = {
    "mobilenet": "mobilenet_v1",
    "mbv1": "mobilenet_v1",
    "mbv2": "mobilenet_v2",
    "mbv3_small": "mobilenet_v3_small",
    "mbv3_large": "mobilenet_v3_large",
    "shufflenet": "shufflenet_v2",
    "effnet_es": "efficientnet_es",
}


# ImageNet weights converted from Google's TFLite releases (see ../shared/weights/README.md): file names by
# encoder. They load by path with ``create_encoder(name, weights=path)`` and expect ImageNet normalisation.
CONVERTED_IMAGENET_WEIGHTS: dict[str, str] = {
    "mobilenet_v1": "mobilenet_v1_imagenet_from_tflite.pth",
    "mobilenet_v2": "mobilenet_v2_imagenet_from_tflite.pth",
}


def converted_weights_name(name: str) -> str | None:
    """File name of the converted ImageNet weights of encoder ``name`` (aliases accepted), or None."""
    return CONVERTED_IMAGENET_WEIGHTS.get(_resolve(name))


class Encoder(nn.Module):
    """A backbone returning features at strides 2, 4, 8, 16, 32.

    Attributes:
        name: the encoder's registry name.
        channels: channels of the five feature maps.
        strides: ``(2, 4, 8, 16, 32)``.

    Shape:
        - Input: ``(B, 3, H, W)`` with ``H`` and ``W`` multiples of 32.
        - Output: list of five tensors ``(B, channels[i], H / strides[i], W / strides[i])``.
    """

    def __init__(self, name: str, body: nn.Module, head: nn.Module | None = None) -> None:
        super().__init__()
        self.name = name
        self.body = body
        self.head = head
        self.strides = STRIDES
        self.channels = tuple(_probe_channels(self))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.body(x)
        feats = list(out.values()) if isinstance(out, dict) else list(out)
        if self.head is not None:
            feats[-1] = self.head(feats[-1])
        return feats


def list_encoders() -> list[str]:
    """Names accepted by :func:`create_encoder` (aliases in ``ENCODER_ALIASES`` are accepted too)."""
    return sorted(_SPECS)


def _resolve(name: str) -> str:
    key = ENCODER_ALIASES.get(name, name)
    if key not in _SPECS:
        raise ValueError(f"unknown encoder {name!r}; valid encoders: {', '.join(list_encoders())} "
                         f"(aliases: {', '.join(sorted(ENCODER_ALIASES))})")
    return key


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict from ``path`` with ``weights_only=True``, unwrapping ``state_dict``/``model`` wrappers.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file holds no ``str -> Tensor`` mapping.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{str(path)!r} does not hold a state dict (a mapping of names to tensors)")
    # DataParallel/DDP checkpoints prefix every key with "module.".
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` allowing only classifier keys to be missing or extra."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(_CLASSIFIER_PREFIXES)]
    unexpected = [k for k in state if k not in own and not k.startswith(_CLASSIFIER_PREFIXES)]
    shape = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shape:
        raise ValueError(
            f"weights {source!r} do not fit {type(module).__name__}: "
            f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''} ({len(missing)}), "
            f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''} ({len(unexpected)}), "
            f"shape mismatches {shape[:8]} ({len(shape)})")
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def _reachable(host: str, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_error(name: str, where: str) -> RuntimeError:
    return RuntimeError(
        f"ImageNet weights for encoder {name!r} are not cached ({where}) and cannot be downloaded (no internet). "
        f"Pass a local state dict instead: weights='/path/to/weights.pth' (create_model) or "
        f"weights='/path/to/weights.pth' (create_encoder); ../shared/weights holds MobileNet v1/v2 ImageNet weights.")


def _torchvision_imagenet_state(name: str, arch: str) -> dict[str, torch.Tensor]:
    from torchvision.models import get_model_weights

    weights = get_model_weights(arch).DEFAULT
    cached = pathlib.Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not cached.is_file() and not _reachable("download.pytorch.org"):
        raise _offline_error(name, str(cached))
    return weights.get_state_dict(progress=False, weights_only=True)


def _timm_pretrained_overlay(name: str, arch: str) -> dict[str, Any]:
    """timm pretrained kwargs that load from the local Hugging Face cache when possible.

    timm would otherwise retry the Hub for ~45 s offline, so a cached file is passed explicitly and a missing
    one with an unreachable Hub fails at once.
    """
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is not None and cfg.hf_hub_id:
        for filename in ("model.safetensors", "pytorch_model.bin"):
            hit = try_to_load_from_cache(repo_id=cfg.hf_hub_id, filename=filename)
            if isinstance(hit, str):
                return {"pretrained": True, "pretrained_cfg_overlay": {"file": hit, "hf_hub_id": None}}
    if not _reachable("huggingface.co"):
        raise _offline_error(name, f"Hugging Face cache, repo {cfg.hf_hub_id if cfg else arch!r}")
    return {"pretrained": True}


def _extractor(model: nn.Module, nodes: Sequence[str]) -> nn.Module:
    return create_feature_extractor(model, return_nodes={n: str(i) for i, n in enumerate(nodes)})


@torch.no_grad()
def _probe_channels(encoder: Encoder) -> list[int]:
    was_training = encoder.training
    encoder.eval()  # a 2x2 map at stride 32 is too small for train-mode BN statistics
    feats = encoder(torch.zeros(1, 3, 64, 64))
    encoder.train(was_training)
    sizes = [f.shape[-1] for f in feats]
    if sizes != [64 // s for s in STRIDES]:
        raise RuntimeError(f"encoder taps give widths {sizes} for a 64-px input, expected strides {STRIDES}")
    return [f.shape[1] for f in feats]


def _torchvision_head(name: str, model: nn.Module) -> nn.Module | None:
    """The 1x1 'head' conv a classifier applies after pooling, applied to the stride-32 map instead."""
    if name.startswith("mobilenet_v3"):
        linear = model.classifier[0]
        conv = nn.Conv2d(linear.in_features, linear.out_features, 1)
        with torch.no_grad():
            conv.weight.copy_(linear.weight[:, :, None, None])
            conv.bias.copy_(linear.bias)
        return nn.Sequential(conv, nn.Hardswish())
    return None


def _timm_head(model: nn.Module) -> nn.Module | None:
    if hasattr(model, "bn2") and hasattr(model, "conv_head"):  # EfficientNet, MixNet, Lite (timm EfficientNet class)
        return nn.Sequential(model.conv_head, model.bn2)
    if type(model).__name__ == "GhostNet":
        # blocks[9] (160 -> 960) is not a timm feature tap; conv_head (960 -> 1280) follows pooling in GhostNet.
        return nn.Sequential(model.blocks[len(model.blocks) - 1], model.conv_head, model.act2)
    return None


def create_encoder(name: str, weights: str | os.PathLike | None = None, *, head: bool = False,
                   **kwargs: Any) -> Encoder:
    """Build encoder ``name`` (see :func:`list_encoders`) with ``weights`` (``None``, ``"imagenet"`` or a path).

    Args:
        name: encoder name or alias.
        weights: ``None`` (random init), ``"imagenet"`` or a state dict path (see the module docstring).
        head: also apply the classifier's 1x1 expansion conv ("conv_head", e.g. 200 -> 1536 in MixNet, 960 -> 1280
            in MobileNetV3) to the stride-32 map. yucel2021's encoder parameter counts (Table 1) are only reached
            with it. A no-op for encoders whose taps already end at their last conv (MobileNet v1/v2,
            EfficientNet-B0, MNASNet, ShuffleNetV2, ResNets).
        kwargs: passed to the backbone constructor (e.g. ``width_mult=0.5`` for torchvision MobileNetV3).

    Returns:
        an :class:`Encoder`; ``encoder(x: (B, 3, H, W))`` -> five maps ``(B, C_i, H/s_i, W/s_i)``, ``s_i = 2..32``.
    """
    key = _resolve(name)
    spec = _SPECS[key]
    kwargs = {**dict(spec.kwargs), **kwargs}
    is_path = weights is not None and weights != "imagenet"
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be None, 'imagenet' or a path, got {weights!r}")
    state = load_state_dict_file(weights) if is_path else None

    head_module = None
    if spec.source == "own":
        if weights == "imagenet":
            raise RuntimeError(
                "no public ImageNet checkpoint in FastDepth's MobileNet v1 layout can be downloaded: pass "
                "weights='../shared/weights/mobilenet_v1_imagenet_from_tflite.pth' (converted from TFLite; README there)")
        model = MobileNetV1(num_classes=0, **kwargs)
        if state is not None:
            _load_into(model, state, str(weights))
        body = _extractor(model, spec.return_nodes)
    elif spec.source == "torchvision":
        import torchvision

        model = torchvision.models.get_model(spec.arch, weights=None, **kwargs)
        if weights == "imagenet":
            state = _torchvision_imagenet_state(key, spec.arch)
            try:
                model.load_state_dict(state)
            except RuntimeError as err:
                raise ValueError(f"torchvision's ImageNet weights for {spec.arch} do not fit encoder {key!r} built "
                                 f"with {kwargs} (they exist for the default configuration only): {err}") from err
        elif state is not None:
            _load_into(model, state, str(weights))
        body = _extractor(model, spec.return_nodes)
        if head:
            head_module = _torchvision_head(key, model)
    else:
        import timm
        from timm.models import FeatureListNet

        extra = _timm_pretrained_overlay(key, spec.arch) if weights == "imagenet" else {}
        model = timm.create_model(spec.arch, **extra, **kwargs)
        if state is not None:
            _load_into(model, state, str(weights))
        if head:
            head_module = _timm_head(model)
        # Wrapping the full (loaded) model keeps one code path for every weight source; it is what
        # timm.create_model(features_only=True) does internally.
        body = FeatureListNet(model, out_indices=(0, 1, 2, 3, 4), flatten_sequential=True)
    return Encoder(key, body, head_module)


def describe_encoders() -> dict[str, str]:
    """One-line description per encoder name (for docs and the book)."""
    return {k: v.doc for k, v in sorted(_SPECS.items())}


