"""yucel2021's ordinal pipeline: Li et al.'s MC loss, the relative head, relative_metrics and ordinal_run."""


import pytest
import torch
from torch import nn

from depthlib.losses import get_loss, mannequin_si
from depthlib.models import create_model
from depthlib.train.ordinal import relative_metrics


def _depth(b=2, h=32, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, h, w, generator=g) * 4 + 0.5


def test_mannequin_si_is_zero_for_log_depth_up_to_a_constant_without_image():
    t = _depth()
    assert float(mannequin_si(torch.log(t) + 1.7, t)) == pytest.approx(0.0, abs=1e-5)


def test_mannequin_si_data_term_is_one_and_a_half_times_the_scale_invariant_mse():
    t = _depth(b=1)
    noise = torch.randn(1, 1, 32, 64, generator=torch.Generator().manual_seed(1)) * 0.1
    z = torch.log(t) + noise
    si_mse = float(noise.pow(2).mean() - noise.mean() ** 2)
    got = float(mannequin_si(z, t, w_grad=0.0))
    assert got == pytest.approx(1.5 * si_mse, rel=1e-4)


def test_mannequin_si_ignores_invalid_pixels_and_takes_the_image_by_its_kind():
    t = _depth()
    mask = torch.ones_like(t, dtype=torch.bool)
    mask[..., :8] = False
    z = torch.log(t)
    z_bad = z.clone()
    z_bad[..., :8] += torch.randn_like(z_bad[..., :8])  # only invalid pixels change
    assert float(mannequin_si(z_bad, t, mask, w_grad=0.75)) == pytest.approx(0.0, abs=1e-5)
    loss = get_loss("mannequin_si")
    assert loss.kind == "dense_image"
    image = torch.rand(2, 3, 32, 64)
    smooth = float(mannequin_si(torch.zeros_like(z) + torch.log(t), t, mask, image))
    assert smooth > 0  # the edge-aware smoothness of a non-constant prediction


def test_mannequin_si_gradient_is_finite():
    t = _depth()
    z = torch.zeros_like(t, requires_grad=True)
    mannequin_si(z, t, image=torch.rand(2, 3, 32, 64)).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_relative_fbnet_head_has_no_relu_and_is_marked_relative():
    torch.manual_seed(0)
    net = create_model("mbv2-fbnet-x112", relative=True, aux_heads=2).train()
    out = net(torch.rand(2, 3, 64, 128))
    assert net.output_kind == "relative"
    assert float(out["depth"].min()) < 0  # a log depth may be negative: no ReLU clips it
    assert [tuple(a.shape) for a in out["aux"]] == [(2, 1, 8, 16), (2, 1, 16, 32)]
    with pytest.raises(ValueError, match="relative"):
        create_model("mbv2-fbnet-x112", relative="yes")
    assert create_model("mbv2-fbnet-x112").output_kind == "metric"


class _Log(nn.Module):
    """A 'network' that reads log depth / 10 from the image's first channel and adds a constant."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.shift = shift
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x[:, :1] * 10 + self.shift + 0 * self.dummy


def test_relative_metrics_scale_free_on_dense_sets_and_whdr_on_pairs():
    t = _depth(b=3)
    samples = [{"image": torch.log(t[i]).expand(3, 32, 64) / 10, "depth": t[i], "mask": torch.ones(1, 32, 64, dtype=torch.bool)}
               for i in range(3)]
    # pairs: A at the deepest pixel (farther) vs B at the shallowest, relation +1; the second pair is wrong on purpose
    pair_samples = []
    for i in range(3):
        flat = t[i, 0].flatten()
        a, b = int(flat.argmax()), int(flat.argmin())
        pairs = torch.tensor([[a // 64, a % 64, b // 64, b % 64]])
        pair_samples.append({"image": torch.log(t[i]).expand(3, 32, 64) / 10, "pairs": pairs,
                             "relation": torch.tensor([1 if i < 2 else -1])})
    net = _Log(shift=5.0)
    got = relative_metrics(net, {"nyu": samples, "diw": pair_samples}, batch_size=2)
    assert got["nyu_rmse"] == pytest.approx(0.0, abs=1e-4)  # exact up to a constant in log space
    assert got["nyu_si_rmse"] == pytest.approx(0.0, abs=1e-4)
    assert got["diw_whdr"] == pytest.approx(1 / 3)
    assert not any(k.startswith("diw_rmse") for k in got)


def test_ordinal_run_rejects_an_unknown_dataset_before_training():
    from depthlib.train.ordinal import ordinal_run

    data = {"train": {"diw": [], "mc": []}, "evaluations": {}}
    with pytest.raises(ValueError, match=r"unknown dataset\(s\) \['redwebb'\].*known: \['diw', 'mc'\]"):
        ordinal_run(model="mbv2-fbnet-x112", seed=0, sequence=["mc", "redwebb", "diw"], datasets=data, common={})
    with pytest.raises(ValueError, match="needs a teacher"):
        ordinal_run(model="mbv2-fbnet-x112", seed=0, sequence=["diw"], datasets=data, common={},
                    distill=[{"kind": "pixel_rmse"}])
    with pytest.raises(ValueError, match="loss_weight"):
        ordinal_run(model="mbv2-fbnet-x112", seed=0, sequence=["diw"], datasets=data, common={}, loss_weight=-1.0)
