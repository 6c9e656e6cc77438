"""Distillation in depthlib.train.fit (issue 12): zero loss against an identical teacher, the feature adapter,
bit-identical resume with a teacher, the teacher's output cache, bad input before the first step, a frozen
teacher. Tiny models and 16x16 procedural frames: seconds on one thread."""

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
from depthlib.data.transforms import Compose, RandomHorizontalFlip, RandomRotation
from depthlib.train import DistillTerm, TeacherCache, fit, load_checkpoint
from depthlib.train.distill import random_augmentations

SIZE = (16, 16)


class Net(nn.Module):
    """Conv - (BN) - ReLU - (Dropout) - Conv with a positive output. ``body.1`` is the map before the
    activation (zhang2021's tap); ``width`` sets its channels. With ``half=True`` the prediction is pooled to
    half resolution by the module ``pool`` (a teacher of another output size)."""

    output_kind = "metric"

    def __init__(self, width: int = 8, bn: bool = True, dropout: bool = True, half: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width) if bn else nn.Identity(),
                                  nn.ReLU(), nn.Dropout2d(0.2) if dropout else nn.Identity())
        self.head = nn.Conv2d(width, 1, 3, padding=1)
        self.pool = nn.AvgPool2d(2) if half else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.softplus(self.head(self.body(x))) + 0.1)


def net(seed: int = 0, **kw) -> Net:
    torch.manual_seed(seed)
    return Net(**kw)


def teacher_net(seed: int = 7, **kw) -> Net:
    """A wider network (12 channels at ``body.1``): the student's 8 need an adapter."""
    return net(seed, width=12, **kw)


def synth(n: int, augment: bool = False, seed: int = 1, transform=None):
    steps = [RandomRotation(5.0), RandomHorizontalFlip(0.5)] if augment else []
    t = transform if transform is not None else Compose(steps) if steps else None
    return open_dataset("synth", split="train", n=n, size=SIZE, seed=seed, transform=t)


ALL_TERMS = [DistillTerm("feature_l2", 0.5, "body.1", "body.1"), DistillTerm("pixel_rmse", 1.0),
             DistillTerm("pairwise", 1.0, "body.1", "body.1", options={"scale": 0.5})]


def state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class CountCalls:
    """Counts a module's forward calls with a forward hook."""

    def __init__(self, module: nn.Module) -> None:
        self.n = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *args) -> None:
        self.n += 1


# ------------------------------------------------------------------------------------ zero against itself


@pytest.mark.parametrize("term", [DistillTerm("feature_l2", 1.0, "body.0", "body.0"), DistillTerm("pixel_rmse", 1.0),
                                  DistillTerm("pairwise", 1.0, "body.0", "body.0")], ids=lambda t: t.kind)
def test_teacher_equal_to_the_student_gives_zero_distillation_loss(tmp_path, term):
    # no BatchNorm or dropout: the student in training mode computes what its copy computes in eval mode.
    # One batch of the whole set, one epoch: the history's term is the loss before the only step.
    student = net(bn=False, dropout=False)
    teacher = copy.deepcopy(student)
    cfg = config(epochs=1, batch_size=4)
    hist = fit(student, synth(4), config=cfg, out_dir=tmp_path, teacher=teacher, distill=[term])
    assert hist[f"train_{term.kind}"][0] == pytest.approx(0.0, abs=1e-12)
    assert load_checkpoint(tmp_path / "last.pt")["distill"]["adapters"] == {}  # equal channels: no adapter
    # the same term against another teacher is not zero (the check above can fail)
    other = fit(net(bn=False, dropout=False), synth(4), config=cfg, teacher=net(5, bn=False, dropout=False),
                distill=[term])
    assert other[f"train_{term.kind}"][0] > 1e-6


# -------------------------------------------------------------------------------------------- adapter


