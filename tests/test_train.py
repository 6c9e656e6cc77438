"""depthlib.train: config checks, schedules, deterministic and bit-identical resumed runs, NaN stop,
auxiliary heads, evaluate and the LR range test. Tiny models and 16x16 images: seconds on one thread."""

from __future__ import annotations

import hashlib
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from _training import assert_same_state, config, metric_columns  # tests/_training.py
from depthlib.data import open_dataset
from depthlib.data.transforms import Compose, RandomHorizontalFlip, RandomRotation
from depthlib.losses import get_loss
from depthlib.models import create_model
from depthlib.metrics import align_scale_shift, depth_metrics
from depthlib.train import NonFiniteLossError, TrainConfig, evaluate, fit, load_checkpoint, lr_range_test
from depthlib.train import _engine

SIZE = (16, 16)


class TinyDepthNet(nn.Module):
    """Conv-BN-ReLU-Dropout-Conv with a positive output: BN buffers and dropout make resume exercise
    every piece of state (buffers, optimiser moments, RNG). With ``aux=True`` it returns a half-resolution
    intermediate prediction in training mode, as the models with intermediate heads do."""

    output_kind = "metric"

    def __init__(self, aux: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout2d(0.2))
        self.head = nn.Conv2d(8, 1, 3, padding=1)
        self.aux_head = nn.Conv2d(8, 1, 1) if aux else None

    def forward(self, x: torch.Tensor):
        f = self.body(x)
        depth = F.softplus(self.head(f)) + 0.1
        if self.training and self.aux_head is not None:
            aux = F.softplus(self.aux_head(F.avg_pool2d(f, 2))) + 0.1
            return {"depth": depth, "aux": [aux]}
        return depth


def tiny_model(seed: int = 0, aux: bool = False) -> TinyDepthNet:
    torch.manual_seed(seed)
    return TinyDepthNet(aux)


class NaNPixel:
    """Transform that corrupts one sample (by index in its path) with a NaN pixel, as a broken file would;
    the losses mask non-finite targets, but a NaN input reaches the loss through the network."""

    def __init__(self, index: int) -> None:
        self.suffix = f":{index}"

    def __call__(self, sample: dict) -> dict:
        if sample["path"].endswith(self.suffix):
            sample = dict(sample, image=sample["image"].clone())
            sample["image"][:, 3, 5] = float("nan")
        return sample


def synth(n: int, seed: int = 0, split: str = "train", augment: bool = True, corrupt: int | None = None,
          size: tuple[int, int] = SIZE):
    """Procedural scenes; the training augmentation (rotation, flip) draws from torch's RNG, in the main
    process or in the workers, so the data path depends on the seeding too."""
    steps = [RandomRotation(5.0), RandomHorizontalFlip(0.5)] if augment else []
    if corrupt is not None:
        steps.append(NaNPixel(corrupt))
    return open_dataset("synth", split=split, n=n, size=size, seed=seed, transform=Compose(steps) if steps else None)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "field, value",
    [("epochs", 0), ("batch_size", -1), ("optimizer", "rmsprop"), ("lr", 0.0), ("schedule", "cosine"),
     ("gamma", -0.1), ("betas", (0.9, 1.5)), ("log_every", 0), ("seed", -1),
     ("aux_weights", (0.5, float("nan")))],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


def test_amp_is_cuda_only():
    with pytest.raises(ValueError, match="TrainConfig.amp='bf16' needs a CUDA device"):
        TrainConfig(amp="bf16", device="cpu")


def test_config_to_dict_is_checkpoint_safe():
    d = TrainConfig(loss=lambda p, t, m: (p - t).abs().mean(), betas=[0.9, 0.99]).to_dict()
    assert d["loss"].startswith("callable:") and d["betas"] == [0.9, 0.99]
    assert all(isinstance(v, (int, float, str, bool, list, dict, type(None))) for v in d.values())


# --------------------------------------------------------------------------------------- schedules


def _lrs(cfg: TrainConfig, epochs: int) -> list[float]:
    opt = _engine.build_optimizer(nn.Linear(1, 1), cfg)
    sched = _engine.build_scheduler(opt, cfg)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
    return out


