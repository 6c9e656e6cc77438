"""One test per kind of bad input or fault (issue 8, and the "Bad input" sections of issues 7, 10, 12, 13
and 14 where their code exists today), so the count is visible: ``pytest tests/test_bad_input.py -q``.

Each test names the kind in its docstring: what a hostile or careless user does, and what must happen instead
(an error naming the file, parameter or value before any work starts, and nothing lost). Tiny inputs
throughout: the whole module runs in well under a minute on one thread.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import h5py
import nbformat
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from depthlib.data import DataFormatError, open_dataset
from depthlib.data.cli import add_subcommands
from depthlib.data.writer import write_nyu_png
from depthlib.metrics import NegativeDepthWarning, depth_metrics
from depthlib.models import create_model
from depthlib.train import NonFiniteLossError, TrainConfig, fit, load_checkpoint
from depthlib.train.checkpoint import dataset_fingerprint

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZE = (16, 16)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="depthlib")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _synth(n: int = 4, seed: int = 0, size=SIZE):
    return open_dataset("synth", n=n, size=size, seed=seed)


def _cfg(**overrides) -> TrainConfig:
    base = dict(epochs=1, batch_size=4, lr=0.01, progress=False, seed=0)
    base.update(overrides)
    return TrainConfig(**base)


class TinyNet(nn.Module):
    """Conv-BN-ReLU-Conv with a positive output; ``corrupt_after`` training forwards set a BatchNorm running
    variance to inf while the batch statistics (and so the loss) stay finite, as an exploding LR does."""

    output_kind = "metric"

    def __init__(self, corrupt_after: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Conv2d(4, 1, 1)
        self.corrupt_after = corrupt_after
        self.calls = 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.corrupt_after is not None and self.calls > self.corrupt_after:
                with torch.no_grad():  # before BN runs: in training mode it normalises with the batch's stats
                    self.bn.running_var[0] = float("inf")
        y = self.head(torch.relu(self.bn(self.conv(x))))
        return nn.functional.softplus(y) + 0.1


def _tiny(seed: int = 0, **kw) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(**kw)


# =========================================================================================================
# Issue 8, the five that lost data or published a wrong number silently


def test_synth_never_overwrites_an_existing_dataset(tmp_path, capsys):
    """`depthlib synth --out DIR` on a folder holding a dataset: refused (nothing touched) without --overwrite;
    with --overwrite the old frames the new listing does not name are removed."""
    assert _cli(["synth", "--out", str(tmp_path), "--n", "3", "--size", "16x16", "--quiet"]) == 0
    listing = tmp_path / "data" / "nyu2_test.csv"
    before = listing.read_bytes()
    pngs = {p: p.read_bytes() for p in (tmp_path / "data" / "nyu2_test").glob("*.png")}
    assert _cli(["synth", "--out", str(tmp_path), "--n", "1", "--size", "8x8", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already holds a test dataset" in err and "nyu2_test.csv (3 rows)" in err and "--overwrite" in err
    assert listing.read_bytes() == before
    assert {p: p.read_bytes() for p in (tmp_path / "data" / "nyu2_test").glob("*.png")} == pngs
    with pytest.raises(FileExistsError, match="overwrite=True"):  # the library function too
        write_nyu_png(tmp_path, 1, (8, 8))
    assert _cli(["synth", "--out", str(tmp_path), "--n", "1", "--size", "8x8", "--overwrite", "--quiet"]) == 0
    assert len(open_dataset("nyu_png", tmp_path, split="test")) == 1
    assert sorted(p.name for p in (tmp_path / "data" / "nyu2_test").glob("*.png")) == ["00000_colors.png",
                                                                                       "00000_depth.png"]


def test_synth_negative_batch_is_an_argparse_error_and_touches_nothing(tmp_path):
    """`depthlib synth --batch -1` exited 0, said "wrote 3 frames" and wrote (or emptied) the csv."""
    assert _cli(["synth", "--out", str(tmp_path), "--n", "2", "--size", "8x8", "--quiet"]) == 0
    before = (tmp_path / "data" / "nyu2_test.csv").read_bytes()
    with pytest.raises(SystemExit) as exc:
        _cli(["synth", "--out", str(tmp_path), "--n", "3", "--batch", "-1", "--overwrite"])
    assert exc.value.code == 2
    assert (tmp_path / "data" / "nyu2_test.csv").read_bytes() == before
    with pytest.raises(ValueError, match=r"batch=-1 must be a positive int"):
        write_nyu_png(tmp_path / "new", 3, (8, 8), batch=-1)
    assert not (tmp_path / "new").exists()


def test_fit_never_writes_a_nonfinite_model_state(tmp_path):
    """An exploding LR without a validation set: BatchNorm running statistics become inf while every loss is
    finite; last.pt was written with them. Now fit stops naming the buffer, and last.pt keeps epoch 1."""
    data = _synth(4)
    model = _tiny(corrupt_after=1)  # one batch per epoch: epoch 1 clean, epoch 2 corrupts
    with pytest.raises(NonFiniteLossError, match=r"after epoch 2: the model state holds NaN or inf values "
                                                 r"\(bn\.running_var\).*last good checkpoint .* \(epoch 1\)"):
        fit(model, data, config=_cfg(epochs=3), out_dir=tmp_path)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_a_noskip_checkpoint_does_not_load_into_fastdepth(tmp_path):
    """fastdepth-noskip and fastdepth have the same keys and shapes; a checkpoint of one loaded silently into
    the other, through load_checkpoint and through resume. The preset and overrides are recorded and compared."""
    data = open_dataset("synth", n=2, size=(32, 32), seed=0)
    torch.manual_seed(0)
    fit(create_model("fastdepth-noskip"), data, config=_cfg(batch_size=2), out_dir=tmp_path)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["model_meta"]["preset"] == "fastdepth-noskip"
    with pytest.raises(ValueError, match=r"another network than 'fastdepth'.*preset: checkpoint 'fastdepth-noskip'"):
        load_checkpoint(tmp_path / "last.pt", create_model("fastdepth"))
    with pytest.raises(ValueError, match=r"last\.pt was written for another network .*fastdepth-noskip"):
        fit(create_model("fastdepth"), data, config=_cfg(batch_size=2, epochs=2), out_dir=tmp_path)
    same = create_model("fastdepth-noskip")
    load_checkpoint(tmp_path / "last.pt", same)  # the right network loads
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in same.state_dict().items())
    # Overrides count as much as the name: fastdepth(skip="none") is not fastdepth.
    torch.manual_seed(0)
    fit(create_model("fastdepth", skip="none"), data, config=_cfg(batch_size=2), out_dir=tmp_path / "b")
    with pytest.raises(ValueError, match=r"overrides: checkpoint \{'skip': 'none'\}, model \{\}"):
        load_checkpoint(tmp_path / "b" / "last.pt", create_model("fastdepth"))


def test_resume_from_other_initial_weights_is_refused(tmp_path):
    """The weights entry the encoder started from is recorded too: a resumed run must continue the same run
    (plain loading for inference does not compare it: the checkpoint's weights replace the start anyway)."""
    def model(weights):
        m = _tiny()
        m.preset_config = {"preset": "tiny", "overrides": {}, "weights": weights}
        return m

    fit(model("mobilenet_v1_imagenet.pth"), _synth(4), config=_cfg(epochs=2), out_dir=tmp_path, stop_after_epoch=1)
    assert load_checkpoint(tmp_path / "last.pt")["model_meta"]["weights"] == "mobilenet_v1_imagenet.pth"
    with pytest.raises(ValueError, match=r"weights: checkpoint 'mobilenet_v1_imagenet\.pth', model None"):
        fit(model(None), _synth(4), config=_cfg(epochs=2), out_dir=tmp_path)
    load_checkpoint(tmp_path / "last.pt", model(None))


def test_an_8bit_depth_png_in_the_16bit_test_split_is_an_error(tmp_path):
    """DenseDepth's test split is 16-bit millimetres; an 8-bit png there was read with the train split's
    255 = 10 m encoding (mean 0.42 m instead of 2.88 m), without a warning."""
    write_nyu_png(tmp_path, 2, (8, 8))
    depth_png = tmp_path / "data" / "nyu2_test" / "00001_depth.png"
    Image.fromarray(np.full((8, 8), 73, np.uint8)).save(depth_png)  # 2.88 m as 255 = 10 m would be 73
    ds = open_dataset("nyu_png", tmp_path, split="test")
    ds[0]
    with pytest.raises(DataFormatError, match=r"00001_depth\.png: expected a 16-bit depth png, got 8-bit.*test split"):
        ds[1]


# =========================================================================================================
# Issue 8, errors that came late (after an epoch) or unclear: now before any work, naming the culprit


@pytest.mark.parametrize("field, value, message", [
    ("metric_reduction", "mean", r"metric_reduction must be one of \('per_image', 'pixel'\), got 'mean'"),
    ("betas", 0.9, r"betas must be a pair of numbers in \[0, 1\).*got 0\.9"),
    ("device", "tpu", r"device must be 'cpu', 'cuda', 'cuda:<index>' or 'mps', got 'tpu'"),
    ("drop_last", "False", r"drop_last must be True or False, got 'False' \(a string is not a bool"),
    ("deterministic", "no", r"deterministic must be True or False, got 'no'"),
    ("max_depth", "10", r"max_depth must be a positive finite number, got '10'"),
    ("loss", "l3", r"TrainConfig\.loss='l3'.*unknown loss 'l3'; valid names: .*smooth_l1"),
    ("channels_last", "yes", r"channels_last must be True or False, got 'yes'"),
    ("num_workers", True, r"num_workers must be a non-negative int, got True"),
])
def test_train_config_checks_every_field_at_construction(field, value, message):
    """TrainConfig(metric_reduction=...) failed only after epoch 1; betas=0.9 raised a TypeError about a float;
    device='tpu' failed in fit; drop_last='False' and deterministic='no' were taken as true; max_depth='10'."""
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_reader_max_depth_as_a_string_is_refused_at_open(tmp_path):
    """open_dataset(..., max_depth='10') failed at the first sample with a TypeError comparing a tensor to a str."""
    write_nyu_png(tmp_path, 1, (8, 8))
    with pytest.raises(ValueError, match=r"open_dataset\('nyu_png'\): max_depth='10' must be a number of metres"):
        open_dataset("nyu_png", tmp_path, split="test", max_depth="10")


def test_train_config_max_depth_below_min_depth():
    """max_depth < min_depth failed only in the validation metrics after the first epoch."""
    with pytest.raises(ValueError, match=r"max_depth=0\.0005 must be larger than min_depth=0\.001"):
        TrainConfig(max_depth=0.0005)


def test_resume_on_another_dataset_is_refused_before_training(tmp_path):
    """Resuming with another train_data went ahead silently."""
    fit(_tiny(), _synth(4, seed=0), config=_cfg(epochs=2), out_dir=tmp_path, stop_after_epoch=1)
    with pytest.raises(ValueError, match=r"trained on another dataset .*identity"):
        fit(_tiny(), _synth(4, seed=1), config=_cfg(epochs=2), out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"trained on another dataset .*len: 4 -> 8"):
        fit(_tiny(), _synth(8, seed=0), config=_cfg(epochs=2), out_dir=tmp_path)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    # Samples held in memory (the book's chapters train on lists of sample dicts) are told apart by their paths.
    samples = [_synth(4)[i] for i in range(2)]
    assert dataset_fingerprint(samples) == dataset_fingerprint([dict(s) for s in samples])
    assert dataset_fingerprint(samples) != dataset_fingerprint(samples[::-1])


def test_resume_with_fewer_epochs_than_done_is_refused(tmp_path):
    """Resuming a 2-epoch checkpoint with epochs=1 returned silently as if trained as asked."""
    fit(_tiny(), _synth(4), config=_cfg(epochs=2), out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"holds 2 trained epochs but TrainConfig\.epochs=1"):
        fit(_tiny(), _synth(4), config=_cfg(epochs=1), out_dir=tmp_path)


def test_out_dir_that_is_a_file_fails_before_the_first_epoch(tmp_path):
    """out_dir pointing to a file failed only when the first checkpoint was written, after an epoch."""
    target = tmp_path / "results.txt"
    target.write_text("keep me")

    class Exploding(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            raise AssertionError("a sample was read before the out_dir check")

    with pytest.raises(ValueError, match=r"out_dir=.*results\.txt' is an existing file"):
        fit(_tiny(), Exploding(), config=_cfg(), out_dir=target)
    assert target.read_text() == "keep me"


def test_papermill_negative_epochs_fails_in_the_setup_cell(tmp_path, monkeypatch):
    """`-p epochs -1` passed the setup cell (an int like the profile's) and failed, or did nothing, later."""
    import depthlib.book as book

    _project(tmp_path, monkeypatch)
    with pytest.raises(book.ParameterError, match=r"parameter 'epochs' of notebook 'nb' \(override\) must be > 0, got -1"):
        book.setup("nb", "t", epochs=-1, show=False)
    with pytest.raises(book.ParameterError, match=r"parameter 'size' .* must be > 0, got \[0, 12\]"):
        book.setup("nb", "t", size=[0, 12], show=False)
    with pytest.raises(book.ParameterError, match=r"parameter 'n_train' .* must be >= 0, got -3"):
        book.setup("nb", "t", n_train=-3, show=False)
    assert book.setup("nb", "t", n_train=0, show=False).n_train == 0  # 0 = the whole split


def test_profile_name_is_not_a_path(tmp_path, monkeypatch):
    """A profile name like '../x' was read as a path (profiles/../x.yaml)."""
    import depthlib.book as book

    root = _project(tmp_path, monkeypatch)
    (root / "x.yaml").write_text(yaml.safe_dump({"defaults": {}, "notebooks": {"nb": {"epochs": 1}}}))
    with pytest.raises(book.ParameterError, match=r"profile in profiles/, not a path, got '\.\./x'; profiles: t"):
        book.setup("nb", "../x", show=False)


@pytest.mark.book
def test_one_corrupt_notebook_does_not_abort_the_book_run(tmp_path, monkeypatch, capsys):
    """One corrupt book/*.ipynb (or notebooks/*.ipynb) aborted the whole book run; the others must still run."""
    from depthlib.book import runner

    root = _project(tmp_path, monkeypatch, chapters=["a", "b", "c"])
    (root / "notebooks").mkdir()
    for name in ("a", "b", "c"):
        cells = [nbformat.v4.new_code_cell('profile = "quick"'),
                 nbformat.v4.new_code_cell(f'import depthlib.book\nP = depthlib.book.setup("{name}", profile)\n'
                                           f'print("{name} ran")')]
        cells[0].metadata["tags"] = ["parameters"]
        nb = nbformat.v4.new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, root / "notebooks" / f"{name}.ipynb")
    (root / "book").mkdir()
    (root / "book" / "a.ipynb").write_bytes(b"\x00\x01 not json")         # a corrupt executed copy
    (root / "notebooks" / "b.ipynb").write_text('{"cells": [truncated')    # a corrupt source
    runs, _ = runner.run_book("t", root=root, build=False)
    status = {r.name: r.status for r in runs}
    assert status == {"a": "executed", "b": "failed", "c": "executed"}
    b = next(r for r in runs if r.name == "b")
    assert "b.ipynb is not a readable notebook" in b.error
    page = nbformat.read(root / "book" / "b.ipynb", as_version=4)
    assert "Not rebuilt" in page.cells[0].source
    assert "book/a.ipynb is not a readable notebook" in capsys.readouterr().out


def test_binary_csv_listing_names_the_file(tmp_path):
    """A binary file saved as data/nyu2_test.csv raised a UnicodeDecodeError / csv.Error naming nothing."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "nyu2_test.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    with pytest.raises(DataFormatError, match=r"nyu2_test\.csv: a binary file, not a csv listing"):
        open_dataset("nyu_png", tmp_path, split="test")


def test_h5_whose_rgb_is_a_group_names_the_file(tmp_path):
    """An nyu_h5 file whose 'rgb' is a group (not an array) failed inside h5py without naming the file."""
    (tmp_path / "val" / "scene").mkdir(parents=True)
    with h5py.File(tmp_path / "val" / "scene" / "00001.h5", "w") as f:
        f.create_group("rgb").create_dataset("x", data=np.zeros(3))
        f["depth"] = np.ones((8, 8), np.float32)
    ds = open_dataset("nyu_h5", tmp_path, split="val")
    with pytest.raises(DataFormatError, match=r"00001\.h5: 'rgb' must be an HDF5 dataset.*Group"):
        ds[0]


@pytest.mark.parametrize("content", [b"garbage, not MATLAB" * 20, b""], ids=["garbage", "empty"])
def test_garbage_splits_mat_names_the_file(tmp_path, content):
    """A garbage splits.mat raised scipy's own error without the file."""
    with h5py.File(tmp_path / "nyu_depth_v2_labeled.mat", "w") as f:
        f["images"] = np.zeros((2, 3, 8, 6), np.uint8)
        f["depths"] = np.ones((2, 8, 6), np.float32)
    (tmp_path / "splits.mat").write_bytes(content)
    with pytest.raises(DataFormatError, match=r"splits\.mat: cannot read as a MATLAB file"):
        open_dataset("nyu_labeled", tmp_path, split="test")


def test_splits_mat_with_fractional_indices_names_the_file(tmp_path):
    """A splits.mat whose frame numbers are not integers was truncated silently to other frames."""
    import scipy.io

    with h5py.File(tmp_path / "nyu_depth_v2_labeled.mat", "w") as f:
        f["images"] = np.zeros((3, 3, 8, 6), np.uint8)
        f["depths"] = np.ones((3, 8, 6), np.float32)
    scipy.io.savemat(tmp_path / "splits.mat", {"trainNdxs": np.array([[1.0], [2.5]]), "testNdxs": np.array([[3.0]])})
    with pytest.raises(DataFormatError, match=r"splits\.mat: 'trainNdxs' holds non-integer frame numbers"):
        open_dataset("nyu_labeled", tmp_path, split="train")


def test_truncated_checkpoint_names_the_file(tmp_path):
    """A truncated last.pt: load_checkpoint and resume name the file (and say what is wrong)."""
    fit(_tiny(), _synth(4), config=_cfg(epochs=2), out_dir=tmp_path, stop_after_epoch=1)
    path = tmp_path / "last.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"last\.pt: not a readable checkpoint \(truncated"):
        load_checkpoint(path, _tiny())
    with pytest.raises(ValueError, match=r"last\.pt: not a readable checkpoint"):
        fit(_tiny(), _synth(4), config=_cfg(epochs=2), out_dir=tmp_path)


def test_malicious_pickle_is_refused(tmp_path):
    """Keep: a checkpoint whose pickle runs code on load is refused (weights_only=True), by load_checkpoint
    and by resume, and the code never runs."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    torch.save({"format": 2, "model": {}, "evil": Payload()}, tmp_path / "last.pt")
    with pytest.raises(ValueError, match=r"last\.pt: not a readable checkpoint .*weights_only"):
        load_checkpoint(tmp_path / "last.pt")
    with pytest.raises(ValueError, match=r"last\.pt: not a readable checkpoint"):
        fit(_tiny(), _synth(4), config=_cfg(), out_dir=tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("argv, message", [
    (["--size", "-8x32"], "--size"),                        # argparse takes it for an option: still names --size
    (["--size=-8x32"], "--size '-8x32': both sides must be >= 4"),
    (["--batch", "0"], "argument --batch: '0' must be >= 1"),
    (["--threads", "0"], "argument --threads: '0' must be >= 1"),
    (["--n", "2.7"], "argument --n: '2.7' is not an integer"),
])
def test_synth_bad_arguments_are_argparse_errors(tmp_path, capsys, argv, message):
    """`depthlib synth --size -8x32`, `--batch 0`, `--threads 0`, `--n 2.7`: usage errors (exit 2) naming the
    option, before anything is rendered or written."""
    with pytest.raises(SystemExit) as exc:
        _cli(["synth", "--out", str(tmp_path / "out"), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_synth_out_that_is_a_file_is_an_argparse_error(tmp_path, capsys):
    """`depthlib synth --out FILE` failed inside mkdir with a traceback."""
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    with pytest.raises(SystemExit) as exc:
        _cli(["synth", "--out", str(target), "--n", "1"])
    assert exc.value.code == 2 and "is an existing file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("n", [2.7, 0, "3", True])
def test_synth_dataset_n_is_not_truncated(n):
    """open_dataset('synth', n=2.7) silently gave 2 frames."""
    with pytest.raises(ValueError, match=rf"n={n!r} must be an int"):
        open_dataset("synth", n=n, size=SIZE)


def test_negative_predictions_are_clamped_with_a_warning():
    """Negative predictions were clamped to 1 mm in the metrics without a word. Now a NegativeDepthWarning
    with the count (a warning, not an error: the clamp is the evaluation convention and a model early in
    training must still get its numbers; see depthlib.metrics)."""
    target = torch.full((1, 1, 4, 4), 2.0)
    pred = target.clone()
    pred[0, 0, 0, :3] = -1.5
    with pytest.warns(NegativeDepthWarning, match=r"3 of 16 valid pixels have a negative predicted depth \(lowest -1\.5 m\)"):
        m = depth_metrics(pred, target)
    assert m["delta1"] == pytest.approx(13 / 16)


def test_fit_is_deterministic_given_the_initial_weights_and_says_so():
    """fit was documented as deterministic while two runs differed unless the caller seeded before
    create_model. The contract (fit's docstring): fit seeds everything it draws itself; the initial weights are
    the caller's. Seeding before create_model makes two runs identical; unseeded models start apart."""
    doc = " ".join(fit.__doc__.split())
    assert "from the same initial weights" in doc and "torch.manual_seed(config.seed)" in doc
    data = _synth(4)

    def run(seed_before_model: bool, draws_before: int) -> torch.Tensor:
        torch.rand(draws_before)  # whatever the caller's session drew from torch's generator before
        if seed_before_model:
            torch.manual_seed(0)
        model = TinyNet()
        fit(model, data, config=_cfg(epochs=2))
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(run(True, 0), run(True, 5))
    assert not torch.equal(run(False, 0), run(False, 5))


# ----------------------------------------------- kill -9: resume stays bit-identical, stale temporaries go

_KILL_SCRIPT = textwrap.dedent('''
    import os, signal, sys, pathlib, hashlib
    import torch
    torch.set_num_threads(1)
    from torch import nn
    from depthlib.data import open_dataset
    from depthlib.train import TrainConfig, fit
    import depthlib.train.checkpoint as checkpoint

    out, mode = pathlib.Path(sys.argv[1]), sys.argv[2]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout2d(0.2))
            self.head = nn.Conv2d(4, 1, 1)

        def forward(self, x):
            return nn.functional.softplus(self.head(self.body(x))) + 0.1

    class Data(torch.utils.data.Dataset):
        def __init__(self):
            self.inner = open_dataset("synth", n=8, size=(16, 16), seed=0)
            self.reads = 0

        def __len__(self):
            return 8

        def __getitem__(self, i):
            self.reads += 1
            if mode == "kill_mid_epoch" and self.reads == 8 + 5:  # epoch 2, second batch
                os.kill(os.getpid(), signal.SIGKILL)
            return self.inner[i]

    if mode == "kill_in_write":
        real_save, calls = torch.save, []

        def save(obj, f, *a, **k):
            calls.append(1)
            if len(calls) == 2:  # the checkpoint of epoch 2, half written
                f.write(b"PK\\x03\\x04 half a checkpoint")
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, f, *a, **k)

        checkpoint.torch.save = save

    torch.manual_seed(0)
    model = Net()
    cfg = TrainConfig(epochs=3, batch_size=4, lr=0.05, optimizer="adam", progress=False, seed=1)
    fit(model, Data(), config=cfg, out_dir=out if mode != "ref" else out / "ref")
    state = b"".join(v.numpy().tobytes() for v in model.state_dict().values())
    (out / f"{mode}.sha").write_text(hashlib.sha256(state).hexdigest())
''')


@pytest.mark.slow
@pytest.mark.parametrize("where", ["kill_mid_epoch", "kill_in_write"])
def test_kill_9_resume_is_bit_identical_and_cleans_the_temporary(tmp_path, where):
    """Keep: `kill -9` mid-epoch or inside the checkpoint write, then resume: bit-identical to an uninterrupted
    run. A `.last.pt.*.tmp` the kill left behind is removed on the next start (it used to stay forever)."""
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

    def run(mode: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(tmp_path), mode], env=env, capture_output=True,
                              text=True, timeout=300)

    ref = run("ref")
    assert ref.returncode == 0, ref.stderr
    killed = run(where)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    stale = list(tmp_path.glob(".last.pt.*.tmp"))
    assert bool(stale) == (where == "kill_in_write")
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    resumed = run("resume")
    assert resumed.returncode == 0, resumed.stderr
    assert not list(tmp_path.glob(".last.pt.*.tmp"))
    assert (tmp_path / "resume.sha").read_text() == (tmp_path / "ref.sha").read_text()


# =========================================================================================================
# Earlier issues' "Bad input" sections, where the code exists today


def test_mai2021_reader_names_the_first_unmatched_file(tmp_path):
    """Issue 12: the MAI reader on a folder where rgb and depth names do not match names the first unmatched file."""
    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "rgb" / f"{name}.png")
    Image.fromarray(np.ones((8, 8), np.uint16) * 1000).save(tmp_path / "depth" / "a.png")
    Image.fromarray(np.ones((8, 8), np.uint16) * 1000).save(tmp_path / "depth" / "c.png")
    with pytest.raises(FileNotFoundError, match=r"do not match .*rgb/b\.png has no depth .*depth/b\.png"):
        open_dataset("mai2021", tmp_path)
    Image.fromarray(np.ones((8, 8), np.uint16) * 1000).save(tmp_path / "depth" / "b.png")
    # the other direction: a depth map without its image (c.png) is named too, not silently ignored
    with pytest.raises(FileNotFoundError, match=r"do not match .*depth/c\.png has no rgb image .*rgb/c\.png"):
        open_dataset("mai2021", tmp_path)
    (tmp_path / "depth" / "c.png").unlink()
    assert len(open_dataset("mai2021", tmp_path)) == 2


def test_unknown_encoder_lists_the_zoo():
    """Issue 13: an encoder name that is not in the zoo lists the zoo."""
    with pytest.raises(ValueError, match=r"unknown encoder 'mobilenet_v9'; valid encoders: .*mobilenet_v2.*resnet18"):
        create_model("fastdepth", encoder="mobilenet_v9")


@pytest.mark.parametrize("fn", ["ranking", "whdr"])
def test_ordinal_pair_outside_the_image(fn):
    """Issue 14: an ordinal pair outside the image is a clear error naming the pair (it named no value)."""
    from depthlib.losses import get_loss
    from depthlib.metrics import whdr

    pred = torch.rand(1, 1, 8, 8) + 0.5
    f = get_loss("ranking") if fn == "ranking" else whdr
    with pytest.raises(ValueError, match=r"a pair lies outside the 8x8 prediction: pairs\[0, 0\] = \[0, 0, 20, 3\]"):
        f(pred, torch.tensor([[[0, 0, 20, 3]]]), torch.tensor([[1]]))


@pytest.mark.parametrize("fn", ["ranking", "whdr"])
def test_ordinal_relation_other_than_minus_one_zero_one(fn):
    """Issue 14: a relation value other than -1/0/+1 is a clear error naming the value (it named none)."""
    from depthlib.losses import get_loss
    from depthlib.metrics import whdr

    pred = torch.rand(1, 1, 8, 8) + 0.5
    f = get_loss("ranking") if fn == "ranking" else whdr
    with pytest.raises(ValueError, match=r"relation values must be \+1 \(A farther\), -1 \(A closer\) or 0 .*"
                                         r"relation\[0, 0\] = 2"):
        f(pred, torch.tensor([[[0, 0, 2, 3]]]), torch.tensor([[2]]))


def test_rebalancing_with_negative_weights_names_the_value():
    """Issue 14: a rebalancing schedule with negative weights was accepted silently."""
    from depthlib.losses import MultiLossRebalancer

    with pytest.raises(ValueError, match=r"weights must be finite, >= 0 .*pairwise=-0\.5"):
        MultiLossRebalancer(["pixelwise", "pairwise"], weights=[1.5, -0.5])


def test_unknown_dataset_kind_lists_the_kinds():
    """Issue 14: an unknown dataset kind lists the known ones (ReDWeb has a reader now; MegaDepth has none), and
    the ordinal chapter's set names are checked the same way."""
    from depthlib.data import relative_chapter_data

    with pytest.raises(ValueError, match=r"'megadepth'.*nyu_png.*redweb.*synth"):
        open_dataset("megadepth", "/nonexistent")
    with pytest.raises(ValueError, match=r"megadepth"):
        relative_chapter_data(["mc", "megadepth"], size=(32, 64), n_train=2, n_test=2)


# ---------------------------------------------------------------------------------------------- helpers


def _project(tmp_path: pathlib.Path, monkeypatch, chapters=("nb",)) -> pathlib.Path:
    """A minimal project root with profiles/t.yaml (as in tests/test_book.py)."""
    profile = {
        "description": "test profile",
        "defaults": {"seeds": [0], "data": "synth", "num_threads": 1},
        "notebooks": {name: {"epochs": 3, "size": [8, 12], "n_train": 4, "lr": 0.01} for name in chapters},
    }
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "t.yaml").write_text(yaml.safe_dump(profile))
    toc = "format: jb-book\nroot: book/index\nchapters:\n" + "".join(f"- file: book/{c}\n" for c in chapters)
    (tmp_path / "_toc.yml").write_text(toc)
    monkeypatch.setenv("DEPTHLIB_ROOT", str(tmp_path))
    monkeypatch.setenv("DEPTHLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DEPTHLIB_RESULTS", str(tmp_path / "results"))
    return tmp_path
