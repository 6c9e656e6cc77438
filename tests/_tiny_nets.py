"""A tiny depth network shared by the rebalancing and sequential-training tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    """Conv-BN-ReLU-Dropout-Conv with a positive output and a half-resolution auxiliary head in training mode."""

    output_kind = "metric"

    def __init__(self, aux: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout2d(0.2))
        self.head = nn.Conv2d(8, 1, 3, padding=1)
        self.aux_head = nn.Conv2d(8, 1, 1) if aux else None

    def forward(self, x):
        f = self.body(x)
        d = F.softplus(self.head(f)) + 0.1
        if self.training and self.aux_head is not None:
            return {"depth": d, "aux": [F.softplus(self.aux_head(F.avg_pool2d(f, 2))) + 0.1]}
        return d


def net(seed: int = 0, aux: bool = True) -> Net:
    torch.manual_seed(seed)
    return Net(aux)