@pytest.mark.parametrize("gamma", [0.1, 0.9])
def test_step_schedule_decays_every_n_epochs(gamma):
    # FastDepth / yucel2021: x0.1 every 10 epochs; sagar2021: x0.9 every 10 epochs.
    lrs = _lrs(TrainConfig(lr=0.08, schedule="step", step_size=10, gamma=gamma), 30)
    assert lrs[:10] == [0.08] * 10
    assert lrs[10] == pytest.approx(0.08 * gamma) and lrs[19] == pytest.approx(0.08 * gamma)
    assert lrs[20] == pytest.approx(0.08 * gamma**2)


def test_poly_schedule_power_0_9():
    # zhang2021: polynomial decay from 8e-3 with power 0.9 over the run.
    cfg = TrainConfig(optimizer="adam", lr=8e-3, eps=1e-3, schedule="poly", power=0.9, epochs=5)
    expected = [8e-3 * (1 - e / 5) ** 0.9 for e in range(5)]
    assert _lrs(cfg, 5) == pytest.approx(expected, rel=1e-6)
    assert _lrs(TrainConfig(schedule="none", lr=0.3), 3) == [0.3, 0.3, 0.3]


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_optimizers(name, cls):
    opt = _engine.build_optimizer(nn.Linear(2, 1), TrainConfig(optimizer=name, lr=0.02, weight_decay=0.0, eps=1e-3))
    assert type(opt) is cls and opt.param_groups[0]["lr"] == 0.02
    if name != "sgd":
        assert opt.param_groups[0]["eps"] == 1e-3


# ------------------------------------------------------------------------------------ fit, resume


def fastdepth(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("fastdepth")


@pytest.mark.parametrize(
    "make_model, size, overrides",
    [
        (tiny_model, SIZE, dict()),  # SGD + step schedule, main-process loading, BN + dropout
        (tiny_model, SIZE, dict(optimizer="adamw", lr=0.01, schedule="poly", num_workers=1)),  # worker seeding
        (fastdepth, (32, 32), dict(lr=0.01)),  # the real FastDepth preset at its smallest input
    ],
    ids=["tiny-sgd-step", "tiny-adamw-poly-workers", "fastdepth-sgd-step"],
)
def test_resume_continues_bit_identically(tmp_path, make_model, size, overrides):
    train = synth(8, seed=1, size=size)
    val = synth(4, seed=1, split="val", augment=False, size=size)
    # 3 epochs and a decay every 2: the epoch after the resume also needs the scheduler's state.
    cfg = config(epochs=3, step_size=2, **overrides)

    full = make_model()
    history_full = fit(full, train, val, cfg, out_dir=tmp_path / "full")

    parted = make_model()
    # The first session stops after epoch 1 (the poly schedule still spans 3 epochs)...
    first = fit(parted, train, val, cfg, out_dir=tmp_path / "parted", stop_after_epoch=1)
    assert list(first["epoch"]) == [1]
    # ...and a new process would rebuild the model from scratch: a fresh, differently initialised one.
    resumed = make_model(seed=99)
    history_resumed = fit(resumed, train, val, cfg, out_dir=tmp_path / "parted")

    assert list(history_full["epoch"]) == [1, 2, 3]
    pd.testing.assert_frame_equal(metric_columns(history_full), metric_columns(history_resumed), check_exact=True)
    assert_same_state(full, resumed)
    # The run moved: different epochs have different losses, and the lr followed the schedule.
    assert history_full["train_loss"][0] != history_full["train_loss"][1]
    if cfg.schedule == "step":
        assert history_full["lr"].tolist() == [cfg.lr, cfg.lr, cfg.lr * cfg.gamma]
    else:
        assert history_full["lr"].tolist() == pytest.approx([cfg.lr * (1 - e / 3) ** 0.9 for e in range(3)])
    for col in ("val_rmse", "val_delta1", "val_absrel", "images_per_s", "time_s"):
        assert history_full[col].notna().all()


def test_same_config_same_run_and_seed_matters():
    train = synth(8, seed=1)
    runs = [fit(m, train, config=config(epochs=1, seed=s)) for m, s in ((tiny_model(), 3), (tiny_model(), 3), (tiny_model(), 4))]
    assert runs[0]["train_loss"][0] == runs[1]["train_loss"][0]
    assert runs[0]["train_loss"][0] != runs[2]["train_loss"][0]


def test_checkpoint_is_weights_only_and_complete(tmp_path):
    model = tiny_model()
    fit(model, synth(8), config=config(epochs=1), out_dir=tmp_path)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["config"]["optimizer"] == "sgd"
    assert set(ckpt) >= {"model", "optimizer", "scheduler", "history", "rng", "config"}
    assert isinstance(ckpt["history"], list) and isinstance(ckpt["history"][0], dict)
    assert {"torch", "python", "numpy", "loader"} <= set(ckpt["rng"][0])
    assert_same_state(model, _loaded(ckpt))
    assert (tmp_path / "history.csv").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # nothing left half-written
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


def _loaded(ckpt) -> nn.Module:
    m = TinyDepthNet()
    m.load_state_dict(ckpt["model"])
    return m


def test_resume_rejects_another_architecture_and_another_recipe(tmp_path):
    fit(tiny_model(), synth(8), config=config(epochs=1), out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"does not match the model .TinyDepthNet. \(another architecture\?\): missing keys: aux_head.bias, aux_head.weight"):
        fit(tiny_model(aux=True), synth(8), config=config(epochs=2), out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"another TrainConfig \(lr: 0.05 -> 0.1"):
        fit(tiny_model(), synth(8), config=config(epochs=2, lr=0.1), out_dir=tmp_path)


def test_nan_or_inf_loss_stops_naming_the_batch_and_keeps_the_checkpoint(tmp_path):
    cfg = config(epochs=2, batch_size=4)
    fit(tiny_model(), synth(8), config=cfg, out_dir=tmp_path, stop_after_epoch=1)
    before = sha(tmp_path / "last.pt")
    corrupt = synth(8, corrupt=5)  # the same samples, but sample 5 now has a NaN pixel
    with pytest.raises(NonFiniteLossError, match=r"loss nan at epoch 2, batch \d.*synth:indoor:0:5.*last good checkpoint") as err:
        fit(tiny_model(), corrupt, config=cfg, out_dir=tmp_path)
    assert err.value.epoch == 2 and "synth:indoor:0:5" in err.value.paths
    assert sha(tmp_path / "last.pt") == before
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


def test_nan_loss_without_out_dir():
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch .*out_dir=None"):
        fit(tiny_model(), synth(4, corrupt=0), config=config(epochs=1, batch_size=2))


def _l1_with_nan_gradient(pred, target, mask):
    # finite value (+0) whose gradient is NaN: d sqrt(u)/du = inf at u = 0, times du/dpred = 0
    return get_loss("l1")(pred, target, mask) + torch.sqrt((pred * 0).sum())


def test_finite_loss_with_nan_gradients_stops_before_the_step():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items() if "weight" in k or "bias" in k}
    with pytest.raises(NonFiniteLossError, match=r"non-finite gradients from a finite loss .* at epoch 1, batch 0"):
        fit(model, synth(4), config=config(epochs=1, batch_size=2, loss=_l1_with_nan_gradient))
    for k, v in before.items():
        assert torch.equal(model.state_dict()[k], v), k  # the optimiser never stepped


