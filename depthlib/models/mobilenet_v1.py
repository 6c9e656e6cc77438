"""MobileNet v1 as FastDepth uses it.

torchvision has no MobileNet v1, so this is a re-implementation with the exact module layout of
``imagenet/mobilenet.py`` in dwofk/fast-depth (``relu6=True``): ``model.0`` is a full 3x3 convolution
(``model.0.0`` conv, ``model.0.1`` BN), ``model.1`` ... ``model.13`` are depthwise-separable blocks
(``model.k.0`` depthwise conv, ``model.k.1`` BN, ``model.k.3`` pointwise conv, ``model.k.4`` BN).
Keeping the keys means FastDepth-layout checkpoints, such as ``mobilenet_v1_imagenet_from_tflite.pth`` in
``../shared/weights``, load with ``load_state_dict`` and no renaming.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MobileNetV1", "MOBILENET_V1_CONFIG"]

# (in_channels, out_channels, stride) of the 13 depthwise-separable blocks, Howard et al. 2017, Table 1.
MOBILENET_V1_CONFIG: tuple[tuple[int, int, int], ...] = (
    (32, 64, 1),
    (64, 128, 2),
    (128, 128, 1),
    (128, 256, 2),
    (256, 256, 1),
    (256, 512, 2),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 1024, 2),
    (1024, 1024, 1),
)


def _conv_bn(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))


def _conv_dw(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.ReLU6(inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU6(inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNet v1 (width 1.0) with FastDepth's module names.

    Args:
        num_classes: size of the classifier ``fc``; ``0`` builds the feature extractor only (what FastDepth uses).

    Shape:
        - ``forward_features(x)``: ``x: (B, 3, H, W)`` -> ``(B, 1024, H/32, W/32)``.
        - ``forward(x)``: ``(B, num_classes)`` logits (global average pooling then ``fc``), or the
          ``forward_features`` map when ``num_classes=0``.

    The 14 layers ``model[0..13]`` are exposed so an encoder can tap them: outputs of layers 1, 3, 5, 11 and 13
    are at strides 2, 4, 8, 16 and 32 with 64, 128, 256, 512 and 1024 channels.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers = [_conv_bn(3, 32, 2)] + [_conv_dw(i, o, s) for i, o, s in MOBILENET_V1_CONFIG]
        self.model = nn.Sequential(*layers)
        self.fc = nn.Linear(1024, num_classes) if num_classes > 0 else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He et al. 2015 init, as torchvision's classification models use.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.model(x)
        return x if self.fc is None else self.fc(x.mean((2, 3)))
