"""Issue 12: the MAI layout writer and reader round trip, the chapter's data, distillation through train_eval,
a cached run rebuilt from its state, the scale alignment of the figures and the reported tables' layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from depthlib.data import chapter_data, open_dataset
from depthlib.data.chapters import synth_mai2021_root
from depthlib.data.writer import write_mai2021
from depthlib.metrics import align_log_scale, depth_metrics
from depthlib.reported import reported_rows
from depthlib.train import TrainConfig, rebuild_model, train_eval


def test_written_frames_read_back_through_the_mai_reader(tmp_path):
    base = write_mai2021(tmp_path, 3, (32, 48), seed=1, split="val", batch=2)
    assert base == tmp_path / "val"
    ds = open_dataset("mai2021", tmp_path, split="val")
    assert len(ds) == 3
    synth = open_dataset("synth", split="val", n=3, size=(32, 48), seed=1)
    for i in range(3):
        got, want = ds[i], synth[i]
        assert got["image"].shape == (3, 32, 48)
        assert torch.allclose(got["image"], want["image"], atol=0.5 / 255 + 1e-6)       # 8-bit rounding
        valid = got["mask"]
        assert torch.allclose(got["depth"][valid], want["depth"][valid], atol=0.5e-3 + 1e-6)  # millimetres
    with pytest.raises(FileExistsError, match="already holds frames"):
        write_mai2021(tmp_path, 2, (32, 48), split="val")
    write_mai2021(tmp_path, 2, (32, 48), split="val", overwrite=True)               # asked: replaced, stale removed
    assert sorted(p.name for p in (tmp_path / "val" / "rgb").iterdir()) == ["00000.png", "00001.png"]


@pytest.mark.parametrize("kwargs,match", [({"n": 0}, "n=0"), ({"split": "dev"}, "split='dev'"),
                                          ({"size": (2, 48)}, "size=")])
def test_writer_bad_input_is_refused_before_rendering(tmp_path, kwargs, match):
    args = {"n": 1, "size": (32, 48), "split": "train", **kwargs}
    with pytest.raises(ValueError, match=match):
        write_mai2021(tmp_path, args.pop("n"), **args)
    assert not any(tmp_path.iterdir())


def test_synth_root_is_written_once_and_reused(tmp_path):
    folder = synth_mai2021_root(tmp_path, n_train=2, n_val=1, size=(32, 64), seed=0)
    assert json.loads((folder / "spec.json").read_text())["n_train"] == 2
    stamp = (folder / "train" / "rgb" / "00000.png").stat().st_mtime_ns
    assert synth_mai2021_root(tmp_path, n_train=2, n_val=1, size=(32, 64), seed=0) == folder
    assert (folder / "train" / "rgb" / "00000.png").stat().st_mtime_ns == stamp       # not rendered again
    assert synth_mai2021_root(tmp_path, n_train=3, n_val=1, size=(32, 64), seed=0) != folder


def test_chapter_data_splits_the_real_layout_with_a_seed(tmp_path):
    write_mai2021(tmp_path, 6, (32, 64), split="train")
    data = chapter_data("mai2021", size=(32, 64), n_train=0, n_val=2, seed=3, train_root=tmp_path)
    assert data["primary"] == "mai2021_val"
    assert len(data["train"]) == 4 and len(data["evaluations"]["mai2021_val"]) == 2
    paths = {s["path"] for s in data["train"]} | {s["path"] for s in data["evaluations"]["mai2021_val"]}
    assert len(paths) == 6                                                          # disjoint
    again = chapter_data("mai2021", size=(32, 64), n_train=0, n_val=2, seed=3, train_root=tmp_path)
    assert [s["path"] for s in again["evaluations"]["mai2021_val"]] == \
        [s["path"] for s in data["evaluations"]["mai2021_val"]]
    with pytest.raises(ValueError, match="n_val=6 must be between 1 and 5"):
        chapter_data("mai2021", size=(32, 64), n_train=0, n_val=6, seed=3, train_root=tmp_path)
    with pytest.raises(ValueError, match="train_root is required"):
        chapter_data("synth_mai2021", size=(32, 64), n_train=2, n_val=1)


def test_train_eval_distils_keeps_its_state_and_rebuilds(tmp_path):
    data = chapter_data("synth_mai2021", size=(64, 96), n_train=4, n_val=2, seed=0, train_root=tmp_path)
    config = TrainConfig(epochs=1, batch_size=2, optimizer="adam", lr=1e-3, loss="silog", progress=False, seed=0)
    teacher_run = train_eval("mai2021-teacher", train=data["train"], config=config, keep_state=True,
                             model_overrides={"internal_size": (64, 96)}, predict_on=data["evaluations"]["mai2021_val"])
    teacher = rebuild_model("mai2021-teacher", teacher_run["state_dict"], overrides={"internal_size": (64, 96)})
    again = torch.cat([teacher(s["image"][None]) for s in data["evaluations"]["mai2021_val"]])
    assert torch.allclose(again, teacher_run["predictions"], atol=1e-5)             # the same network back
    term = {"kind": "feature_l2", "weight": 0.5, "student_layer": "decoder.head.0", "teacher_layer": "decoder.head.0",
            "options": {"interpolate": True}}
    out = train_eval("mai2021-1", train=data["train"], config=config, teacher=teacher, distill=[term],
                     evaluations=data["evaluations"])
    assert "train_feature_l2" in out["history"] and np.isfinite(out["mai2021_val_si_rmse"])
    plain = train_eval("mai2021-1", train=data["train"], config=config, teacher=teacher)   # no terms: no teacher
    assert "train_feature_l2" not in plain["history"]
    with pytest.raises(ValueError, match="needs a teacher"):
        train_eval("mai2021-1", train=data["train"], config=config, distill=[term])


def test_align_log_scale_removes_exactly_what_si_rmse_ignores():
    torch.manual_seed(0)
    target = torch.rand(2, 1, 8, 8) * 5 + 0.5
    pred = target * torch.tensor([3.0, 0.2]).view(-1, 1, 1, 1) * torch.exp(0.1 * torch.randn(2, 1, 8, 8))
    aligned = align_log_scale(pred, target)
    log_err = torch.log(aligned) - torch.log(target)
    assert torch.allclose(log_err.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5)
    assert depth_metrics(aligned, target)["si_rmse"] == pytest.approx(depth_metrics(pred, target)["si_rmse"], rel=1e-4)
    assert depth_metrics(aligned, target)["rmse"] < depth_metrics(pred, target)["rmse"]
    empty = torch.zeros_like(target, dtype=torch.bool)
    assert torch.equal(align_log_scale(pred, target, empty), pred)                 # no valid pixel: scale 1


def test_reported_rows_lays_table2_out_as_printed():
    t2 = reported_rows("zhang2021/table2")
    assert list(t2.index) == ["model1", "model2", "model3", "model4", "model3-dist"]
    assert t2.loc["model3-dist", "si-rmse"] == 0.3141 and t2.loc["model4", "latency"] == 176
    with pytest.raises(KeyError, match="no reported key"):
        reported_rows("zhang2021/table9")