def test_feature_adapter_maps_student_to_teacher_channels_and_is_checkpointed(tmp_path):
    term = DistillTerm("feature_l2", 1.0, "body.1", "body.1")
    cfg = config(epochs=2)
    fit(net(), synth(8), config=cfg, out_dir=tmp_path, teacher=teacher_net(), distill=[term], stop_after_epoch=1)
    first = load_checkpoint(tmp_path / "last.pt")
    adapters = first["distill"]["adapters"]
    assert set(adapters) == {"feature_l2.weight", "feature_l2.bias"}
    assert tuple(adapters["feature_l2.weight"].shape) == (12, 8, 1, 1)  # 1x1 conv, C_s=8 -> C_t=12
    assert tuple(adapters["feature_l2.bias"].shape) == (12,)
    # the student's state dict stays the student's alone (load_checkpoint(path, model) for deployment)
    load_checkpoint(tmp_path / "last.pt", net())
    assert not any(k.startswith("feature_l2") for k in first["model"])
    # the adapter trains with the student: epoch 2 (after resume) moved it
    fit(net(99), synth(8), config=cfg, out_dir=tmp_path, teacher=teacher_net(), distill=[term])
    second = load_checkpoint(tmp_path / "last.pt")["distill"]["adapters"]
    assert not torch.equal(second["feature_l2.weight"], adapters["feature_l2.weight"])
    # one optimiser: the student's 6 parameters, then the adapter's weight and bias
    assert len(first["optimizer"]["param_groups"][0]["params"]) == 6 + 2


def test_feature_l2_resizes_the_students_features_when_asked():
    # student body.1 (8, 16, 16) -> adapter (1 channel) -> resized to the teacher's pool output (1, 8, 8)
    term = DistillTerm("feature_l2", 1.0, "body.1", "pool", options={"interpolate": True})
    hist = fit(net(), synth(4), config=config(epochs=1), out_dir=None, teacher=net(half=True), distill=[term])
    assert hist["train_feature_l2"][0] > 0


def test_a_student_layer_that_the_forward_never_calls_is_refused():
    student = net()
    student.unused = nn.Conv2d(8, 8, 1)
    with pytest.raises(ValueError, match=r"the student's modules \['unused'\] were not called"):
        fit(student, synth(4), config=config(), teacher=teacher_net(),
            distill=[DistillTerm("feature_l2", 1.0, "unused", "body.1")])


# --------------------------------------------------------------------------------------------- resume


@pytest.mark.parametrize("augment, cached", [(True, False), (False, True)], ids=["augmented", "cached"])
def test_resume_with_a_teacher_is_bit_identical(tmp_path, augment, cached):
    train = synth(8, augment=augment)
    val = open_dataset("synth", split="val", n=4, size=SIZE, seed=1)
    cfg = config(epochs=3, step_size=2)
    cache = TeacherCache if cached else (lambda: None)

    full = net()
    h_full = fit(full, train, val, cfg, tmp_path / "full", teacher=teacher_net(), distill=ALL_TERMS,
                 teacher_cache=cache())
    parted = net()
    first = fit(parted, train, val, cfg, tmp_path / "parted", teacher=teacher_net(), distill=ALL_TERMS,
                teacher_cache=cache(), stop_after_epoch=1)
    assert list(first["epoch"]) == [1]
    # a new session: a fresh student, the teacher rebuilt (same weights, another object), an empty cache
    resumed = net(99)
    h_resumed = fit(resumed, train, val, cfg, tmp_path / "parted", teacher=teacher_net(), distill=ALL_TERMS,
                    teacher_cache=cache())

    pd.testing.assert_frame_equal(metric_columns(h_full), metric_columns(h_resumed), check_exact=True)
    assert_same_state(full.state_dict(), resumed.state_dict())
    a = load_checkpoint(tmp_path / "full" / "last.pt")["distill"]
    b = load_checkpoint(tmp_path / "parted" / "last.pt")["distill"]
    assert a["adapters"].keys() == {"feature_l2.weight", "feature_l2.bias"}
    assert_same_state(a["adapters"], b["adapters"])
    assert a["terms"] == b["terms"] and a["teacher"] == b["teacher"]
    for name in ("feature_l2", "pixel_rmse", "pairwise"):
        assert h_full[f"train_{name}"].notna().all() and (h_full[f"train_{name}"] > 0).all()
    assert h_full["train_pixel_rmse"][0] != h_full["train_pixel_rmse"][2]  # the run moved


