"""Distillation on every head (yucel2021 eq. 5's L_aux-RMSE) and the holistic adversarial term (Liu et al.'s
structured KD as yucel2021 tried it): the heads' weighting, the discriminator's update schedule, gradient
isolation between the student and the discriminator, bit-identical resume, the cache, bad options.
Tiny models and 16x16 procedural frames: seconds on one thread."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _training import assert_same_state, config, metric_columns  # tests/_training.py
from depthlib.data import open_dataset
from depthlib.losses import deep_supervision, distill_rmse
from depthlib.train import DistillTerm, TeacherCache, fit, load_checkpoint
from depthlib.train import distill as distill_module
from depthlib.train.distill import DepthDiscriminator, discriminator_hinge_loss, holistic_generator_loss

SIZE = (16, 16)


class Net(nn.Module):
    """Conv - (BN) - ReLU - Conv with a positive output; with ``aux=True`` a half-resolution auxiliary head in
    training mode (``{"depth", "aux"}``)."""

    output_kind = "metric"

    def __init__(self, width: int = 8, bn: bool = True, aux: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width) if bn else nn.Identity(),
                                  nn.ReLU())
        self.head = nn.Conv2d(width, 1, 3, padding=1)
        self.aux_head = nn.Conv2d(width, 1, 1) if aux else None

    def forward(self, x: torch.Tensor):
        f = self.body(x)
        depth = F.softplus(self.head(f)) + 0.1
        if self.training and self.aux_head is not None:
            return {"depth": depth, "aux": [F.softplus(self.aux_head(F.avg_pool2d(f, 2))) + 0.1]}
        return depth


def net(seed: int = 0, **kw) -> Net:
    torch.manual_seed(seed)
    return Net(**kw)


def synth(n: int, seed: int = 1):
    return open_dataset("synth", split="train", n=n, size=SIZE, seed=seed)


HOLISTIC = DistillTerm("holistic", 0.05, options={"every": 2})


# ------------------------------------------------------------------------------------- every head


@pytest.mark.parametrize("aux_weights", [None, (0.7, 0.3)])
def test_pixel_rmse_applies_to_every_head_with_the_supervised_head_weights(aux_weights):
    # no BatchNorm: the student in training mode computes the same function on a batch and on its parts.
    # One batch of the whole set, one epoch: the history's term is the loss before the only step.
    student, teacher = net(bn=False, aux=True), net(5, bn=False)
    data = synth(4)
    batch = torch.utils.data.default_collate([data[i] for i in range(4)])
    s0, t = copy.deepcopy(student).train(), copy.deepcopy(teacher).eval()
    with torch.no_grad():
        out, real = s0(batch["image"]), t(batch["image"])
    weights = (0.5, 0.5) if aux_weights is None else aux_weights
    expected = deep_supervision(distill_rmse, out, real, weights=weights).item()
    final_only = distill_rmse(out["depth"], real).item()
    up = F.interpolate(out["aux"][0], size=SIZE, mode="bilinear", align_corners=False)
    assert expected == pytest.approx(weights[0] * final_only + weights[1] * distill_rmse(up, real).item(), rel=1e-6)
    assert abs(expected - final_only) > 1e-4  # the aux head counts: the check can fail

    hist = fit(student, data, config=config(epochs=1, aux_weights=aux_weights), teacher=teacher,
               distill=[DistillTerm("pixel_rmse")])
    assert hist["train_pixel_rmse"][0] == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------------------- holistic


class RecordingDiscriminator(DepthDiscriminator):
    """Snapshots its state at every generator-term call (eval mode: once per training iteration, before that
    iteration's discriminator update)."""

    instances: list = []

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.snapshots: list[dict] = []
        RecordingDiscriminator.instances.append(self)

    def forward(self, image, depth):
        if not self.training:
            self.snapshots.append({k: v.detach().clone() for k, v in self.state_dict().items()})
        return super().forward(image, depth)


def test_the_discriminator_is_updated_at_iterations_0_2_4_with_every_2(monkeypatch, tmp_path):
    RecordingDiscriminator.instances = []
    monkeypatch.setattr(distill_module, "DepthDiscriminator", RecordingDiscriminator)
    cfg = config(epochs=1, batch_size=2)  # 10 samples: 5 iterations
    hist = fit(net(), synth(10), config=cfg, out_dir=tmp_path, teacher=net(5), distill=[HOLISTIC])
    (disc,) = RecordingDiscriminator.instances
    assert len(disc.snapshots) == 5
    saved = load_checkpoint(tmp_path / "last.pt")["distill"]
    states = disc.snapshots + [saved["discriminators"]["holistic"]]  # before iterations 0..4, then after 4
    changed = [not all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(states, states[1:])]
    assert changed == [True, False, True, False, True]  # after iterations 0, 2, 4
    assert saved["iteration"] == 5
    assert len(saved["discriminator_optimizers"]["holistic"]["state"]) > 0
    # the discriminator column averages the 3 updating iterations; the generator term is recorded too
    assert math.isfinite(hist["train_holistic_d"][0]) and hist["train_holistic_d"][0] > 0
    assert math.isfinite(hist["train_holistic"][0])


def test_every_1_updates_at_every_iteration(monkeypatch):
    RecordingDiscriminator.instances = []
    monkeypatch.setattr(distill_module, "DepthDiscriminator", RecordingDiscriminator)
    fit(net(), synth(6), config=config(epochs=1, batch_size=2), teacher=net(5),
        distill=[DistillTerm("holistic", 0.05, options={"every": 1})])
    snaps = RecordingDiscriminator.instances[0].snapshots
    assert [not all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(snaps, snaps[1:])] == [True, True]


def test_generator_and_discriminator_gradients_are_isolated():
    torch.manual_seed(0)
    disc = DepthDiscriminator(width=8)
    student = nn.Conv2d(3, 1, 3, padding=1)
    image = torch.rand(2, 3, 16, 16)
    real = torch.rand(2, 1, 16, 16) + 0.5
    # the generator term: gradient for the student, none for D (its parameters stay trainable afterwards)
    disc_before = {k: v.clone() for k, v in disc.state_dict().items()}
    holistic_generator_loss(disc, image, student(image)).backward()
    assert all(p.grad is None for p in disc.parameters())
    assert all(p.requires_grad for p in disc.parameters()) and disc.training
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert_same_state(disc_before, disc.state_dict())  # eval mode: no power iteration either
    # the discriminator's hinge loss: gradient for D, none for the student
    student.zero_grad(set_to_none=True)
    discriminator_hinge_loss(disc, image, real, student(image)).backward()
    assert all(p.grad is None for p in student.parameters())
    assert all(p.grad is not None for p in disc.parameters())


def test_the_student_never_keeps_a_gradient_from_the_discriminator_in_fit(monkeypatch):
    # with weight 0 the holistic term contributes nothing to the student, while D is trained every 2 iterations:
    # the run equals the plain one bit for bit only if D's updates leak no gradient into the student and its
    # construction (seeded from the run's seed) moves no global RNG (dropout and augmentation would show it)
    train, cfg = synth(8), config(epochs=2)
    plain = net()
    h_plain = fit(plain, train, config=cfg)
    zero = net()
    h_zero = fit(zero, train, config=cfg, teacher=net(5), distill=[DistillTerm("holistic", 0.0)])
    pd.testing.assert_frame_equal(metric_columns(h_plain), metric_columns(h_zero)[metric_columns(h_plain).columns],
                                  check_exact=True)
    assert_same_state(plain.state_dict(), zero.state_dict())
    assert (h_zero["train_holistic_d"] > 0).all()


@pytest.mark.parametrize("cached", [False, True], ids=["uncached", "cached"])
def test_resume_with_a_holistic_term_is_bit_identical(tmp_path, cached):
    train = synth(6)
    cfg = config(epochs=2, batch_size=2)  # 3 iterations per epoch: epoch 2 updates D at iteration 4 only
    terms = [DistillTerm("pixel_rmse"), HOLISTIC]
    cache = TeacherCache if cached else (lambda: None)
    full = net(aux=True)
    h_full = fit(full, train, None, cfg, tmp_path / "full", teacher=net(5), distill=terms, teacher_cache=cache())
    parted = net(aux=True)
    fit(parted, train, None, cfg, tmp_path / "parted", teacher=net(5), distill=terms, teacher_cache=cache(),
        stop_after_epoch=1)
    assert load_checkpoint(tmp_path / "parted" / "last.pt")["distill"]["iteration"] == 3
    resumed = net(99, aux=True)
    h_resumed = fit(resumed, train, None, cfg, tmp_path / "parted", teacher=net(5), distill=terms,
                    teacher_cache=cache())
    pd.testing.assert_frame_equal(metric_columns(h_full), metric_columns(h_resumed), check_exact=True)
    assert_same_state(full.state_dict(), resumed.state_dict())
    a = load_checkpoint(tmp_path / "full" / "last.pt")["distill"]
    b = load_checkpoint(tmp_path / "parted" / "last.pt")["distill"]
    assert a["iteration"] == b["iteration"] == 6
    assert_same_state(a["discriminators"]["holistic"], b["discriminators"]["holistic"])
    sa, sb = a["discriminator_optimizers"]["holistic"]["state"], b["discriminator_optimizers"]["holistic"]["state"]
    assert sa.keys() == sb.keys() and all(assert_same_state(sa[k], sb[k]) is None for k in sa)
    assert {"train_pixel_rmse", "train_holistic", "train_holistic_d"} <= set(h_full.columns)


def test_holistic_with_a_cache_equals_the_uncached_run():
    train, cfg = synth(8), config(epochs=2)
    cache = TeacherCache()
    a, b = net(), net()
    h1 = fit(a, train, config=cfg, teacher=net(5), distill=[HOLISTIC], teacher_cache=cache)
    h2 = fit(b, train, config=cfg, teacher=net(5), distill=[HOLISTIC])
    assert cache.hits == 8 and cache.misses == 8
    pd.testing.assert_frame_equal(metric_columns(h1), metric_columns(h2), check_exact=True)
    assert_same_state(a.state_dict(), b.state_dict())


def test_the_discriminator_is_seeded_by_the_run():
    # (that building it moves no global RNG is test_the_student_never_keeps_a_gradient_..., bit for bit)
    h1 = fit(net(), synth(4), config=config(epochs=1), teacher=net(5), distill=[HOLISTIC])
    h2 = fit(net(), synth(4), config=config(epochs=1), teacher=net(5), distill=[HOLISTIC])
    pd.testing.assert_frame_equal(metric_columns(h1), metric_columns(h2), check_exact=True)
    other = fit(net(), synth(4), config=config(epochs=1, seed=4), teacher=net(5), distill=[HOLISTIC])
    assert other["train_holistic"][0] != h1["train_holistic"][0]


@pytest.mark.parametrize(
    "options, match",
    [
        ({"every": 0}, r"DistillTerm.options\['every'\] \(kind 'holistic'\) must be a positive int, got 0"),
        ({"every": 1.5}, r"options\['every'\] .* got 1.5"),
        ({"every": True}, r"options\['every'\] .* got True"),
        ({"lr": 0.0}, r"DistillTerm.options\['lr'\] \(kind 'holistic'\) must be a positive finite number, got 0.0"),
        ({"lr": float("nan")}, r"options\['lr'\] .* got nan"),
        ({"betas": (0.5, 1.0)}, r"options\['betas'\] .* got \(0.5, 1.0\)"),
        ({"width": 0}, r"options\['width'\] .* got 0"),
        ({"evry": 2}, r"unknown option\(s\) \['evry'\]"),
    ],
)
def test_holistic_options_are_validated_naming_the_value(options, match):
    with pytest.raises(ValueError, match=match):
        DistillTerm("holistic", 0.05, options=options)


def test_holistic_defaults_layers_and_output_size():
    t = DistillTerm("holistic", 0.05)
    assert t.options == {"every": 2, "lr": 1e-4, "betas": (0.5, 0.999), "width": 32}
    assert t.to_dict()["options"]["betas"] == [0.5, 0.999]
    with pytest.raises(ValueError, match=r"DistillTerm\(kind='holistic'\) compares the predictions"):
        DistillTerm("holistic", student_layer="body.0", teacher_layer="body.0")
    with pytest.raises(ValueError, match=r"teacher: its output \(1, 1, 8, 8\) differs .*kind 'holistic'"):
        fit(net(), synth(4), config=config(), teacher=nn.Sequential(net(5), nn.AvgPool2d(2)), distill=[HOLISTIC])
    with pytest.raises(ValueError, match=r"DepthDiscriminator: image must be \(B, 3, H, W\)"):
        DepthDiscriminator()(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 4, 4))
    assert DepthDiscriminator(width=4)(torch.rand(2, 3, 16, 32), torch.rand(2, 1, 16, 32)).shape == (2, 1, 2, 4)
