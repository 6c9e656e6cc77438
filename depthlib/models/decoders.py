"""Decoders: from five encoder maps (strides 2..32) back to a one-channel depth map.

- :class:`UNetDecoder`: five x2 stages from stride 32 to stride 1 with a choice of block (FastDepth's
  comparison: ``nnconv5``, ``nnconv5dw``, ``upconv``, ``upproj``, ``deconv3``; yucel2021's ``fbnet``), skips
  (``none``, ``add``, ``concat``), optional intermediate heads (yucel2021) and fewer stages for the ``x112``
  variant.
- :class:`LightFusionDecoder`: the MAI-2021 winner's light decoder with feature-fusion modules (zhang2021).
- :class:`MidasSmallDecoder`: MiDaS v2.1 small's RefineNet-style fusion decoder (haly2021, Ranftl et al.).

Every decoder takes ``feats = [f2, f4, f8, f16, f32]`` with ``f_s: (B, C_s, H/s, W/s)`` and returns
``(depth, aux)``: ``depth: (B, 1, H/r, W/r)`` at its output stride ``r = decoder.output_stride`` and ``aux`` a
list of intermediate predictions ``(B, 1, h_i, w_i)`` (empty unless intermediate heads exist and the module is
in training mode). Decoders are initialised with Kaiming normal (fan-out), as FastDepth's ``weights_init``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DECODER_BLOCKS",
    "SKIP_MODES",
    "UNetDecoder",
    "LightFusionDecoder",
    "MidasSmallDecoder",
    "Unpool",
    "kaiming_init",
]

STRIDES = (2, 4, 8, 16, 32)
SKIP_MODES = ("none", "add", "concat")


def kaiming_init(module: nn.Module) -> None:
    """Kaiming normal (fan-out, ReLU) for convolutions, ones/zeros for BN: FastDepth's ``weights_init``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _cbr(cin: int, cout: int, k: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, 1, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _upsample(x: torch.Tensor, mode: str) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode=mode, align_corners=False if mode == "bilinear" else None)


