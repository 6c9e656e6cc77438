"""What the training tests share: a tiny depth network, the SGD recipe they train with, and the comparisons of
resumed runs (histories without their timing columns, state dicts bit for bit)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from depthlib.train import TrainConfig


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


def config(**overrides) -> TrainConfig:
    """Two epochs of SGD with a halving step schedule on the L1 loss, seed 3; ``overrides`` replace fields."""
    base = dict(epochs=2, batch_size=4, lr=0.05, optimizer="sgd", schedule="step", step_size=1, gamma=0.5,
                loss="l1", progress=False, seed=3)
    base.update(overrides)
    return TrainConfig(**base)


def metric_columns(df: pd.DataFrame) -> pd.DataFrame:
    """A training history without its wall-clock columns (they differ between identical runs)."""
    return df.drop(columns=["images_per_s", "time_s"])


def assert_same_state(a: nn.Module | Mapping[str, torch.Tensor], b: nn.Module | Mapping[str, torch.Tensor]) -> None:
    """Two models (or state dicts) with the same keys and bit-identical tensors."""
    sa = a.state_dict() if isinstance(a, nn.Module) else a
    sb = b.state_dict() if isinstance(b, nn.Module) else b
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
