"""Chen et al.'s DIW hourglass (yucel2021's reference [3]): structure, size and its published parameter count."""

from __future__ import annotations

import pytest
import torch

from depthlib.models import create_model
from depthlib.models.hourglass import Inception
from depthlib.profiler import count_params


def test_parameter_count_matches_the_published_5_3_million():
    model = create_model("chen2016-hourglass")
    n = count_params(model)
    assert n == 5_371_041                      # the TF port's module table with affine BatchNorm
    assert int(n / 1e5) / 10 == 5.3            # yucel2021 Table 7 prints 5.3M (one decimal, cut)


def test_inception_module_widths_and_unknown_letter():
    x = torch.rand(1, 256, 8, 8)
    assert Inception("E")(x).shape == (1, 256, 8, 8)          # 4 x 64
    assert Inception("G")(x).shape == (1, 128, 8, 8)          # 4 x 32
    assert Inception("A")(torch.rand(1, 128, 8, 8)).shape == (1, 64, 8, 8)
    with pytest.raises(ValueError, match="unknown module 'Z'"):
        Inception("Z")


def test_relative_output_at_the_input_size_and_a_multiple_of_16():
    model = create_model("chen2016-hourglass").eval()
    assert model.output_kind == "relative" and model.input_multiple == 16
    with torch.no_grad():
        assert model(torch.rand(1, 3, 48, 80)).shape == (1, 1, 48, 80)
    with pytest.raises(ValueError, match="multiple of 16"):
        model(torch.rand(1, 3, 40, 64))
    with pytest.raises(ValueError, match="does not declare its encoder"):
        create_model("chen2016-hourglass", weights="imagenet")         # Chen et al. train from scratch