def test_resume_refuses_another_teacher_other_terms_or_none(tmp_path):
    cfg = config(epochs=2)
    fit(net(), synth(8), config=cfg, out_dir=tmp_path, teacher=teacher_net(), distill=ALL_TERMS, stop_after_epoch=1)
    with pytest.raises(ValueError, match=r"written with another teacher .*same teacher weights"):
        fit(net(), synth(8), config=cfg, out_dir=tmp_path, teacher=teacher_net(seed=8), distill=ALL_TERMS)
    with pytest.raises(ValueError, match=r"written with other distillation terms"):
        fit(net(), synth(8), config=cfg, out_dir=tmp_path, teacher=teacher_net(), distill=ALL_TERMS[:2])
    with pytest.raises(ValueError, match=r"written with distillation \(feature_l2, pixel_rmse, pairwise"):
        fit(net(), synth(8), config=cfg, out_dir=tmp_path)
    fit(net(), synth(8), config=cfg, out_dir=tmp_path / "plain", stop_after_epoch=1)
    with pytest.raises(ValueError, match=r"written without distillation"):
        fit(net(), synth(8), config=cfg, out_dir=tmp_path / "plain", teacher=teacher_net(), distill=ALL_TERMS)


def test_zero_weight_terms_leave_the_run_unchanged():
    # the probe batch and the adapters' initialisation move no RNG: with weight 0 a distilled run is the plain
    # run bit for bit (augmentation and dropout make every random number count)
    train, cfg = synth(8, augment=True), config(epochs=2)
    plain = net()
    h_plain = fit(plain, train, config=cfg)
    zero = net()
    terms = [dataclass_replace(t, weight=0.0) for t in ALL_TERMS]
    h_zero = fit(zero, train, config=cfg, teacher=teacher_net(), distill=terms)
    pd.testing.assert_frame_equal(metric_columns(h_plain), metric_columns(h_zero)[metric_columns(h_plain).columns],
                                  check_exact=True)
    assert_same_state(plain.state_dict(), zero.state_dict())


def dataclass_replace(term: DistillTerm, **changes) -> DistillTerm:
    import dataclasses

    return dataclasses.replace(term, **changes)


# ---------------------------------------------------------------------------------------------- cache


def test_cache_skips_the_teacher_for_cached_samples_and_changes_nothing():
    train, cfg = synth(8), config(epochs=2, batch_size=4)
    teacher = teacher_net()
    calls = CountCalls(teacher)
    cache = TeacherCache()

    first = net()
    h1 = fit(first, train, config=cfg, teacher=teacher, distill=ALL_TERMS, teacher_cache=cache)
    assert calls.n == 1 + 2  # the probe sample, then epoch 1's two batches; epoch 2 read the cache
    assert (cache.misses, cache.hits, len(cache)) == (8, 8, 8)
    assert cache.nbytes == 8 * 4 * (1 * 16 * 16 + 12 * 16 * 16)  # the output and body.1, float32, per sample

    calls.n = 0
    second = net()  # a second fit (another seed of a sweep would be the same): no teacher forward at all
    h2 = fit(second, train, config=cfg, teacher=teacher, distill=ALL_TERMS, teacher_cache=cache)
    assert calls.n == 0 and cache.hits == 8 + 16

    calls.n = 0
    uncached = net()
    h3 = fit(uncached, train, config=cfg, teacher=teacher, distill=ALL_TERMS)
    assert calls.n == 1 + 2 * 2
    for h in (h2, h3):
        pd.testing.assert_frame_equal(metric_columns(h1), metric_columns(h), check_exact=True)
    assert_same_state(first.state_dict(), second.state_dict())
    assert_same_state(first.state_dict(), uncached.state_dict())


def test_cache_is_refused_on_randomly_augmented_data():
    train = synth(8, augment=True)
    assert random_augmentations(train) == ["RandomRotation(5.0)", "RandomHorizontalFlip(p=0.5)"]
    assert random_augmentations(torch.utils.data.Subset(synth(8), [0, 1])) == []
    student = net()
    before = state(student)
    with pytest.raises(ValueError, match=r"teacher_cache: train_data applies random augmentation "
                                         r"\(RandomRotation\(5.0\), RandomHorizontalFlip\(p=0.5\)\).*teacher_cache=None"):
        fit(student, train, config=config(), teacher=teacher_net(), distill=ALL_TERMS, teacher_cache=TeacherCache())
    assert_same_state(before, state(student))