class Unpool(nn.Module):
    """Laina et al.'s x2 unpooling: each value goes to the top-left of a 2x2 block, the rest is zero.

    A fixed depthwise transposed convolution, as in sparse-to-dense (Ma & Karaman), which FastDepth reuses.
    Shape: ``(B, C, H, W) -> (B, C, 2H, 2W)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        weight = torch.zeros(channels, 1, 2, 2)
        weight[:, :, 0, 0] = 1.0
        # Not persistent: it is a constant, so checkpoints stay identical with and without it.
        self.register_buffer("weight", weight, persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.weight, stride=2, groups=self.channels)


class NNConv(nn.Module):
    """FastDepth's NNConv5 stage: 5x5 conv (or depthwise 5x5 + pointwise), BN, ReLU, then x2 upsampling.

    Shape: ``(B, cin, H, W) -> (B, cout, 2H, 2W)``.
    """

    def __init__(self, cin: int, cout: int, *, depthwise: bool = False, kernel_size: int = 5,
                 upsample: str = "nearest") -> None:
        super().__init__()
        if depthwise:
            # FastDepth's depthwise(in, 5) followed by pointwise(in, out), each with BN and ReLU.
            self.conv = nn.Sequential(nn.Sequential(*_cbr(cin, cin, kernel_size, groups=cin)),
                                      nn.Sequential(*_cbr(cin, cout, 1)))
        else:
            self.conv = nn.Sequential(*_cbr(cin, cout, kernel_size))
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _upsample(self.conv(x), self.upsample)


class UpConv(nn.Module):
    """Laina et al.'s up-convolution: unpool x2, 5x5 conv, BN, ReLU. ``(B, cin, H, W) -> (B, cout, 2H, 2W)``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.unpool = Unpool(cin)
        self.conv = nn.Sequential(*_cbr(cin, cout, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.unpool(x))


class UpProj(nn.Module):
    """Laina et al.'s up-projection: unpool x2, then (5x5 conv, BN, ReLU, 3x3 conv, BN) + (5x5 conv, BN), ReLU.

    Shape: ``(B, cin, H, W) -> (B, cout, 2H, 2W)``.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.unpool = Unpool(cin)
        self.upper = nn.Sequential(*_cbr(cin, cout, 5), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.bottom = nn.Sequential(nn.Conv2d(cin, cout, 5, 1, 2, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.unpool(x)
        return self.relu(self.upper(x) + self.bottom(x))


class DeConv(nn.Module):
    """Transposed convolution (k x k, stride 2), BN, ReLU: FastDepth's DeConv3 for ``k = 3``.

    Shape: ``(B, cin, H, W) -> (B, cout, 2H, 2W)``.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int = 3) -> None:
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.conv = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size, 2, pad, output_padding=2 * pad + 2 - kernel_size, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FBNetUp(nn.Module):
    """An FBNet-style inverted-residual block followed by x2 upsampling (yucel2021's decoder layer).

    1x1 expansion to ``expansion * cout`` channels, BN, ReLU; ``kernel_size`` depthwise conv, BN, ReLU; linear 1x1
    projection to ``cout``, BN; identity residual when ``cin == cout``; then nearest x2 upsampling.
    The expansion is taken relative to the *output* width: the decoder's input is the encoder's widest map
    (1280 channels for MobileNetV2), where an input-relative expansion would dwarf the encoder.

    Shape: ``(B, cin, H, W) -> (B, cout, 2H, 2W)``.
    """

    def __init__(self, cin: int, cout: int, *, expansion: float = 3.0, kernel_size: int = 5,
                 upsample: str = "nearest") -> None:
        super().__init__()
        hidden = int(round(expansion * cout))
        self.block = nn.Sequential(
            *_cbr(cin, hidden, 1), *_cbr(hidden, hidden, kernel_size, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = cin == cout
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        if self.residual:
            y = y + x
        return _upsample(y, self.upsample)


DECODER_BLOCKS = ("nnconv5", "nnconv5dw", "upconv", "upproj", "deconv3", "fbnet")


def _make_block(block: str, cin: int, cout: int, upsample: str, expansion: float) -> nn.Module:
    if block == "nnconv5":
        return NNConv(cin, cout, depthwise=False, upsample=upsample)
    if block == "nnconv5dw":
        return NNConv(cin, cout, depthwise=True, upsample=upsample)
    if block == "upconv":
        return UpConv(cin, cout)
    if block == "upproj":
        return UpProj(cin, cout)
    if block == "deconv3":
        return DeConv(cin, cout, 3)
    if block == "fbnet":
        return FBNetUp(cin, cout, expansion=expansion, upsample=upsample)
    raise ValueError(f"unknown decoder block {block!r}; valid blocks: {', '.join(DECODER_BLOCKS)}")


class UNetDecoder(nn.Module):
    """Stride-32 features up to stride ``2**(5 - num_stages)`` by x2 stages, with encoder skips and a 1x1 head.

    Args:
        encoder_channels: channels of the encoder maps at strides 2, 4, 8, 16, 32.
        block: stage type, one of :data:`DECODER_BLOCKS`.
        channels: output channels of each stage (its length is the number of stages, at most 5; stage ``i``
            ends at stride ``32 / 2**(i+1)``). FastDepth: ``(512, 256, 128, 64, 32)``.
        skip: ``"none"``, ``"add"`` (FastDepth's additive skips) or ``"concat"`` (concatenated before the next
            stage, whose input widens accordingly).
        skip_strides: strides at which encoder maps are merged after a stage; FastDepth uses ``(8, 4, 2)``.
            For ``"add"`` a map whose width differs from the stage's gets a 1x1 conv + BN projection (none are
            needed for FastDepth; yucel2021 re-uses FastDepth's widths with other encoders, see presets).
        upsample: ``"nearest"`` (FastDepth) or ``"bilinear"`` (sagar2021) for NNConv/FBNet stages.
        expansion: FBNet blocks' expansion (relative to the stage's output width).
        head: ``"fastdepth"`` (1x1 conv, BN, ReLU: FastDepth's ``decode_conv6 = pointwise(32, 1)``) or
            ``"conv"`` (1x1 conv with bias, ReLU) or ``"linear"`` (1x1 conv with bias, no activation: relative
            depth, e.g. log depth up to a constant, which may be negative; the intermediate heads then have no
            ReLU either).
        aux_after: stage indices (0-based) followed by an intermediate 1x1-conv prediction head; used only in
            training mode and removable with :meth:`remove_aux_heads` (yucel2021: ``(1, 2)``, i.e. after the
            second and third decoder layers).

    Shape:
        ``feats``: five maps ``(B, C_s, H/s, W/s)`` -> ``(depth: (B, 1, H/r, W/r), aux: list of (B, 1, h, w))``
        with ``r = output_stride``.
    """

    def __init__(self, encoder_channels: Sequence[int], *, block: str = "nnconv5dw",
                 channels: Sequence[int] = (512, 256, 128, 64, 32), skip: str = "add",
                 skip_strides: Sequence[int] = (8, 4, 2), upsample: str = "nearest", expansion: float = 3.0,
                 head: str = "fastdepth", aux_after: Sequence[int] = ()) -> None:
        super().__init__()
        if skip not in SKIP_MODES:
            raise ValueError(f"skip={skip!r}; valid: {', '.join(SKIP_MODES)}")
        if block not in DECODER_BLOCKS:
            raise ValueError(f"unknown decoder block {block!r}; valid blocks: {', '.join(DECODER_BLOCKS)}")
        if not 1 <= len(channels) <= 5:
            raise ValueError(f"channels must list 1 to 5 stage widths, got {tuple(channels)}")
        out_strides = [32 // 2 ** (i + 1) for i in range(len(channels))]
        bad = [s for s in skip_strides if s not in out_strides or s not in STRIDES]
        if skip != "none" and bad:
            raise ValueError(f"skip_strides {tuple(skip_strides)}: {bad} are not stage output strides "
                             f"{tuple(s for s in out_strides if s in STRIDES)}")
        if any(not 0 <= i < len(channels) - 1 for i in aux_after):
            raise ValueError(f"aux_after={tuple(aux_after)}: intermediate heads go after stages 0..{len(channels) - 2}")
        if head not in ("fastdepth", "conv", "linear"):
            raise ValueError(f"head={head!r}; valid: 'fastdepth', 'conv', 'linear'")
        self.encoder_channels = tuple(encoder_channels)
        self.skip = skip
        self.skip_strides = tuple(skip_strides) if skip != "none" else ()
        self.output_stride = out_strides[-1]
        self.stages = nn.ModuleList()
        self.proj = nn.ModuleDict()
        cin = self.encoder_channels[-1]
        for cout, stride in zip(channels, out_strides):
            self.stages.append(_make_block(block, cin, cout, upsample, expansion))
            cin = cout
            if stride in self.skip_strides:
                ce = self.encoder_channels[STRIDES.index(stride)]
                if skip == "concat":
                    cin = cout + ce
                elif ce != cout:
                    self.proj[str(stride)] = nn.Sequential(nn.Conv2d(ce, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self._out_strides = out_strides
        act = [] if head == "linear" else [nn.ReLU(inplace=True)]
        if head == "fastdepth":
            self.head = nn.Sequential(*_cbr(cin, 1, 1))
        else:
            self.head = nn.Sequential(nn.Conv2d(cin, 1, 1), *act)
        self.aux_heads = nn.ModuleDict({
            str(i): nn.Sequential(nn.Conv2d(self._stage_width(i, channels), 1, 1), *act)
            for i in aux_after})
        kaiming_init(self)

    def _stage_width(self, i: int, channels: Sequence[int]) -> int:
        s = self._out_strides[i]
        if self.skip == "concat" and s in self.skip_strides:
            return channels[i] + self.encoder_channels[STRIDES.index(s)]
        return channels[i]

    def remove_aux_heads(self) -> None:
        """Delete the intermediate heads (yucel2021 removes them after training: no cost at inference)."""
        self.aux_heads = nn.ModuleDict()

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = feats[-1]
        aux: list[torch.Tensor] = []
        for i, (stage, stride) in enumerate(zip(self.stages, self._out_strides)):
            x = stage(x)
            if stride in self.skip_strides:
                e = feats[STRIDES.index(stride)]
                if self.skip == "concat":
                    x = torch.cat([x, e], 1)
                else:
                    key = str(stride)
                    x = x + (self.proj[key](e) if key in self.proj else e)
            if self.training and str(i) in self.aux_heads:
                aux.append(self.aux_heads[str(i)](x))
        return self.head(x), aux


class _DWSep(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3) -> None:
        super().__init__(*_cbr(cin, cin, k, groups=cin), *_cbr(cin, cout, 1))


class FeatureFusion(nn.Module):
    """MAI-2021 feature-fusion module: reduce the deep map (1x1), x2 bilinear, concatenate the encoder map of
    the same stride, fuse with a 3x3 depthwise-separable conv.

    Shape: ``deep: (B, c_deep, h, w)``, ``skip: (B, c_skip, 2h, 2w)`` -> ``(B, cout, 2h, 2w)``.
    """

    def __init__(self, c_deep: int, c_skip: int, cout: int) -> None:
        super().__init__()
        self.reduce = nn.Sequential(*_cbr(c_deep, cout, 1))
        self.fuse = _DWSep(cout + c_skip, cout)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.reduce(deep), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([x, skip], 1))


class LightFusionDecoder(nn.Module):
    """The MAI-2021 light decoder (zhang2021, Sec. 2.1): fusion modules at strides 16, 8, 4, 2, then a 3x3 head.

    The paper gives the structure (fusing the encoder maps at 1/16, 1/8, 1/4 and 1/2 by concatenation) but not
    the widths; each fusion module outputs the encoder's width at its stride, which keeps the decoder a small
    part of the model's FLOPs, as the paper's "light" requires.

    Shape: ``feats`` (strides 2..32) -> ``(depth: (B, 1, H/2, W/2), [])``.
    """

    def __init__(self, encoder_channels: Sequence[int]) -> None:
        super().__init__()
        c = tuple(encoder_channels)
        self.encoder_channels = c
        self.fusions = nn.ModuleList([
            FeatureFusion(c[4], c[3], c[3]), FeatureFusion(c[3], c[2], c[2]),
            FeatureFusion(c[2], c[1], c[1]), FeatureFusion(c[1], c[0], c[0])])
        self.head = nn.Sequential(nn.Conv2d(c[0], 1, 3, 1, 1), nn.ReLU(inplace=True))
        self.output_stride = 2
        kaiming_init(self)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = feats[4]
        for fusion, skip in zip(self.fusions, (feats[3], feats[2], feats[1], feats[0])):
            x = fusion(x, skip)
        return self.head(x), []


class _ResidualConvUnit(nn.Module):
    """MiDaS ``ResidualConvUnit_custom`` (bn=False, groups=1): x + conv(relu(conv(relu(x))))."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, 1, 1, bias=True)
        self.conv2 = nn.Conv2d(features, features, 3, 1, 1, bias=True)
        self.activation = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.activation(self.conv1(self.activation(x))))
        return out + x


class _FusionBlock(nn.Module):
    """MiDaS ``FeatureFusionBlock_custom`` (deconv=False, bn=False, align_corners=True)."""

    def __init__(self, features: int, expand: bool, with_skip: bool = True) -> None:
        super().__init__()
        # MiDaS builds resConfUnit1 in refinenet4 too but never calls it (no skip there): 4.7 M dead weights,
        # which is why "16.6 M parameters" (haly2021, counted by a forward-hook summary) is what runs of
        # MiDaS small's 21.3 M. They are left out here (and would break DDP's unused-parameter check).
        if with_skip:
            self.resConfUnit1 = _ResidualConvUnit(features)
        self.resConfUnit2 = _ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features // 2 if expand else features, 1, 1, 0, bias=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class MidasSmallDecoder(nn.Module):
    """MiDaS v2.1 small's decoder (``MidasNet_small``, features=64, expand=True, non_negative=True).

    Module names follow isl-org/MiDaS ``midas_net_custom.py`` (``layer1_rn`` ... ``refinenet4``,
    ``output_conv``) so that its ``scratch.*`` weights map one-to-one, except the never-used
    ``refinenet4.resConfUnit1`` (drop those keys when converting). Uses the encoder maps at strides 4..32.

    Shape: ``feats`` (strides 2..32) -> ``(inverse_relative_depth: (B, 1, H, W), [])``.
    """

    def __init__(self, encoder_channels: Sequence[int], features: int = 64) -> None:
        super().__init__()
        c = tuple(encoder_channels)[1:]
        widths = (features, features * 2, features * 4, features * 8)
        self.layer1_rn, self.layer2_rn, self.layer3_rn, self.layer4_rn = (
            nn.Conv2d(ci, wi, 3, 1, 1, bias=False) for ci, wi in zip(c, widths))
        self.refinenet4 = _FusionBlock(widths[3], expand=True, with_skip=False)
        self.refinenet3 = _FusionBlock(widths[2], expand=True)
        self.refinenet2 = _FusionBlock(widths[1], expand=True)
        self.refinenet1 = _FusionBlock(widths[0], expand=False)
        self.output_conv = nn.Sequential(
            nn.Conv2d(features, features // 2, 3, 1, 1),
            nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False),
            nn.Conv2d(features // 2, 32, 3, 1, 1),
            nn.ReLU(inplace=False),
            nn.Conv2d(32, 1, 1, 1, 0),
            nn.ReLU(inplace=True),  # non_negative=True
        )
        self.output_stride = 1
        kaiming_init(self)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        l1, l2, l3, l4 = (rn(f) for rn, f in zip(
            (self.layer1_rn, self.layer2_rn, self.layer3_rn, self.layer4_rn), feats[1:]))
        path = self.refinenet4(l4)
        path = self.refinenet3(path, l3)
        path = self.refinenet2(path, l2)
        path = self.refinenet1(path, l1)
        return self.output_conv(path), []
