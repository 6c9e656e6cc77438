"""Chen et al.'s hourglass network for relative depth "in the wild" (NIPS 2016), the DIW baseline of Yucel et al.

Chen, Fu, Yang and Deng (Single-Image Depth Perception in the Wild, NIPS 2016; ``yucel2021``'s reference
[3]) train a variant of Newell et al.'s hourglass whose blocks are inception modules: every module runs a
1x1 convolution beside three ``1x1 -> kxk`` branches and concatenates the four, each convolution followed
by BatchNorm and ReLU. Four nested levels ("Channels1" .. "Channels4") each add a full-resolution path to an
average-pooled, processed and nearest-upsampled path, so the input must be a multiple of 16. A 7x7 stem
(128 channels) comes first and a 3x3 convolution to one channel last.

Yucel et al. time "an unofficial implementation of [3]" (their footnote 9: the TensorFlow port
Turmac/DIW_TF_Implementation) in Table 8 and list it with 5.3 M parameters in Table 7. This module follows
that port's module table (the letters are Chen's module names) and its affine BatchNorm, which gives
5,371,041 parameters: 5.3 M when cut to one decimal as the table prints it. Ports that keep Chen's Lua
BatchNorm without scale and shift count 5,357,153; the test pins our count and its one-decimal agreement.

The network predicts relative depth (larger = farther, up to an unknown monotonic map), so the preset's
``output_kind`` is ``"relative"``: compare it with ordinal pairs (WHDR) or after alignment, never as metres.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from depthlib.models.registry import DepthNet, register_model

__all__ = ["Inception", "HourglassTrunk", "chen2016_hourglass"]

#: Chen's inception modules: ``(base 1x1 width, ((k, mid, out), ...))`` by the letter his code gives them.
#: (In Chen's modules the three branches' output width equals the base width, so ``out`` is implied.)
MODULES: dict[str, tuple[int, int, tuple[tuple[int, int], ...]]] = {
    # letter: (in channels, out width per branch, ((kernel, 1x1 reduction), ...))
    "A": (128, 16, ((3, 32), (7, 32), (11, 32))),
    "A'": (128, 16, ((3, 64), (7, 64), (11, 64))),
    "B": (128, 32, ((3, 32), (5, 32), (7, 32))),
    "B'": (128, 32, ((3, 64), (5, 64), (7, 64))),
    "C": (128, 32, ((3, 64), (7, 64), (11, 64))),
    "D": (128, 64, ((3, 32), (5, 32), (7, 32))),
    "E": (256, 64, ((3, 32), (5, 32), (7, 32))),
    "F": (256, 64, ((3, 64), (7, 64), (11, 64))),
    "G": (256, 32, ((3, 32), (5, 32), (7, 32))),
}


def _conv_bn_relu(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class Inception(nn.Module):
    """One of Chen's inception modules: a 1x1 branch and ``1x1 -> kxk`` branches, concatenated.

    Args:
        letter: a key of :data:`MODULES` (``"E"``: 256 -> 4 x 64 channels with 3/5/7 kernels, ...).

    Shape:
        - Input: ``(B, C_in, H, W)``; output: ``(B, 4 * width, H, W)``.
    """

    def __init__(self, letter: str) -> None:
        super().__init__()
        if letter not in MODULES:
            raise ValueError(f"Inception: unknown module {letter!r}; known: {sorted(MODULES)}")
        cin, width, branches = MODULES[letter]
        self.letter = letter
        self.branches = nn.ModuleList([nn.Sequential(*_conv_bn_relu(cin, width, 1))] + [
            nn.Sequential(*_conv_bn_relu(cin, mid, 1), *_conv_bn_relu(mid, width, k)) for k, mid in branches])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class _Level(nn.Module):
    """``near(x) + up(inner(pool(x)))``: one level of the hourglass."""

    def __init__(self, near: Sequence[str], before: Sequence[str], inner: nn.Module | None,
                 after: Sequence[str]) -> None:
        super().__init__()
        self.near = nn.Sequential(*(Inception(m) for m in near))
        layers: list[nn.Module] = [nn.AvgPool2d(2), *(Inception(m) for m in before)]
        if inner is not None:
            layers.append(inner)
        layers += [*(Inception(m) for m in after), nn.Upsample(scale_factor=2, mode="nearest")]
        self.far = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.near(x) + self.far(x)


class HourglassTrunk(nn.Module):
    """The stem and the four nested levels; returns the 64-channel full-resolution feature map.

    Shape:
        - Input: ``(B, 3, H, W)`` with ``H, W`` multiples of 16; output: ``(B, 64, H, W)``.
    """

    def __init__(self) -> None:
        super().__init__()
        channels1 = _Level(["E", "E"], ["E", "E", "E"], None, [])
        channels2 = _Level(["E", "F"], ["E", "E"], channels1, ["E", "F"])
        channels3 = _Level(["B", "C"], ["B", "D"], channels2, ["E", "G"])
        channels4 = _Level(["A'"], ["B", "B"], channels3, ["B'", "A"])
        self.stem = nn.Sequential(*_conv_bn_relu(3, 128, 7))
        self.levels = channels4
        self.channels = (64,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.levels(self.stem(x))


class _Head(nn.Module):
    """The last 3x3 convolution to one channel, returning ``(depth, aux)`` as :class:`DepthNet` expects."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(64, 1, 3, padding=1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, list]:
        return self.conv(features), []


@register_model("chen2016-hourglass")
def chen2016_hourglass(*, pretrained_encoder: str | os.PathLike | None = None) -> DepthNet:
    """Chen et al.'s DIW hourglass (NIPS 2016; ``yucel2021`` Tables 7-8, 5.3 M parameters), 240x320.

    Relative depth out (``output_kind == "relative"``), input a multiple of 16; the paper trains at 240x320
    and Yucel et al. time it at 256x256. No ImageNet initialisation exists for it (Chen et al. train from
    scratch), so ``pretrained_encoder`` must stay ``None``.
    """
    if pretrained_encoder is not None:
        raise ValueError("chen2016-hourglass: there are no pretrained weights for this network (Chen et al. "
                         f"train it from scratch); got pretrained_encoder={pretrained_encoder!r}")
    return DepthNet(HourglassTrunk(), _Head(), name="chen2016-hourglass", input_multiple=16,
                    default_input_size=(240, 320), output_kind="relative")
