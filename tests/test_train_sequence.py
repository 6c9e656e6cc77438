"""Sequential training as one call (depthlib.train.fit_sequence; yucel2021's MC -> RedWeb -> DIW): a 3-stage
sequence with different losses run straight equals one interrupted mid-stage-2 and resumed, bit for bit; a
finished fit restores its final weights; bad stages fail before any training. Tiny models: seconds."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from _training import Net, assert_same_state, metric_columns, net  # noqa: F401 (tests/_training.py)
from depthlib.data import open_dataset
from depthlib.train import DistillTerm, Stage, TrainConfig, fit, fit_sequence, load_checkpoint

SIZE = (16, 16)




def cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=4, lr=0.05, schedule="step", step_size=1, gamma=0.5, loss="l1",
                progress=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def stages() -> list[Stage]:
    dense = open_dataset("synth", split="train", n=8, size=SIZE, seed=1)
    pairs = open_dataset("synth", split="train", n=8, size=SIZE, seed=2, pairs=16)
    val = open_dataset("synth", split="val", n=4, size=SIZE, seed=1)
    return [
        Stage("mc", dense, cfg(loss="l1"), val_data=val),
        Stage("redweb", pairs, cfg(loss="ranking_improved", optimizer="adam", lr=1e-3, seed=4)),
        Stage("diw", pairs, cfg(loss="ranking", epochs=1, seed=5, rebalance={"per_epoch": 2}), distill=True),
    ]


def teacher():
    return net(7, aux=False)


TERMS = [DistillTerm("pixel_rmse", 1.0)]


def test_interrupted_and_resumed_sequence_is_bit_identical(tmp_path):
    straight = net()
    h_straight = fit_sequence(straight, stages(), tmp_path / "straight", teacher=teacher(), distill=TERMS)
    assert list(h_straight["stage"]) == ["mc", "mc", "redweb", "redweb", "diw"]
    assert list(h_straight["epoch"]) == [1, 2, 1, 2, 1]
    assert list(h_straight["global_epoch"]) == [1, 2, 3, 4, 5]
    assert list(h_straight.columns[:3]) == ["stage", "epoch", "global_epoch"]
    assert h_straight["val_rmse"].notna().tolist() == [True, True, False, False, False]
    assert h_straight["train_pixel_rmse"].notna().tolist() == [False] * 4 + [True]
    assert sorted(p.name for p in (tmp_path / "straight").iterdir()) == ["01-mc", "02-redweb", "03-diw"]
    assert list(h_straight.attrs["rebalance"]["stage"]) == ["diw", "diw"]
    # the stages continue one another: stage 2 started from stage 1's final weights
    first = load_checkpoint(tmp_path / "straight" / "01-mc" / "last.pt")
    assert first["epoch"] == 2 and load_checkpoint(tmp_path / "straight" / "02-redweb" / "last.pt")["config"]["loss"] == "ranking_improved"

    parted = net()
    h_part = fit_sequence(parted, stages(), tmp_path / "parted", teacher=teacher(), distill=TERMS,
                          stop_after=("redweb", 1))
    assert list(h_part["stage"]) == ["mc", "mc", "redweb"] and not (tmp_path / "parted" / "03-diw").exists()
    resumed = net(99)  # a new session: another initialisation, the same folders
    h_resumed = fit_sequence(resumed, stages(), tmp_path / "parted", teacher=teacher(), distill=TERMS)
    pd.testing.assert_frame_equal(metric_columns(h_straight), metric_columns(h_resumed), check_exact=True)
    pd.testing.assert_frame_equal(h_straight.attrs["rebalance"], h_resumed.attrs["rebalance"], check_exact=True)
    assert_same_state(straight, resumed)
    # without out_dir: nothing written, nothing resumed, the same run
    plain = net()
    h_plain = fit_sequence(plain, stages(), None, teacher=teacher(), distill=TERMS)
    pd.testing.assert_frame_equal(metric_columns(h_straight), metric_columns(h_plain), check_exact=True)
    assert_same_state(straight, plain)


def test_a_finished_fit_restores_its_final_weights_and_trains_no_epoch(tmp_path):
    data = open_dataset("synth", split="train", n=8, size=SIZE, seed=1)
    trained = net()
    h1 = fit(trained, data, config=cfg(), out_dir=tmp_path)
    mtime = (tmp_path / "last.pt").stat().st_mtime_ns
    again = net(42)
    h2 = fit(again, data, config=cfg(), out_dir=tmp_path)
    pd.testing.assert_frame_equal(h1, h2, check_exact=True)  # the saved rows, timings included: nothing ran
    assert_same_state(trained, again)
    assert (tmp_path / "last.pt").stat().st_mtime_ns == mtime  # no epoch, no checkpoint write


def test_a_finished_sequence_called_again_trains_nothing(tmp_path):
    a = net()
    h1 = fit_sequence(a, stages()[:2], tmp_path)
    b = net(5)
    h2 = fit_sequence(b, stages()[:2], tmp_path)
    pd.testing.assert_frame_equal(h1, h2, check_exact=True)
    assert_same_state(a, b)


@pytest.mark.parametrize(
    "make, kwargs, match",
    [
        (lambda s: [s[0], Stage("mc", s[1].train_data, s[1].config)], {}, r"stage name 'mc' repeats \(stage 2\)"),
        (lambda s: [Stage("", s[0].train_data, s[0].config)], {}, r"stage 1 has no usable name \(''\)"),
        (lambda s: [s[0], Stage("red/web", s[1].train_data, s[1].config)], {},
         r"stage 2 name 'red/web' contains a path separator"),
        (lambda s: [s[0], Stage("redweb", DataLoader(s[1].train_data), s[1].config)], {},
         r"stage 'redweb': train_data must be a torch Dataset .*got DataLoader"),
        (lambda s: [Stage("mc", {"image": s[0].train_data[0]}, s[0].config)], {}, r"stage 'mc': train_data must be a torch Dataset .*got dict"),
        (lambda s: [Stage("mc", s[0].train_data, s[0].config, val_data=1)], {},
         r"stage 'mc': val_data must be None or a torch Dataset, got int"),
        (lambda s: [Stage("mc", s[0].train_data, {"epochs": 1})], {}, r"stage 'mc': config must be a TrainConfig"),
        (lambda s: s, {}, r"stage 'diw' has distill=True but fit_sequence got no teacher"),
        (lambda s: s, {"teacher": teacher()}, r"stage 'diw' has distill=True but fit_sequence got no distill terms"),
        (lambda s: [], {}, r"stages must be a non-empty list of Stage"),
        (lambda s: s[:2], {"stop_after": ("diw", 1)}, r"stop_after must be \(a stage name of \['mc', 'redweb'\]"),
        (lambda s: s[:2], {"stop_after": ("mc", 0)}, r"stop_after must be .* got \('mc', 0\)"),
    ],
    ids=["duplicate", "empty", "slash", "loader", "list", "val-list", "config", "no-teacher", "no-terms", "none",
         "stop-stage", "stop-epoch"],
)
def test_bad_stages_fail_before_any_training(tmp_path, make, kwargs, match):
    model = net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        fit_sequence(model, make(stages()), tmp_path, **kwargs)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not any(tmp_path.iterdir())
