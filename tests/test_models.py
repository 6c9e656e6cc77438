"""Encoders, decoders, the DepthNet wrapper, the registry and checkpoints (small tensors, random init)."""

from __future__ import annotations

import pytest
import torch

from depthlib.models import (
    DECODER_BLOCKS,
    DepthNet,
    MobileNetV1,
    UNetDecoder,
    create_encoder,
    create_model,
    list_encoders,
    list_models,
    model_doc,
    register_model,
)
from depthlib.models import encoders as enc_mod
from depthlib.models.decoders import Unpool
from depthlib.train import load_checkpoint


# vit_large (304 M parameters, ~5 s to build here) is checked once, by test_vit_large_is_dpt_larges_backbone
@pytest.mark.parametrize("name", [n for n in list_encoders() if n != "vit_large"])
def test_encoder_strides_and_channels(name):
    enc = create_encoder(name)
    feats = enc(torch.rand(2, 3, 64, 96))
    assert len(feats) == 5
    for f, s, c in zip(feats, enc.strides, enc.channels):
        assert f.shape == (2, c, 64 // s, 96 // s)


def test_mobilenet_v1_is_fastdepths():
    enc = create_encoder("mobilenet")  # alias
    assert enc.channels == (64, 128, 256, 512, 1024)
    # FastDepth's 14 layers, ReLU6, FastDepth's key layout (model.k.0 dw conv, model.k.3 pw conv).
    keys = MobileNetV1(num_classes=0).state_dict().keys()
    assert "model.0.0.weight" in keys and "model.13.3.weight" in keys and "model.14.0.weight" not in keys
    assert any(isinstance(m, torch.nn.ReLU6) for m in enc.modules())
    assert not any(type(m) is torch.nn.ReLU for m in enc.modules())


def test_encoder_head_appends_classifier_conv():
    assert create_encoder("mixnet_s", head=True).channels[-1] == 1536
    assert create_encoder("mobilenet_v3_large", head=True).channels[-1] == 1280
    # a no-op where the taps already end at the last conv
    assert create_encoder("mobilenet_v2", head=True).channels[-1] == 1280


def test_unknown_encoder_lists_valid():
    with pytest.raises(ValueError, match="valid encoders: .*mobilenet_v2"):
        create_encoder("vgg16")


def test_shared_weights_load_by_path(shared_weights):
    v1 = shared_weights / "mobilenet_v1_imagenet_from_tflite.pth"
    enc = create_encoder("mobilenet_v1", weights=v1)
    sd = torch.load(v1, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(enc.state_dict()["body.model.13.3.weight"], sd["model.13.3.weight"])
    v2 = shared_weights / "mobilenet_v2_imagenet_from_tflite.pth"
    enc2 = create_encoder("mobilenet_v2", weights=v2)
    sd2 = torch.load(v2, map_location="cpu", weights_only=True)
    assert torch.equal(enc2.state_dict()["body.features.18.0.weight"], sd2["features.18.0.weight"])
    # through the registry too
    model = create_model("fastdepth", weights=v1)
    assert torch.equal(model.state_dict()["encoder.body.model.0.0.weight"], sd["model.0.0.weight"])


def test_wrong_weights_file_names_keys(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(create_encoder("resnet18").body.state_dict(), path)
    with pytest.raises(ValueError, match=r"missing keys \['model\.0\.0\.weight"):
        create_encoder("mobilenet_v1", weights=path)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        create_encoder("mobilenet_v1", weights=tmp_path / "nope.pth")


def test_path_weights_are_loaded_into_full_model(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": ref.state_dict()}, path)  # wrapped, classifier included
    enc = create_encoder("resnet18", weights=path)
    assert torch.equal(enc.state_dict()["body.layer4.1.conv2.weight"], ref.layer4[1].conv2.weight)


def test_imagenet_offline_fails_fast_naming_local_option(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(enc_mod, "_reachable", lambda host, timeout=3.0: False)
    with pytest.raises(RuntimeError, match="weights=./path/to/weights.pth."):
        create_encoder("resnet18", weights="imagenet")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(RuntimeError, match="not cached"):
        create_encoder("mixnet_s", weights="imagenet")
    with pytest.raises(RuntimeError, match="mobilenet_v1_imagenet_from_tflite.pth"):
        create_encoder("mobilenet_v1", weights="imagenet")


@pytest.mark.parametrize("block", DECODER_BLOCKS)
@pytest.mark.parametrize("skip", ["none", "add", "concat"])
def test_unet_decoder_blocks_and_skips(block, skip):
    enc_ch = (8, 12, 16, 24, 32)
    feats = [torch.rand(1, c, 64 // s, 64 // s) for c, s in zip(enc_ch, (2, 4, 8, 16, 32))]
    dec = UNetDecoder(enc_ch, block=block, channels=(24, 16, 12, 8, 8), skip=skip)
    depth, aux = dec(feats)
    assert depth.shape == (1, 1, 64, 64) and aux == []
    assert (depth >= 0).all()  # ReLU head: metric depth is non-negative
    if skip == "add":
        # widths 16/12/8 at strides 8/4/2 match the encoder's 16/12/8: no projection is needed
        assert len(dec.proj) == 0


def test_additive_skip_projects_mismatched_widths():
    dec = UNetDecoder((8, 12, 16, 24, 32), channels=(24, 20, 12, 8, 8), skip="add")
    assert set(dec.proj) == {"8"}  # stride 8: encoder 16 vs stage 20


def test_skip_changes_output():
    torch.manual_seed(0)
    enc_ch = (8, 12, 16, 24, 32)
    feats = [torch.rand(1, c, 64 // s, 64 // s) for c, s in zip(enc_ch, (2, 4, 8, 16, 32))]
    dec = UNetDecoder(enc_ch, channels=(24, 16, 12, 8, 8), skip="add").eval()
    base, _ = dec(feats)
    feats[0] = feats[0] + 1.0  # the stride-2 map only reaches the output through the skip
    moved, _ = dec(feats)
    assert not torch.allclose(base, moved)


def test_unpool_zero_insertion():
    x = torch.arange(4.0).view(1, 1, 2, 2)
    y = Unpool(1)(x)
    assert y.shape == (1, 1, 4, 4)
    assert torch.equal(y[0, 0, ::2, ::2], x[0, 0]) and y.sum() == x.sum()


def test_decoder_bad_arguments():
    with pytest.raises(ValueError, match="skip="):
        UNetDecoder((8, 12, 16, 24, 32), skip="sum")
    with pytest.raises(ValueError, match="unknown decoder block 'bilinear'"):
        UNetDecoder((8, 12, 16, 24, 32), block="bilinear")
    with pytest.raises(ValueError, match="skip_strides"):
        UNetDecoder((8, 12, 16, 24, 32), channels=(16, 8, 8), skip_strides=(2,))


def test_aux_heads_only_in_training():
    model = create_model("mbv2-fbnet-x112", aux_heads=2)
    x = torch.rand(2, 3, 64, 64)
    out = model.train()(x)
    assert set(out) == {"depth", "aux"} and out["depth"].shape == (2, 1, 64, 64)
    assert [a.shape for a in out["aux"]] == [(2, 1, 8, 8), (2, 1, 16, 16)]  # after decoder layers 2 and 3
    assert model.eval()(x).shape == (2, 1, 64, 64)
    n = sum(p.numel() for p in model.parameters())
    model.remove_aux_heads()
    assert not model.has_aux_heads and sum(p.numel() for p in model.parameters()) < n
    assert isinstance(model.train()(x), torch.Tensor)


def test_input_size_error_names_multiple():
    model = create_model("fastdepth")
    with pytest.raises(ValueError, match="not a multiple of 32"):
        model(torch.rand(1, 3, 100, 64))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(1, 1, 64, 64))
    # fast downsampling takes any size
    mai = create_model("mai2021-1", internal_size=(64, 96)).eval()
    assert mai.input_multiple == 1 and mai(torch.rand(1, 3, 50, 70)).shape == (1, 1, 50, 70)


def test_registry_unknown_and_overrides():
    with pytest.raises(ValueError, match="unknown model 'fastdepht'; valid models: .*fastdepth"):
        create_model("fastdepht")
    with pytest.raises(ValueError, match="does not take"):
        create_model("midas-small", encoder="resnet18")
    names = list_models()
    assert names == sorted(names) and {"fastdepth", "midas-small", "mbv2-fbnet-x112"} <= set(names)
    assert list_models("mai2021-[0-9]") == [f"mai2021-{i}" for i in (1, 2, 3, 4)]
    assert "mai2021-teacher" in list_models("mai2021-*")
    assert "FastDepth" in model_doc("fastdepth")


def test_register_model_decorator(monkeypatch):
    from depthlib.models import registry

    list_models()  # import the presets first, then work on a copy so the test model does not leak
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))

    @register_model("test-tiny-model")
    def tiny(*, pretrained_encoder=None, width=8):
        """A test preset."""
        enc = create_encoder("mobilenet_v3_small", pretrained_encoder)
        return DepthNet(enc, UNetDecoder(enc.channels, channels=(width,) * 5, skip="none"), name="test-tiny-model")

    assert "test-tiny-model" in list_models()
    assert create_model("test-tiny-model", width=4).decoder.stages[0].conv[1][0].out_channels == 4
    with pytest.raises(ValueError, match="already registered"):
        register_model("test-tiny-model")(tiny)


@pytest.mark.parametrize("encoder", ["mobilenet", "resnet18"])
@pytest.mark.parametrize("decoder", ["nnconv5", "upproj"])
@pytest.mark.parametrize("skip", ["none", "add", "concat"])
def test_fastdepth_ablation_grid(encoder, decoder, skip):
    model = create_model("fastdepth", encoder=encoder, decoder=decoder, skip=skip)
    out = model(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 1, 64, 64)


def test_load_checkpoint_roundtrip_and_mismatch(tmp_path):
    a = create_model("fastdepth")
    path = tmp_path / "ckpt.pt"
    torch.save({"model": a.state_dict(), "epoch": 3}, path)  # a trainer-style wrapper
    b = create_model("fastdepth")
    assert load_checkpoint(path, b)["format"] is None  # a plain state dict: nothing recorded to compare
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    with pytest.raises(ValueError, match=r"does not match the model 'mbv2-nnconv5-narrow'.*missing keys: encoder\.body\.features"):
        load_checkpoint(path, create_model("mbv2-nnconv5-narrow"))
    with pytest.raises(ValueError, match="shape mismatches: .*decoder"):
        load_checkpoint(path, create_model("fastdepth-concat"))


def test_mai_internal_size_must_fit_encoder():
    with pytest.raises(ValueError, match="multiples of 32"):
        create_model("mai2021-1", internal_size=(100, 160))


def test_imagenet_from_torch_hub_cache(monkeypatch, tmp_path):
    import torchvision

    ref = torchvision.models.resnet18()
    (tmp_path / "checkpoints").mkdir()
    torch.save(ref.state_dict(), tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(enc_mod, "_reachable", lambda host, timeout=3.0: False)  # must not need the network
    enc = create_encoder("resnet18", weights="imagenet")
    assert torch.equal(enc.state_dict()["body.conv1.weight"], ref.conv1.weight)


def test_imagenet_from_hf_cache(monkeypatch, tmp_path):
    import huggingface_hub
    import timm
    from safetensors.torch import save_file

    ref = timm.create_model("mixnet_s")
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo_id, filename: str(path) if filename == "model.safetensors" else None)
    monkeypatch.setattr(enc_mod, "_reachable", lambda host, timeout=3.0: False)
    enc = create_encoder("mixnet_s", weights="imagenet")
    assert torch.equal(enc.state_dict()["body.conv_stem.weight"], ref.conv_stem.weight)


@pytest.mark.parametrize("name", ["fastdepth", "mai2021-1", "mbv2-fbnet"])
def test_init_output_bias_starts_the_prediction_at_that_depth(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.rand(1, 3, *model.default_input_size)
    with torch.no_grad():
        before = model(x)
        assert model.init_output_bias(3.0) is True
        after = model(x)
    assert float((before <= 0).float().mean()) > 0.2        # ReLU(N(0, 1)) head: many pixels at 0 m
    assert abs(float(after.median()) - 3.0) < 0.5 and float((after <= 0).float().mean()) < 0.01


def test_init_output_bias_checks_its_value_and_leaves_other_heads_alone():
    model = create_model("fastdepth")
    for bad in (0.0, -1.0, float("nan"), "2", True):
        with pytest.raises(ValueError, match="init_output_bias"):
            model.init_output_bias(bad)
    midas = create_model("midas-small")
    state = {k: v.clone() for k, v in midas.state_dict().items()}
    assert midas.init_output_bias(3.0) is False
    assert all(torch.equal(v, midas.state_dict()[k]) for k, v in state.items())


# --- Vision Transformer encoders (timm ViT + DPT reassembly) -------------------------------------------------

VIT_TINY_CHANNELS = (24, 48, 96, 192, 192)


@pytest.mark.parametrize("size", [(64, 96), (96, 128)])
def test_vit_encoder_shapes_at_several_non_square_sizes(size):
    torch.manual_seed(0)
    enc = create_encoder("vit_tiny")
    assert enc.channels == VIT_TINY_CHANNELS and enc.body.indices == (2, 5, 8, 11)  # DPT's taps of 12 blocks
    h, w = size
    feats = enc(torch.rand(2, 3, h, w))
    assert [tuple(f.shape) for f in feats] == [(2, c, h // s, w // s) for c, s in zip(VIT_TINY_CHANNELS, enc.strides)]
    with pytest.raises(ValueError, match="not a multiple of 32"):
        enc(torch.rand(1, 3, 48, 96))


def test_vit_tap_blocks_and_widths_follow_dpt():
    assert enc_mod.vit_tap_blocks(24) == (5, 11, 17, 23)  # DPT-Large
    assert enc_mod.vit_tap_blocks(12) == (2, 5, 8, 11)    # DPT-Base
    assert enc_mod.vit_widths(1024) == (128, 256, 512, 1024, 1024)
    assert enc_mod.vit_widths(768) == (96, 192, 384, 768, 768)  # DPT-Base: 96-192-384-768 at strides 4..32
    enc = create_encoder("vit_tiny", widths=(8, 16, 32, 64, 64), indices=(1, 3, 5, 7))
    assert enc.channels == (8, 16, 32, 64, 64) and len(enc.body.vit.blocks) == 8  # blocks after the last tap pruned


def test_vit_gradients_reach_every_block_and_no_parameter_is_unused():
    torch.manual_seed(0)
    enc = create_encoder("vit_tiny")
    sum(f.square().mean() for f in enc(torch.rand(1, 3, 64, 64))).backward()
    unused = [n for n, p in enc.named_parameters() if p.grad is None]
    assert unused == []  # the final norm and the classifier are pruned: DDP needs no find_unused_parameters
    for i in (0, 11):
        assert enc.body.vit.blocks[i].attn.qkv.weight.grad.abs().sum() > 0
    assert enc.body.vit.patch_embed.proj.weight.grad.abs().sum() > 0


def test_vit_path_weights_load_and_wrong_keys_raise(tmp_path):
    import timm

    ref = timm.create_model("vit_tiny_patch16_224")
    path = tmp_path / "vit_tiny.pth"
    torch.save(ref.state_dict(), path)  # classifier head included: allowed extra
    enc = create_encoder("vit_tiny", weights=path)
    sd = enc.state_dict()
    for key in ("blocks.0.attn.qkv.weight", "blocks.11.mlp.fc2.weight", "pos_embed", "cls_token", "patch_embed.proj.weight"):
        assert torch.equal(sd[f"body.vit.{key}"], ref.state_dict()[key]), key
    bad = dict(ref.state_dict())
    bad["blocks.0.attn.qkvx.weight"] = bad.pop("blocks.0.attn.qkv.weight")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"missing keys \['blocks\.0\.attn\.qkv\.weight'\].*unexpected keys \['blocks\.0\.attn\.qkvx"):
        create_encoder("vit_tiny", weights=tmp_path / "bad.pth")


def test_vit_path_weights_of_another_grid_get_their_pos_embed_resampled(tmp_path):
    import timm

    ref = timm.create_model("vit_tiny_patch16_384")  # a 24x24 grid for the 14x14 spec
    torch.save(ref.state_dict(), tmp_path / "vit_tiny_384.pth")
    enc = create_encoder("vit_tiny", weights=tmp_path / "vit_tiny_384.pth")
    assert enc.body.vit.pos_embed.shape == (1, 1 + 14 * 14, 192)
    assert torch.equal(enc.state_dict()["body.vit.blocks.3.norm1.weight"], ref.state_dict()["blocks.3.norm1.weight"])
    assert torch.equal(enc.body.vit.pos_embed[0, 0], ref.pos_embed[0, 0])  # the class token's embedding kept


def test_vit_imagenet_offline_fails_fast(monkeypatch, tmp_path):
    import time

    monkeypatch.setattr(enc_mod, "_reachable", lambda host, timeout=3.0: False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"not cached .*vit_large_patch16_384.*weights=./path/to/weights.pth."):
        create_encoder("vit_large", weights="imagenet")
    assert time.perf_counter() - start < 5.0


def test_vit_weights_record_timms_normalisation(monkeypatch, tmp_path):
    import timm

    from depthlib.models import LightFusionDecoder, get_weights, registry, resolve_weights

    half = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    assert get_weights("vit_large.imagenet").transforms() == half
    assert get_weights("vit_tiny.imagenet").meta["timm"] == "vit_tiny_patch16_224"
    path = tmp_path / "vit_tiny.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224").state_dict(), path)
    assert resolve_weights("vit_tiny", path).transforms() == half  # a timm ViT state dict expects timm's 0.5/0.5
    assert resolve_weights("mixnet_s", path).transforms()["std"] == (0.229, 0.224, 0.225)  # CNN paths unchanged

    list_models()
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))

    @register_model("test-vit-tiny", encoder="vit_tiny")
    def vit_tiny_light(*, pretrained_encoder=None):
        """A ViT-Tiny + light fusion decoder test preset."""
        enc = create_encoder("vit_tiny", pretrained_encoder)
        return DepthNet(enc, LightFusionDecoder(enc.channels), name="test-vit-tiny", input_multiple=32,
                        default_input_size=(64, 96))

    model = create_model("test-vit-tiny", weights=path)
    assert model.normalization == half and model.weights.source == "path"


def test_vit_tiny_wires_to_the_light_fusion_decoder_in_a_depthnet():
    from depthlib.models import LightFusionDecoder

    torch.manual_seed(0)
    enc = create_encoder("vit_tiny")
    net = DepthNet(enc, LightFusionDecoder(enc.channels), name="vit-tiny-light", input_multiple=32,
                   default_input_size=(64, 96))
    out = net(torch.rand(2, 3, 64, 96))
    assert out.shape == (2, 1, 64, 96) and torch.isfinite(out).all()
    out.mean().backward()
    assert net.encoder.body.vit.blocks[0].mlp.fc1.weight.grad is not None


def test_vit_large_is_dpt_larges_backbone():
    spec = enc_mod._SPECS["vit_large"]
    assert (spec.source, spec.arch) == ("timm-vit", "vit_large_patch16_384")
    enc = create_encoder("vit_large")  # ~5 s on two cores (304 M ViT parameters, random init)
    assert enc.channels == (128, 256, 512, 1024, 1024) and enc.body.indices == (5, 11, 17, 23)
    assert len(enc.body.vit.blocks) == 24 and enc.body.vit.embed_dim == 1024
    assert 315e6 < sum(p.numel() for p in enc.parameters()) < 320e6
    with torch.no_grad():
        feats = enc(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(1, c, 64 // s, 96 // s) for c, s in zip(enc.channels, enc.strides)]
