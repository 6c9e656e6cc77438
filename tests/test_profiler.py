"""Profiler: counts against hand-computed cases and the papers' published numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from depthlib.models import create_model
from depthlib.models.presets import MAI2021_FLOPS_M
from depthlib.profiler import (
    count_conv_weights,
    count_macs,
    measure_latency,
    model_size_mb,
    profile_model,
)


def test_fastdepth_complexity_matches_paper():
    # FastDepth (Wofk et al. 2019), MobileNet-NNConv5 (depthwise) with additive skips at 224x224:
    # 3.93 M weights, 0.74 GMACs.
    res = profile_model(create_model("fastdepth"), (1, 3, 224, 224))
    assert res["conv_weights"] / 1e6 == pytest.approx(3.93, rel=0.01)
    assert res["macs"] / 1e9 == pytest.approx(0.74, rel=0.01)


def test_hand_computed_counts():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),                  # 8*3*9 = 216 weights, 216*100 MACs
        nn.BatchNorm2d(8), nn.ReLU(),                    # not counted
        nn.Conv2d(8, 8, 3, padding=1, groups=8),         # depthwise: 8*9 = 72 weights, 72*100 MACs
        nn.Upsample(scale_factor=2.0),                   # not counted
        nn.ConvTranspose2d(8, 2, 2, stride=2),           # 8*2*4 = 64 weights, 64*400 MACs (input 20x20)
        nn.Flatten(), nn.Linear(2 * 40 * 40, 5),         # 3200*5 = 16000 MACs
    )
    assert count_conv_weights(model) == 216 + 72 + 64
    assert count_macs(model, (1, 3, 10, 10)) == 216 * 100 + 72 * 100 + 64 * 400 + 16000
    # batch scales MACs linearly
    assert count_macs(model, (3, 3, 10, 10)) == 3 * count_macs(model, (1, 3, 10, 10))


def test_size_mb_counts_float_state():
    model = nn.Sequential(nn.Conv2d(4, 10, 1, bias=False), nn.BatchNorm2d(10))
    # 40 weights + 10 + 10 affine + 10 + 10 running stats = 80 floats; num_batches_tracked (int64) excluded
    assert model_size_mb(model, 4) == pytest.approx(80 * 4 / 1e6)
    assert model_size_mb(model, 2) == pytest.approx(80 * 2 / 1e6)


def test_sagar2021_model_size():
    # sagar2021, Sec. 5: MobileNetV2 + NNConv5 is 11.8 MB in fp32 and 5.9 MB in fp16
    res = profile_model(create_model("mbv2-nnconv5-narrow"), (1, 3, 224, 224))
    assert res["size_mb_fp32"] == pytest.approx(11.8, rel=0.02)
    assert res["size_mb_fp16"] == pytest.approx(5.9, rel=0.02)


@pytest.mark.parametrize("model_id", [1, 2, 3, 4])
def test_mai2021_flops(model_id):
    # zhang2021, Table 2 "Flops" at 128x160 (read as MACs; widths chosen to match, within 6 %)
    macs = count_macs(create_model(f"mai2021-{model_id}"), (1, 3, 128, 160))
    assert macs / 1e6 == pytest.approx(MAI2021_FLOPS_M[model_id], rel=0.06)


def test_mai2021_resize_layers_are_free():
    # the fast-downsampling resize layers cost no MACs: 480x640 in, same MACs as 128x160
    model = create_model("mai2021-1")
    assert count_macs(model, (1, 3, 480, 640)) == count_macs(model, (1, 3, 128, 160))


def test_measure_latency_restores_state():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).train()
    threads = torch.get_num_threads()
    ms = measure_latency(model, (1, 3, 16, 16), threads=2, warmup=1, repeats=3)
    assert ms > 0
    assert torch.get_num_threads() == threads and model.training
    ms_cl = measure_latency(model, (1, 3, 16, 16), threads=1, warmup=0, repeats=1, channels_last=True)
    assert ms_cl > 0


def test_bad_sizes():
    model = nn.Conv2d(3, 1, 1)
    with pytest.raises(ValueError, match="input_size"):
        count_macs(model, (3, 16, 16))
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(model, (1, 3, 8, 8), repeats=0)


def test_profile_cli(capsys):
    from depthlib.cli import main

    assert main(["profile", "fastdepth", "--size", "64x64"]) == 0
    out = capsys.readouterr().out
    assert "conv weights" in out and "fastdepth at 64x64" in out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA latency needs a GPU")
def test_cuda_latency():
    ms = measure_latency(create_model("fastdepth"), (1, 3, 224, 224), device="cuda", warmup=3, repeats=5)
    assert ms > 0
