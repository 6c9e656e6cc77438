"""Every preset builds, trains a step, exports with torch.export, and has the paper's attributes and size."""

from __future__ import annotations

import pytest
import torch

from depthlib.models import create_model, list_models, model_doc
from depthlib.profiler import count_params


def _small_input(name: str) -> torch.Tensor:
    # 64x64 keeps every preset cheap; it is a multiple of 32 and still gives 2x2 maps at stride 32.
    return torch.rand(2, 3, 64, 64)


def _build(name: str, **kw) -> torch.nn.Module:
    if name.startswith("mai2021"):
        kw.setdefault("internal_size", (64, 96))  # smaller than the paper's 128x160 (multiples of 32), cheap
    return create_model(name, **kw)


OUTPUT_KINDS = {"midas-small": "inverse_relative", "chen2016-hourglass": "relative"}


@pytest.mark.parametrize("name", list_models())
def test_preset_attributes_and_doc(name):
    model = _build(name)
    assert model.output_kind == OUTPUT_KINDS.get(name, "metric")
    assert isinstance(model.input_multiple, int) and model.input_multiple >= 1
    h, w = model.default_input_size
    assert h % model.input_multiple == 0 and w % model.input_multiple == 0
    doc = model_doc(name)
    assert f"{h}x{w}" in doc, f"{name}: docstring should name its resolution"
    assert any(k in doc for k in ("wofk2019", "sagar2021", "zhang2021", "yucel2021", "haly2021", "FastDepth")), \
        f"{name}: docstring should name its study"


@pytest.mark.parametrize("name", list_models())
def test_preset_trains_a_step(name):
    torch.manual_seed(0)
    model = _build(name).train()
    x = _small_input(name)
    out = model(x)
    depth = out["depth"] if isinstance(out, dict) else out
    assert depth.shape == (2, 1, 64, 64) and torch.isfinite(depth).all()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    (depth - 1.0).abs().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    # Every parameter takes part in the forward pass (DDP requires it): no dead weights.
    assert all(g is not None for g in grads), f"{name}: parameters without gradient"
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def _export_and_compare(model: torch.nn.Module, x: torch.Tensor) -> None:
    model.eval()
    program = torch.export.export(model, (x,))
    torch.testing.assert_close(program.module()(x), model(x), rtol=1e-4, atol=1e-5)


def test_export_fastdepth():
    _export_and_compare(create_model("fastdepth"), torch.rand(1, 3, 64, 64))


def test_export_without_aux_heads():
    model = create_model("mbv2-fbnet-x112", aux_heads=2).remove_aux_heads()
    program_input = torch.rand(1, 3, 64, 64)
    _export_and_compare(model, program_input)
    assert not any("aux_heads" in k for k in model.state_dict())


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in list_models() if n != "fastdepth"])
def test_export_every_preset(name):
    _export_and_compare(_build(name), torch.rand(1, 3, 64, 64))


# Parameter counts the papers report (M, rounded to 0.1 M), matched within 3 %. Not listed: ghostnet-nnconv5
# (5.4), effnet-es-fbnet (4.7) and mixnet-m-fbnet (3.6), which no documented reading reproduces
# (depthlib.profiler.param_candidates; tests/test_param_candidates.py pins our counts).
PAPER_PARAMS_M = {
    "ghostnet-fbnet": 4.3, "shufflenetv2-nnconv5": 2.0, "mnasnet-nnconv5": 4.0, "mbv2-nnconv5": 3.1, "mbv3-nnconv5": 5.1,
    "effnet-es-nnconv5": 5.0, "effnet-b0-nnconv5": 4.9, "mixnet-m-nnconv5": 4.5, "mixnet-s-nnconv5": 3.6,
    "fastdepth": 3.9, "mbv2-fbnet": 2.6, "mbv2-fbnet-x112": 2.6,
}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS_M))
def test_yucel2021_parameter_counts(name):
    assert count_params(create_model(name)) / 1e6 == pytest.approx(PAPER_PARAMS_M[name], rel=0.03)


def test_midas_small_parameter_count():
    # haly2021, Sec. 2.2: "MiDaS v2.1 Small has a total of 16,600,929 parameters"
    assert count_params(create_model("midas-small")) == 16_600_929