def test_fit_takes_datasets_not_loaders():
    with pytest.raises(TypeError, match="fit takes datasets, not DataLoaders"):
        fit(tiny_model(), DataLoader(synth(4)), config=config())


def test_fit_names_a_missing_target_key():
    cfg = config(epochs=1, target_keys=("depth", "confidence"))
    with pytest.raises(KeyError, match=r"no \['confidence'\]"):
        fit(tiny_model(), synth(4), config=cfg)


# ---------------------------------------------------------------------------------- auxiliary heads


def test_loss_is_applied_to_every_head_with_upsampled_aux():
    model = tiny_model(aux=True).train()
    batch = torch.utils.data.default_collate([synth(2, augment=False)[i] for i in range(2)])
    x, (depth, mask) = _engine.prepare_batch(batch, torch.device("cpu"), config(), ("depth", "mask"))
    torch.manual_seed(0)
    out = model(x)
    l1 = get_loss("l1")
    loss, final = _engine.compute_loss(out, (depth, mask), l1, (0.6, 0.4))
    up = F.interpolate(out["aux"][0], size=SIZE, mode="bilinear", align_corners=False)
    assert torch.allclose(loss, 0.6 * l1(out["depth"], depth, mask) + 0.4 * l1(up, depth, mask))
    assert final is out["depth"]
    default, _ = _engine.compute_loss(out, (depth, mask), l1, None)  # yucel2021: 0.5 final, 0.5 split
    assert torch.allclose(default, 0.5 * l1(out["depth"], depth, mask) + 0.5 * l1(up, depth, mask))
    with pytest.raises(ValueError, match=r"aux_weights=\(1.0,\) has 1 weights but the model returned 1 final \+ 1"):
        _engine.compute_loss(out, (depth, mask), l1, (1.0,))


