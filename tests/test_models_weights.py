"""Weights entries, create_model(weights=...), and the one normalisation switch recorded on the model."""

from __future__ import annotations

import shutil

import pytest
import torch

from depthlib.models import (IMAGENET_MEAN, IMAGENET_STD, WeightsEntry, create_model, get_weights, list_weights,
                             resolve_weights)
from depthlib.models import weights as weights_mod
from depthlib.train import load_checkpoint
from depthlib.models.mobilenet_v1 import MobileNetV1


@pytest.fixture
def no_local_weights(tmp_path, monkeypatch):
    """No weights file anywhere, and empty torchvision/Hugging Face caches."""
    monkeypatch.setattr(weights_mod, "weights_dirs", lambda: [tmp_path / "weights"])
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def test_every_entry_says_source_licence_and_transforms():
    names = list_weights()
    assert {"mobilenet_v1.tflite_imagenet", "mobilenet_v2.tflite_imagenet", "resnet18.imagenet",
            "mixnet_s.imagenet"} <= set(names)
    for name in names:
        entry = get_weights(name)
        assert entry.source in ("file", "torchvision", "timm") and entry.license and entry.url
        assert entry.transforms() is None or len(entry.transforms()["mean"]) == 3
    assert get_weights("mobilenet_v2.tflite_imagenet").transforms() == {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    assert len(get_weights("mobilenet_v1.tflite_imagenet").sha256) == 64
    assert list_weights("mbv2") == ["mobilenet_v2.imagenet", "mobilenet_v2.tflite_imagenet"]


def test_unknown_weights_name_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"unknown weights 'mobilenet_v9\.x'.*mobilenet_v1\.tflite_imagenet"):
        create_model("fastdepth", weights="mobilenet_v9.x")
    with pytest.raises(ValueError, match="for encoder 'mobilenet_v2', not 'mobilenet_v1'"):
        create_model("fastdepth", weights="mobilenet_v2.tflite_imagenet")
    with pytest.raises(ValueError, match="pretrained_encoder= is now weights="):
        create_model("fastdepth", pretrained_encoder=None)


def test_auto_is_random_init_without_local_weights(no_local_weights):
    model = create_model("fastdepth", weights="auto")
    assert model.weights is None and model.normalization is None
    assert resolve_weights("resnet18", "auto") is None
    assert resolve_weights("resnet18", "imagenet").source == "torchvision"  # would download; not called here
    assert resolve_weights("mobilenet", "none") is None


def test_auto_prefers_the_converted_file_checked_by_checksum(shared_weights, tmp_path, monkeypatch):
    folder = tmp_path / "w"
    folder.mkdir()
    monkeypatch.setattr(weights_mod, "weights_dirs", lambda: [tmp_path / "bad", folder])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "mobilenet_v1_imagenet_from_tflite.pth").write_bytes(b"truncated")
    shutil.copy(shared_weights / "mobilenet_v1_imagenet_from_tflite.pth", folder)
    with pytest.warns(UserWarning, match="sha256"):
        model = create_model("fastdepth", weights="auto")
    assert model.weights.name == "mobilenet_v1.tflite_imagenet"
    assert model.normalization == {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    sd = torch.load(folder / "mobilenet_v1_imagenet_from_tflite.pth", weights_only=True)["state_dict"]
    assert torch.equal(model.state_dict()["encoder.body.model.0.0.weight"], sd["model.0.0.weight"])
    # the same file given by path is recognised by its checksum and keeps the entry's metadata
    by_path = resolve_weights("mobilenet_v1", folder / "mobilenet_v1_imagenet_from_tflite.pth")
    assert by_path.sha256 == get_weights("mobilenet_v1.tflite_imagenet").sha256 and by_path.source == "path"


def test_explicit_normalisation_that_disagrees_with_the_weights_says_which(tmp_path):
    path = tmp_path / "v1.pth"
    torch.save(MobileNetV1(num_classes=0).state_dict(), path)
    with pytest.raises(ValueError, match=r"expect input normalisation .*0\.485.* normalization='none'"):
        create_model("fastdepth", weights=path, normalization="none")
    assert create_model("fastdepth", weights=path).normalization["std"] == IMAGENET_STD
    assert create_model("fastdepth", normalization="imagenet").normalization["mean"] == IMAGENET_MEAN
    with pytest.raises(ValueError, match="normalization must be"):
        create_model("fastdepth", normalization="zscore")


def test_normalised_exactly_once_through_train_save_reload_predict(tmp_path):
    """One training step, a checkpoint, a reload into a fresh model, a prediction: on every path the encoder
    sees ``(image - mean) / std`` of the weights entry, never the raw image and never a second normalisation."""
    from depthlib.train import TrainConfig, evaluate, fit, predict

    path = tmp_path / "v1.pth"
    torch.save(MobileNetV1(num_classes=0).state_dict(), path)
    mean, std = (0.3, 0.4, 0.5), (0.2, 0.25, 0.5)
    entry = WeightsEntry("test.custom", "mobilenet_v1", "path", str(path), mean=mean, std=std)
    torch.manual_seed(0)
    model = create_model("fastdepth", weights=entry)
    image = torch.rand(3, 32, 32)
    sample = {"image": image, "depth": torch.full((1, 32, 32), 2.0), "mask": torch.ones(1, 32, 32, dtype=torch.bool)}
    data = [dict(sample) for _ in range(4)]
    once = (image - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    seen = []

    def spy(module, args):
        seen.append(args[0].detach().clone())

    def check(net, where):
        handle = net.encoder.register_forward_pre_hook(spy)
        seen.clear()
        yield
        handle.remove()
        assert seen, where
        for x in seen:
            assert torch.allclose(x, once.expand_as(x), atol=1e-6), f"{where}: not normalised exactly once"

    def run_checked(net, where, fn):
        gen = check(net, where)
        next(gen)
        out = fn()
        next(gen, None)
        return out

    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3, schedule="none", progress=False, seed=0)
    run_checked(model, "training", lambda: fit(model, data, None, cfg, tmp_path / "run"))
    run_checked(model, "evaluation", lambda: evaluate(model, data, cfg))
    before = run_checked(model, "prediction", lambda: predict(model, data))

    fresh = create_model("fastdepth")  # random init, no normalisation: the checkpoint brings it back
    assert fresh.normalization is None
    load_checkpoint(tmp_path / "run" / "last.pt", fresh)
    assert fresh.normalization == {"mean": mean, "std": std}
    after = run_checked(fresh, "reloaded prediction", lambda: predict(fresh, data))
    assert torch.allclose(before, after, atol=1e-6)
    # a state dict written before the normalisation was recorded loads and keeps the model's own
    old = {k: v for k, v in fresh.state_dict().items() if not k.startswith("input_")}
    torch.save(old, tmp_path / "old.pt")
    kept = create_model("fastdepth", normalization="imagenet")
    load_checkpoint(tmp_path / "old.pt", kept)
    assert kept.normalization["mean"] == IMAGENET_MEAN
