"""Encoders with one interface: a list of five feature maps at strides 2, 4, 8, 16 and 32.

Every encoder is an :class:`Encoder`: ``encoder(x)`` with ``x: (B, 3, H, W)`` returns
``[f2, f4, f8, f16, f32]`` where ``f_s: (B, encoder.channels[i], H/s, W/s)``. The taps are taken with
torchvision's :func:`~torchvision.models.feature_extraction.create_feature_extractor` (torchvision backbones),
timm's ``features_only=True`` (timm backbones), timm's ``forward_intermediates`` (Vision Transformers, see below)
or the same tool on our own MobileNet v1 -- never by hand-written slicing of ``children()``.

Vision Transformers (``vit_tiny``, ``vit_small``, ``vit_base``, ``vit_large``; source ``"timm-vit"``) yield tokens
at stride 16 only. :class:`ViTReassemble` turns them into the five maps the way DPT does (Ranftl et al., "Vision
Transformers for Dense Prediction", ICCV 2021): the tokens of four evenly spaced blocks (5, 11, 17, 23 of
ViT-Large's 24, DPT-Large's taps), class token dropped (DPT's ``"ignore"`` readout), reshaped to
``(B, D, H/16, W/16)``, projected by 1x1 convs and resampled to strides 4, 8, 16, 32; a small conv stem on the
image gives the stride-2 map, which DPT has none of. The ViT runs with timm's ``dynamic_img_size=True``, so any
``H, W`` multiple of 32 works (the positional embeddings are interpolated). ViT-Large (``vit_large_patch16_384``,
ImageNet-21k pretrained, fine-tuned on ImageNet-1k) is DPT-Large's backbone and the MAI-2021 winner's teacher
backbone (zhang2021: "We choose the ViT-Large as the teacher's backbone").

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

For a ViT, ``"imagenet"`` and a path initialise the ViT only (for a path: a ``timm.create_model(arch)`` state
dict; a ``pos_embed`` of another grid, e.g. a 224-px checkpoint for a 384-px spec, is resampled first, as timm
does). The reassembly layers and the stride-2 stem are new and always start from PyTorch's default random init.

Loading the converted TFLite weights of ``../shared/weights`` (README there)::

    create_encoder("mobilenet_v1", weights="../shared/weights/mobilenet_v1_imagenet_from_tflite.pth")
    create_encoder("mobilenet_v2", weights="../shared/weights/mobilenet_v2_imagenet_from_tflite.pth")

Both expect torchvision's ImageNet normalisation (``depthlib.data.transforms.ImageNetNormalize``). The timm
ViTs' ImageNet weights expect mean = std = (0.5, 0.5, 0.5) instead (their timm pretrained config); their weights
entries (:mod:`depthlib.models.weights`) record it, so ``create_model(..., weights="imagenet")`` normalises right.
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

__all__ = ["Encoder", "ViTReassemble", "create_encoder", "list_encoders", "load_state_dict_file",
           "ENCODER_ALIASES", "vit_tap_blocks", "vit_widths"]

STRIDES: tuple[int, ...] = (2, 4, 8, 16, 32)

# Keys a classification checkpoint may carry that an encoder does not need (and vice versa).
_CLASSIFIER_PREFIXES = ("fc.", "classifier.", "conv_head.", "bn2.", "head.")


@dataclasses.dataclass(frozen=True)
class _Spec:
    source: str  # "torchvision", "timm", "timm-vit" (a ViT + DPT reassembly) or "own"
    arch: str  # torchvision/timm architecture name
    return_nodes: tuple[str, ...] = ()  # torchvision/own: graph nodes at strides 2..32
    kwargs: tuple[tuple[str, Any], ...] = ()
    doc: str = ""
    width_archs: tuple[tuple[float, str], ...] = ()  # timm: ``width=`` picks one of these named configurations


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
    "ghostnet": _Spec("timm", "ghostnet_100", doc="timm GhostNet 1.0 (width=0.5 / 1.3: ghostnet_050 / ghostnet_130)",
                      width_archs=((0.5, "ghostnet_050"), (1.0, "ghostnet_100"), (1.3, "ghostnet_130"))),
    "mixnet_s": _Spec("timm", "mixnet_s", doc="timm MixNet-S"),
    "mixnet_m": _Spec("timm", "mixnet_m", doc="timm MixNet-M"),
    "efficientnet_lite0": _Spec("timm", "tf_efficientnet_lite0", doc="timm EfficientNet-Lite0 (TF port, 'same' padding)"),
    "efficientnet_lite3": _Spec("timm", "tf_efficientnet_lite3", doc="timm EfficientNet-Lite3 (TF port), MiDaS small's backbone"),
    "efficientnet_es": _Spec("timm", "efficientnet_es", doc="timm EfficientNet-EdgeTPU-S (yucel2021's 'EfficientNet ES')"),
    # Vision Transformers + DPT reassembly (ViTReassemble). Widths (stride 2..32): D/8, D/4, D/2, D, D.
    "vit_large": _Spec(
        "timm-vit", "vit_large_patch16_384", kwargs=(("dynamic_img_size", True),),
        doc="timm ViT-L/16 (384 px, IN-21k -> IN-1k), DPT-Large's backbone, taps blocks 5/11/17/23 + DPT "
            "reassembly; 128-256-512-1024-1024 channels; zhang2021's teacher backbone"),
    "vit_base": _Spec(
        "timm-vit", "vit_base_patch16_384", kwargs=(("dynamic_img_size", True),),
        doc="timm ViT-B/16 (384 px, IN-21k -> IN-1k), taps blocks 2/5/8/11 + DPT reassembly; 96-192-384-768-768 channels"),
    "vit_small": _Spec(
        "timm-vit", "vit_small_patch16_384", kwargs=(("dynamic_img_size", True),),
        doc="timm ViT-S/16 (384 px, IN-21k -> IN-1k), taps blocks 2/5/8/11 + DPT reassembly; 48-96-192-384-384 channels"),
    "vit_tiny": _Spec(
        "timm-vit", "vit_tiny_patch16_224", kwargs=(("dynamic_img_size", True),),
        doc="timm ViT-Ti/16 (224 px, IN-21k -> IN-1k), taps blocks 2/5/8/11 + DPT reassembly; 24-48-96-192-192 channels"),
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


def _timm_tail(model: nn.Module) -> nn.Module | None:
    """Backbone blocks after timm's stride-32 feature tap that belong to the stride-32 stage, or None.

    timm's GhostNet taps each stride at the *first* block of its stage (``feature_info``: ``blocks.1``, ``.3``,
    ``.5``, ``.7``), so ``features_only`` ends at ``blocks.7`` (one bottleneck, 160 channels) and drops
    ``blocks.8``: the other four stride-32 bottlenecks (160 -> 160, 1.57 M of GhostNet 1.0's parameters,
    Han et al., Table 1). They are applied to the stride-32 map here, so the encoder is the whole GhostNet.
    The earlier taps need no tail: the blocks after them run anyway, as the input of the next stride.
    """
    if type(model).__name__ == "GhostNet":
        return model.blocks[len(model.blocks) - 2]
    return None


def _timm_head(model: nn.Module) -> nn.Module | None:
    if hasattr(model, "bn2") and hasattr(model, "conv_head"):  # EfficientNet, MixNet, Lite (timm EfficientNet class)
        return nn.Sequential(model.conv_head, model.bn2)
    if type(model).__name__ == "GhostNet":
        # blocks[9] (ConvBnAct 160 -> 960) is no timm feature tap; conv_head (960 -> 1280) follows pooling in GhostNet.
        return nn.Sequential(model.blocks[len(model.blocks) - 1], model.conv_head, model.act2)
    return None


def vit_tap_blocks(depth: int, n: int = 4) -> tuple[int, ...]:
    """Indices of ``n`` evenly spaced blocks of a ``depth``-block ViT, ending at the last: DPT's taps.

    ``vit_tap_blocks(24) == (5, 11, 17, 23)`` (DPT-Large), ``vit_tap_blocks(12) == (2, 5, 8, 11)`` (DPT-Base).
    """
    if depth < n or n < 1:
        raise ValueError(f"cannot take {n} evenly spaced blocks of a {depth}-block ViT")
    return tuple((i + 1) * depth // n - 1 for i in range(n))


def vit_widths(embed_dim: int) -> tuple[int, ...]:
    """Channels of the five maps (strides 2, 4, 8, 16, 32) for a ViT of token width ``embed_dim`` (``D``).

    ``(D/8, D/4, D/2, D, D)``: DPT-Large's (256, 512, 1024, 1024) at strides 4..32 for ViT-Large (``D = 1024``),
    DPT-Base's (96, 192, 384, 768) for ViT-Base, plus ``D/8`` at stride 2 (128 for ViT-Large); small ViTs get
    small widths (ViT-Tiny, ``D = 192``: 24, 48, 96, 192, 192).
    """
    return (max(embed_dim // 8, 8), max(embed_dim // 4, 8), max(embed_dim // 2, 8), embed_dim, embed_dim)


class ViTReassemble(nn.Module):
    """A timm Vision Transformer as an encoder body: DPT's reassembly to strides 4..32 plus a stride-2 conv stem.

    Ranftl et al., "Vision Transformers for Dense Prediction" (ICCV 2021), Sec. 3 "Reassemble":

    1. the tokens after four blocks (``indices``, default :func:`vit_tap_blocks`: 5, 11, 17, 23 of 24) are taken
       with timm's ``forward_intermediates`` (without the final norm, as DPT's hooks on the block outputs);
    2. *read*: the class (prefix) tokens are dropped -- DPT's ``"ignore"`` readout (DPT-Large's default is
       ``"project"``; ``"ignore"`` adds no parameters, and the decoder sees patch tokens only);
    3. *concatenate*: the ``(H/16) * (W/16)`` patch tokens are reshaped to ``(B, D, H/16, W/16)``;
    4. *resample*: a 1x1 conv projects to each map's width, then a 4x4/stride-4 transposed conv (stride 4), a
       2x2/stride-2 transposed conv (stride 8), nothing (stride 16, DPT's identity) or a 3x3/stride-2 conv
       (stride 32).

    DPT has no stride-2 map; here it comes from a small conv stem on the image (two 3x3 conv + BN + ReLU, the
    first with stride 2), not from upsampling the stride-4 map: a transposed conv of the stride-4 map only
    re-expresses block-5 tokens, which know nothing finer than a 16-px patch, whereas the stem gives the
    decoder's stride-2 fusion real image detail (edges) for little compute (3 % of ViT-Large's MACs at
    480x640).

    The ViT's own weights are whatever ``vit`` holds; the reassembly and the stem are new (PyTorch's default
    init). The ViT's final norm and classifier, and any block after the last tap, are removed (unused
    parameters would waste memory and break DDP's unused-parameter check). For memory-bound training,
    ``body.vit.set_grad_checkpointing()`` works (timm's ``forward_intermediates`` honours it).

    Args:
        vit: a timm ``VisionTransformer`` with 16-px patches built with ``dynamic_img_size=True``.
        widths: channels of the five maps at strides 2..32 (default :func:`vit_widths` of the ViT's width).
        indices: the four blocks tapped, increasing (default :func:`vit_tap_blocks` of the ViT's depth).

    Attributes:
        indices: the tapped blocks.
        widths: the five output widths.

    Shape:
        - Input: ``(B, 3, H, W)``, ``H`` and ``W`` multiples of 32 (any such size: timm interpolates the
          positional embeddings).
        - Output: list of five tensors ``(B, widths[i], H / s_i, W / s_i)``, ``s_i = 2, 4, 8, 16, 32``.
    """

    def __init__(self, vit: nn.Module, widths: Sequence[int] | None = None,
                 indices: Sequence[int] | None = None) -> None:
        super().__init__()
        if tuple(vit.patch_embed.patch_size) != (16, 16):
            raise ValueError(f"ViTReassemble needs 16-px patches, got {tuple(vit.patch_embed.patch_size)}")
        if not getattr(vit, "dynamic_img_size", False):
            raise ValueError("ViTReassemble needs a ViT built with dynamic_img_size=True (any input size)")
        dim, depth = int(vit.embed_dim), len(vit.blocks)
        indices = tuple(int(i) for i in indices) if indices is not None else vit_tap_blocks(depth)
        if len(indices) != 4 or list(indices) != sorted(set(indices)) or not 0 <= indices[0] <= indices[-1] < depth:
            raise ValueError(f"indices must be 4 increasing block indices in [0, {depth}), got {indices}")
        widths = tuple(int(w) for w in widths) if widths is not None else vit_widths(dim)
        if len(widths) != 5 or min(widths) < 1:
            raise ValueError(f"widths must be 5 positive channel counts (strides 2..32), got {widths}")
        vit.prune_intermediate_layers(list(indices), prune_norm=True, prune_head=True)
        self.vit = vit
        self.indices = indices
        self.widths = widths
        w2, w4, w8, w16, w32 = widths
        self.stem = nn.Sequential(
            nn.Conv2d(3, w2, 3, 2, 1, bias=False), nn.BatchNorm2d(w2), nn.ReLU(inplace=True),
            nn.Conv2d(w2, w2, 3, 1, 1, bias=False), nn.BatchNorm2d(w2), nn.ReLU(inplace=True))
        self.reassemble = nn.ModuleList([
            nn.Sequential(nn.Conv2d(dim, w4, 1), nn.ConvTranspose2d(w4, w4, 4, stride=4)),
            nn.Sequential(nn.Conv2d(dim, w8, 1), nn.ConvTranspose2d(w8, w8, 2, stride=2)),
            nn.Sequential(nn.Conv2d(dim, w16, 1)),
            nn.Sequential(nn.Conv2d(dim, w32, 1), nn.Conv2d(w32, w32, 3, stride=2, padding=1)),
        ])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x: (B, 3, H, W)`` -> ``[(B, widths[i], H / s_i, W / s_i)]`` for ``s_i = 2, 4, 8, 16, 32``."""
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if h % 32 or w % 32:
            raise ValueError(f"ViT encoder input {h}x{w} is not a multiple of 32 (patches of 16, stride 32 map)")
        # list of 4 x (B, D, H/16, W/16): prefix tokens split off (ignored), patch tokens reshaped to NCHW
        tokens = self.vit.forward_intermediates(x, indices=list(self.indices), norm=False, output_fmt="NCHW",
                                                intermediates_only=True)
        return [self.stem(x)] + [resample(t) for resample, t in zip(self.reassemble, tokens)]


def _fit_vit_pos_embed(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with its ``pos_embed: (1, N_prefix + h*w, D)`` resampled to ``model``'s grid where they differ
    (e.g. a 224-px checkpoint for a 384-px ViT), as timm's own checkpoint filter does; else ``state`` as is."""
    pe, own = state.get("pos_embed"), getattr(model, "pos_embed", None)
    if pe is None or own is None or pe.shape == own.shape or pe.ndim != 3 or pe.shape[-1] != own.shape[-1]:
        return state
    prefix = 0 if getattr(model, "no_embed_class", False) else int(model.num_prefix_tokens)
    side = round((pe.shape[1] - prefix) ** 0.5)
    if side * side != pe.shape[1] - prefix:
        return state  # not a square grid: let _load_into report the mismatch
    from timm.layers import resample_abs_pos_embed

    resampled = resample_abs_pos_embed(pe, new_size=list(model.patch_embed.grid_size), old_size=[side, side],
                                       num_prefix_tokens=prefix)
    return {**state, "pos_embed": resampled}


def create_encoder(name: str, weights: str | os.PathLike | None = None, *, head: bool = False,
                   **kwargs: Any) -> Encoder:
    """Build encoder ``name`` (see :func:`list_encoders`) with ``weights`` (``None``, ``"imagenet"`` or a path).

    Args:
        name: encoder name or alias.
        weights: ``None`` (random init), ``"imagenet"`` or a state dict path (see the module docstring).
        head: also apply the classifier's 1x1 expansion conv ("conv_head", e.g. 200 -> 1536 in MixNet, 960 -> 1280
            in MobileNetV3) to the stride-32 map. yucel2021's encoder parameter counts (Table 1) are only reached
            with it. GhostNet's head is ``blocks.9`` (160 -> 960) + ``conv_head`` (960 -> 1280) + ReLU; its
            stride-32 map always includes the four stride-32 bottlenecks timm's tap leaves out (``_timm_tail``).
            A no-op for encoders whose taps already end at their last conv (MobileNet v1/v2,
            EfficientNet-B0, MNASNet, ShuffleNetV2, ResNets) and the ViTs.
        kwargs: passed to the backbone constructor (e.g. ``width_mult=0.5`` for torchvision MobileNetV3,
            ``drop_path_rate=0.1`` for a timm model), except ``width`` for ``ghostnet``, which picks timm's named
            configuration (``0.5``: ``ghostnet_050``, ``1.0``: ``ghostnet_100``, the default, ``1.3``:
            ``ghostnet_130``; timm has ImageNet weights for all three). ViTs also take ``widths`` (five channel
            counts, strides 2..32; default :func:`vit_widths`) and ``indices`` (the four tapped blocks; default
            :func:`vit_tap_blocks`), which go to :class:`ViTReassemble`.

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
    elif spec.source == "timm-vit":
        import timm

        reassemble = {k: kwargs.pop(k) for k in ("widths", "indices") if k in kwargs}
        extra = _timm_pretrained_overlay(key, spec.arch) if weights == "imagenet" else {}
        model = timm.create_model(spec.arch, **extra, **kwargs)
        if state is not None:
            _load_into(model, _fit_vit_pos_embed(model, state), str(weights))
        body = ViTReassemble(model, **reassemble)
    else:
        import timm
        from timm.models import FeatureListNet

        arch = spec.arch
        if spec.width_archs and "width" in kwargs:
            width = kwargs.pop("width")
            archs = dict(spec.width_archs)
            if width not in archs:
                raise ValueError(f"encoder {key!r}: width={width!r}; valid widths: "
                                 f"{', '.join(f'{w:g} ({a})' for w, a in spec.width_archs)}")
            arch = archs[width]
        extra = _timm_pretrained_overlay(key, arch) if weights == "imagenet" else {}
        model = timm.create_model(arch, **extra, **kwargs)
        if state is not None:
            _load_into(model, state, str(weights))
        tail = _timm_tail(model)
        head_module = _timm_head(model) if head else None
        if tail is not None:
            head_module = tail if head_module is None else nn.Sequential(tail, *head_module)
        # Wrapping the full (loaded) model keeps one code path for every weight source; it is what
        # timm.create_model(features_only=True) does internally.
        body = FeatureListNet(model, out_indices=(0, 1, 2, 3, 4), flatten_sequential=True)
    return Encoder(key, body, head_module)


def describe_encoders() -> dict[str, str]:
    """One-line description per encoder name (for docs and the book)."""
    return {k: v.doc for k, v in sorted(_SPECS.items())}