def test_fit_trains_a_preset_with_intermediate_heads_and_validates_in_eval_mode():
    # yucel2021's FBNet decoder with its two training-only heads; default weights 0.5 / 0.25 / 0.25
    torch.manual_seed(0)
    model = create_model("mbv2-fbnet", aux_heads=2)
    x = torch.rand(2, 3, 32, 32)
    assert len(model.train()(x)["aux"]) == 2
    hist = fit(model, synth(4, size=(32, 32)), synth(2, split="val", augment=False, size=(32, 32)),
               config(epochs=1, batch_size=2, optimizer="adam", lr=1e-3))
    assert math.isfinite(hist["train_loss"][0]) and math.isfinite(hist["val_rmse"][0])
    assert model.training  # evaluate restored the mode fit left


def test_progress_bars_show_loss_delta1_and_throughput(capsys):
    fit(tiny_model(), synth(4), config=config(epochs=1, batch_size=2, progress=True, log_every=1))
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "loss=" in err and "delta1=" in err and "img/s=" in err


# ---------------------------------------------------------------------------------------- evaluate


def test_evaluate_equals_depth_metrics_on_the_whole_set():
    model, data = tiny_model(), synth(7, split="val", augment=False)
    got = evaluate(model, data, TrainConfig(), batch_size=3, max_depth=3.0)
    batch = torch.utils.data.default_collate([data[i] for i in range(len(data))])
    model.eval()
    with torch.no_grad():
        x, (depth, mask) = _engine.prepare_batch(batch, torch.device("cpu"), TrainConfig(), ("depth", "mask"))
        expected = depth_metrics(model(x), depth, mask, max_depth=3.0)
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert set(got) >= {"rmse", "mae", "absrel", "delta1", "si_rmse"}
    pixel = evaluate(model, data, TrainConfig(), reduction="pixel")
    assert pixel["rmse"] != got["rmse"]


def test_evaluate_aligns_relative_models():
    # A relative inverse-depth model (MiDaS-like) is aligned in inverse space before the metrics.
    model, data = tiny_model(), synth(3, split="val", augment=False)
    model.output_kind = "inverse_relative"
    got = evaluate(model, data, TrainConfig())
    batch = torch.utils.data.default_collate([data[i] for i in range(len(data))])
    model.eval()
    with torch.no_grad():
        x, (depth, mask) = _engine.prepare_batch(batch, torch.device("cpu"), TrainConfig(), ("depth", "mask"))
        expected = depth_metrics(align_scale_shift(model(x), depth, mask, space="inverse"), depth, mask)
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert evaluate(model, data, TrainConfig(), align=None)["rmse"] != got["rmse"]


# ------------------------------------------------------------------------------------ LR range test


def test_lr_range_test_suggests_a_finite_lr_in_range_and_restores_the_model():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    df, lr = lr_range_test(model, synth(16), config(batch_size=4), start_lr=1e-4, end_lr=10.0, num_iter=20)
    assert list(df.columns) == ["lr", "loss", "raw_loss"]
    assert math.isfinite(lr) and 1e-4 <= lr <= 10.0
    assert df["lr"].is_monotonic_increasing and df["lr"].iloc[0] == pytest.approx(1e-4)
    # exponential sweep: constant ratio between consecutive learning rates
    ratios = (df["lr"].iloc[1:].to_numpy() / df["lr"].iloc[:-1].to_numpy())
    assert ratios == pytest.approx(ratios[0])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(torch.rand(3), expected_next)  # the caller's RNG stream did not move
    _, lr_min = lr_range_test(model, synth(16), config(batch_size=4), 1e-4, 10.0, 10, suggestion="min/10")
    assert 1e-5 <= lr_min <= 1.0


def test_lr_range_test_stops_at_divergence():
    # SGD at lr up to 1e6 on this problem blows up long before the sweep ends.
    df, _ = lr_range_test(tiny_model(), synth(16), config(batch_size=4, momentum=0.9), 1e-3, 1e8, 40,
                          suggestion="min/10")
    assert len(df) < 40
    assert df["lr"].iloc[-1] < 1e8