def noise(sample: dict) -> dict:
    """Random augmentation in a plain function: random_augmentations cannot see it."""
    return dict(sample, image=(sample["image"] + 0.05 * torch.rand_like(sample["image"])).clamp(0, 1))


def test_cache_recomputes_samples_whose_image_changed():
    train, cfg = synth(8, transform=noise), config(epochs=2)
    cache = TeacherCache()
    cached = net()
    with pytest.warns(RuntimeWarning, match=r"the image of training sample \d+ differs .* recomputed"):
        h1 = fit(cached, train, config=cfg, teacher=teacher_net(), distill=ALL_TERMS, teacher_cache=cache)
    assert (cache.stale, cache.hits, cache.misses) == (8, 0, 16)
    plain = net()
    h2 = fit(plain, train, config=cfg, teacher=teacher_net(), distill=ALL_TERMS)
    pd.testing.assert_frame_equal(metric_columns(h1), metric_columns(h2), check_exact=True)
    assert_same_state(cached.state_dict(), plain.state_dict())


def test_cache_stops_growing_at_max_bytes():
    cache = TeacherCache(max_bytes=4 * 4 * (1 * 16 * 16 + 12 * 16 * 16))  # room for 4 of the 8 samples
    with pytest.warns(RuntimeWarning, match=r"max_bytes=.* reached"):
        fit(net(), synth(8), config=config(epochs=2), teacher=teacher_net(), distill=ALL_TERMS, teacher_cache=cache)
    assert len(cache) == 4 and cache.misses == 8 + 4 and cache.hits == 4


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: dict(teacher=net(half=True), distill=[DistillTerm("pixel_rmse")]),
         r"teacher: its output \(1, 1, 8, 8\) differs from the student's \(1, 1, 16, 16\) on train_data\[0\]"),
        (lambda: dict(teacher=teacher_net(), distill=[DistillTerm("feature_l2", 1.0, "body.9", "body.1")]),
         r"DistillTerm.student_layer='body.9' is not a module of the student \(Net, .*modules under 'body': "
         r"body.0, body.1, body.2, body.3; top-level modules: body, head, pool"),
        (lambda: dict(teacher=teacher_net(), distill=[DistillTerm("pairwise", 1.0, "body.1", "bdy.1")]),
         r"DistillTerm.teacher_layer='bdy.1' is not a module of the teacher .*close names: body.1"),
        (lambda: dict(teacher=teacher_net().to("meta"), distill=ALL_TERMS),
         r"teacher is on device 'meta' but the student trains on 'cpu'"),
        (lambda: dict(teacher=net(half=True), distill=[DistillTerm("feature_l2", 1.0, "body.1", "pool")]),
         r"'feature_l2' \(feature_l2\): student 'body.1' gives \(1, 8, 16, 16\), teacher 'pool' gives \(1, 1, 8, 8\).*"
         r"spatial sizes differ; DistillTerm\(..., options=\{'interpolate': True\}\)"),
        (lambda: dict(teacher=net(half=True), distill=[DistillTerm("pairwise", 1.0, "body.1", "pool")]),
         r"student 'body.1' gives \(1, 8, 16, 16\), teacher 'pool' gives \(1, 1, 8, 8\).*same spatial size"),
        (lambda: dict(distill=ALL_TERMS), r"distill has 3 term\(s\) \(feature_l2, pixel_rmse, pairwise\) but teacher=None"),
        (lambda: dict(teacher=teacher_net()), r"teacher is given but distill is empty"),
        (lambda: dict(teacher=teacher_net(), distill=[]), r"teacher is given but distill is empty"),
        (lambda: dict(teacher_cache=TeacherCache()), r"teacher_cache is given but teacher=None"),
        (lambda: dict(teacher=_relative(teacher_net()), distill=[DistillTerm("pixel_rmse")]),
         r"teacher.output_kind='inverse_relative' but the student's is 'metric'"),
    ],
    ids=["output-size", "student-layer", "teacher-layer", "device", "feature-size", "pairwise-size", "no-teacher",
         "no-terms", "empty-terms", "cache-no-teacher", "output-kind"],
)
def test_bad_distillation_input_fails_before_the_first_step(tmp_path, make, match):
    student = net()
    before = state(student)
    kwargs = make()
    with pytest.raises(ValueError, match=match):
        fit(student, synth(8), config=config(), out_dir=tmp_path, **kwargs)
    assert_same_state(before, state(student))  # no optimiser step
    assert not (tmp_path / "last.pt").exists()
    t = kwargs.get("teacher")
    if t is not None:  # the hooks were removed
        assert not any(m._forward_hooks for m in t.modules()) and not any(m._forward_hooks for m in student.modules())


