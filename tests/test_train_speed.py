"""The training-speed switches of TrainConfig (issue 9): validation, what each does, and the fallback with one
warning naming the switch when the machine cannot honour it. Speed itself is measured in
benchmarks/bench_train.py, never here."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from depthlib.data import open_dataset
from depthlib.train import TrainConfig, fit
from depthlib.train import _engine


class Tiny(nn.Module):
    output_kind = "metric"

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 1, 3, padding=1)
        self.seen: list[tuple[torch.dtype, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv(x)
        self.seen.append((f.dtype, x.is_contiguous(memory_format=torch.channels_last)))
        return F.softplus(self.head(F.relu(self.bn(f)))) + 0.1


def tiny(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny()


def data(n: int = 8):
    ds = open_dataset("synth", n=n, size=(16, 16), seed=1)
    return [{k: v for k, v in ds[i].items() if k in ("image", "depth", "mask")} for i in range(n)]


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=1, batch_size=4, lr=0.05, progress=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("field, value", [("cpu_amp", "fp16"), ("cpu_amp", True), ("fused_optimizer", "yes"),
                                          ("persistent_workers", 1), ("compile", "max-autotune"),
                                          ("channels_last", None)])
def test_speed_switches_are_validated_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


def test_defaults_are_the_fast_ones_and_serialise():
    c = TrainConfig()
    assert (c.channels_last, c.cpu_amp, c.fused_optimizer, c.compile) == (True, None, True, False)
    d = c.to_dict()
    assert d["cpu_amp"] is None and d["fused_optimizer"] is True


def test_cpu_features_reports_the_flags_that_decide_bf16():
    f = _engine.cpu_features()
    assert {"model", "capability", "avx2", "avx512_bf16", "amx_bf16", "native_bf16"} <= set(f)
    assert f["native_bf16"] == (f["avx512_bf16"] or f["amx_bf16"])


def _no_native_bf16(monkeypatch):
    real = dict(_engine.cpu_features())
    real.update(avx512_bf16=False, amx_bf16=False, native_bf16=False)
    monkeypatch.setattr(_engine, "cpu_features", lambda: real)


def _native_bf16(monkeypatch):
    real = dict(_engine.cpu_features())
    real.update(native_bf16=True)
    monkeypatch.setattr(_engine, "cpu_features", lambda: real)


def test_bf16_without_native_support_falls_back_with_one_warning(monkeypatch):
    _no_native_bf16(monkeypatch)
    model = tiny()
    with pytest.warns(RuntimeWarning, match="TrainConfig.cpu_amp") as record:
        hist = fit(model, data(), config=cfg(cpu_amp="bf16"))
    assert len([w for w in record if "cpu_amp" in str(w.message)]) == 1
    assert all(dtype == torch.float32 for dtype, _ in model.seen)
    # the fallback is exactly the float32 run: no silent change of results
    ref_model = tiny()
    ref = fit(ref_model, data(), config=cfg(cpu_amp=None))
    assert hist["train_loss"].tolist() == ref["train_loss"].tolist()


def test_auto_bf16_stays_off_without_native_bf16_and_says_nothing(monkeypatch):
    _no_native_bf16(monkeypatch)
    model = tiny()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(model, data(), config=cfg(cpu_amp="auto"))
    assert all(dtype == torch.float32 for dtype, _ in model.seen)


def test_auto_bf16_runs_the_forward_in_bf16_with_float32_weights_where_native(monkeypatch):
    _native_bf16(monkeypatch)
    model = tiny()
    hist = fit(model, data(), config=cfg(cpu_amp="auto"))
    assert model.seen and all(dtype == torch.bfloat16 for dtype, _ in model.seen)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.isfinite(torch.tensor(hist["train_loss"].tolist())).all()


def test_channels_last_reaches_the_model_and_can_be_turned_off():
    on, off = tiny(), tiny()
    fit(on, data(), config=cfg(cpu_amp=None))
    fit(off, data(), config=cfg(cpu_amp=None, channels_last=False))
    assert all(cl for _, cl in on.seen) and on.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(cl for _, cl in off.seen)


def test_fused_optimizer_switch():
    model = tiny()
    assert _engine.build_optimizer(model, cfg()).defaults.get("fused") is True
    assert not _engine.build_optimizer(model, cfg(fused_optimizer=False)).defaults.get("fused")
    for name in ("adam", "adamw"):
        assert _engine.build_optimizer(model, cfg(optimizer=name)).defaults.get("fused") is True


def test_fused_optimizer_falls_back_with_one_warning_where_unsupported():
    model = tiny().to(torch.float64)  # no fused SGD for this dtype on every build: force the error path below
    real_sgd = torch.optim.SGD

    class NoFused(real_sgd):
        def __init__(self, params, **kw):
            if kw.get("fused"):
                raise RuntimeError("fused=True is not supported here")
            super().__init__(params, **kw)

    torch.optim.SGD = NoFused
    try:
        with pytest.warns(RuntimeWarning, match="TrainConfig.fused_optimizer"):
            opt = _engine.build_optimizer(model, cfg())
    finally:
        torch.optim.SGD = real_sgd
    assert not opt.defaults.get("fused")


def test_compile_without_a_compiler_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(_engine.shutil, "which", lambda name: None)
    model = tiny()
    with pytest.warns(RuntimeWarning, match="TrainConfig.compile") as record:
        hist = fit(model, data(), config=cfg(compile=True, cpu_amp=None))
    assert len([w for w in record if "TrainConfig.compile" in str(w.message)]) == 1
    ref = fit(tiny(), data(), config=cfg(cpu_amp=None))
    assert hist["train_loss"].tolist() == ref["train_loss"].tolist()


def test_compile_that_fails_at_the_first_batch_falls_back(monkeypatch):
    def broken_compile(module, *a, **kw):
        def call(x):
            raise RuntimeError("backend exploded")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    model = tiny()
    with pytest.warns(RuntimeWarning, match="TrainConfig.compile=True: torch.compile failed"):
        hist = fit(model, data(), config=cfg(compile=True, cpu_amp=None))
    ref = fit(tiny(), data(), config=cfg(cpu_amp=None))
    assert hist["train_loss"].tolist() == ref["train_loss"].tolist()
