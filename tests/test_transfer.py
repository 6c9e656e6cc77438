"""depthlib.transfer: procedural training sets framed like the NYU evaluation, the metric and aligned numbers of
a run, the grid over generator versions and training-set sizes. Tiny sizes: seconds on one thread."""

from __future__ import annotations

import pytest
import torch

from depthlib.transfer import TRANSFER_METRICS, nyu_eval_set, synth_like_nyu, transfer_grid, transfer_run, transfer_summary

SIZE = (32, 32)


def test_synth_like_nyu_is_cropped_to_size_and_versions_differ():
    v1 = synth_like_nyu(3, SIZE, version=1)
    v2 = synth_like_nyu(3, SIZE, version=2)
    assert len(v1) == 3 and v1[0]["image"].shape == (3, *SIZE) and v1[0]["depth"].shape == (1, *SIZE)
    assert set(v1[0]) == {"image", "depth", "mask", "path"}
    assert not torch.equal(v1[0]["depth"], v2[0]["depth"])
    # nested: a smaller set is the head of a larger one
    assert torch.equal(synth_like_nyu(2, SIZE, version=2)[1]["image"], v2[1]["image"])


def test_transfer_run_reports_metric_and_aligned_numbers():
    train = synth_like_nyu(8, SIZE, version=2)
    evaluation = synth_like_nyu(4, SIZE, version=2, split="val")
    r = transfer_run(train, evaluation, seed=0, epochs=1, batch_size=4, lr=0.01)
    for m in TRANSFER_METRICS:
        assert 0 <= r[f"nyu_{m}"] < float("inf") and 0 <= r[f"nyu_aligned_{m}"] < float("inf")
    # the least-squares fit includes scale 1 and shift 0, so it can only lower each image's RMSE
    assert r["nyu_aligned_rmse"] <= r["nyu_rmse"] + 1e-6
    assert r["train_time_s"] > 0


def test_transfer_grid_rows_and_summary():
    evaluation = synth_like_nyu(4, SIZE, version=1, split="val")
    df = transfer_grid(evaluation, versions=(1, 2), n_train=(4, 8), seeds=(0, 1), size=SIZE, epochs=1, batch_size=4)
    assert len(df) == 8 and set(df["version"]) == {1, 2} and set(df["n_train"]) == {4, 8}
    s = transfer_summary(df)
    assert len(s) == 4 and (s["seeds"] == 2).all()
    assert {"nyu_delta1", "nyu_delta1_std", "nyu_aligned_rmse", "nyu_aligned_rmse_std"} <= set(s.columns)
    with pytest.raises(ValueError, match="evaluation set is empty"):
        transfer_grid([], versions=(2,), n_train=(4,), seeds=(0,), size=SIZE)


def test_nyu_eval_set_reads_the_real_pairs(shared_nyu_data):
    real = nyu_eval_set(shared_nyu_data, (64, 96))
    assert len(real) == 40 and real[0]["image"].shape == (3, 64, 96)
    assert real[0]["depth"].shape == (1, 64, 96) and bool(real[0]["mask"].any())