def _relative(model: nn.Module) -> nn.Module:
    model.output_kind = "inverse_relative"
    return model


def test_teacher_that_is_the_student_is_refused():
    student = net()
    with pytest.raises(ValueError, match=r"teacher is the student itself .*copy.deepcopy\(model\)"):
        fit(student, synth(4), config=config(), teacher=student, distill=[DistillTerm("pixel_rmse")])
    shares = nn.Sequential(student.body, nn.Conv2d(8, 1, 1))
    with pytest.raises(ValueError, match=r"teacher shares 4 parameter\(s\) with the student \(0.0.weight, 0.0.bias, 0.1.weight"):
        fit(student, synth(4), config=config(), teacher=shares, distill=[DistillTerm("pixel_rmse")])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="feature_l2", weight=-0.5, student_layer="a", teacher_layer="b"),
         r"DistillTerm.weight must be a finite number >= 0, got -0.5"),
        (dict(kind="pixel_rmse", weight=float("nan")), r"DistillTerm.weight must be a finite number >= 0, got nan"),
        (dict(kind="pixel_rmse", weight=float("inf")), r"DistillTerm.weight .* got inf"),
        (dict(kind="pixel_rmse", weight=True), r"DistillTerm.weight .* got True"),
        (dict(kind="feature"), r"DistillTerm.kind must be one of \('feature_l2', 'pixel_rmse', 'pairwise', 'holistic'\)"),
        (dict(kind="feature_l2", student_layer="a"), r"DistillTerm.teacher_layer must name a module"),
        (dict(kind="pixel_rmse", student_layer="a"), r"student_layer and teacher_layer must be None"),
        (dict(kind="pairwise", student_layer="a", teacher_layer="b", options={"scal": 0.5}),
         r"DistillTerm.options=\{'scal': 0.5\} .*takes no option \['scal'\]"),
        (dict(kind="pixel_rmse", name="a.b"), r"DistillTerm.name must be .* without '.'"),
    ],
)
def test_distill_term_rejects_bad_values_naming_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DistillTerm(**kwargs)


def test_distill_terms_of_one_kind_are_numbered_and_names_must_differ():
    two = [DistillTerm("feature_l2", 1.0, "body.0", "body.0"), DistillTerm("feature_l2", 1.0, "body.1", "body.1")]
    hist = fit(net(), synth(4), config=config(epochs=1), teacher=teacher_net(), distill=two)
    assert {"train_feature_l2", "train_feature_l2_2"} <= set(hist.columns)
    with pytest.raises(ValueError, match=r"term names \['x'\] repeat"):
        fit(net(), synth(4), config=config(epochs=1), teacher=teacher_net(),
            distill=[DistillTerm("pixel_rmse", name="x"), DistillTerm("pairwise", 1.0, "body.0", "body.0", name="x")])


def test_a_distillation_loss_as_training_loss_points_to_the_teacher_api():
    with pytest.raises(ValueError, match=r"'distillation' loss.*fit\(\.\.\., teacher=teacher, distill=\[DistillTerm"):
        fit(net(), synth(4), config=config(loss="distill_rmse"))


# --------------------------------------------------------------------------------------- frozen teacher


def test_teacher_is_frozen_in_place_gets_no_gradients_and_keeps_its_weights():
    teacher = teacher_net()  # BatchNorm and dropout, trainable, in training mode: fit must freeze it
    assert teacher.training and all(p.requires_grad for p in teacher.parameters())
    before = state(teacher)  # BatchNorm running statistics included: they move in training mode
    hist = fit(net(), synth(8, augment=True), config=config(epochs=2), teacher=teacher, distill=ALL_TERMS)
    assert math.isfinite(hist["train_loss"].iloc[-1])
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    assert_same_state(before, state(teacher))
    assert not any(m._forward_hooks for m in teacher.modules())
