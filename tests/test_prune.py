"""depthlib.prune: structured pruning, NetAdapt (budget, resume), haly2021's unstructured sweeps."""

from __future__ import annotations

import pathlib

import pytest
import torch
from torch import nn

from depthlib.models import create_model
from depthlib.profiler import count_macs, count_params
from depthlib.prune import (channel_table, load_pruned, netadapt, nominal_params, prunable_layers, prune,
                            prune_unstructured, prune_whole_layers, save_pruned, sparsity_report)

X = torch.rand(1, 3, 32, 32)


@pytest.fixture(scope="module")
def fastdepth():
    torch.manual_seed(0)
    return create_model("fastdepth").eval()


class Tiny(nn.Module):
    """conv-bn-relu x3 with an additive skip and a 1-channel head: small enough for NetAdapt in a test."""

    name = "tiny"

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.c = nn.Sequential(nn.Conv2d(16, 24, 3, padding=1), nn.BatchNorm2d(24), nn.ReLU())
        self.head = nn.Conv2d(24, 1, 1)

    def forward(self, x):
        a = self.a(x)
        return self.head(self.c(self.b(a) + a))


def _tiny(seed=0):
    torch.manual_seed(seed)
    return Tiny().eval()


# --- structured ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("importance", ["l1", "l2"])
def test_prune_ratio_gives_smaller_dense_model_same_output_shape(fastdepth, importance):
    small = prune(fastdepth, X, ratio=0.5, importance=importance)
    assert count_params(small) < 0.5 * count_params(fastdepth)
    assert count_macs(small, X.shape) < 0.5 * count_macs(fastdepth, X.shape)
    # dense: no masks, no zero-filled channels, just fewer of them
    assert not any(hasattr(m, "weight_mask") for m in small.modules())
    assert small(X).shape == fastdepth(X).shape == (1, 1, 32, 32)
    # the original is untouched
    assert count_params(fastdepth) == count_params(create_model("fastdepth"))
    # the encoder's widths shrank, the head still predicts one channel
    before, after = channel_table(fastdepth), channel_table(small)
    assert (after["out"] <= before["out"]).all() and (after["out"] < before["out"]).sum() > 10
    assert after["out"].iloc[-1] == 1


def test_prune_to_macs_target_meets_it(fastdepth):
    base = count_macs(fastdepth, X.shape)
    small = prune(fastdepth, X, target_macs=int(0.5 * base), steps=10)
    macs = count_macs(small, X.shape)
    assert macs <= 0.5 * base
    assert macs > 0.2 * base  # stops at the first step meeting it, not at max_ratio


def test_prune_to_params_target_meets_it(fastdepth):
    base = count_params(fastdepth)
    small = prune(fastdepth, X, target_params=int(0.6 * base), steps=20)
    assert 0.4 * base < count_params(small) <= 0.6 * base


def test_prune_taylor_needs_and_uses_gradients(fastdepth):
    with pytest.raises(ValueError, match="grad_fn"):
        prune(fastdepth, X, ratio=0.3, importance="taylor")
    target = torch.rand(2, 1, 32, 32)
    small = prune(fastdepth, X, ratio=0.3, importance="taylor",
                  grad_fn=lambda m: (m(torch.rand(2, 3, 32, 32)) - target).abs().mean())
    l1 = prune(fastdepth, X, ratio=0.3, importance="l1")
    assert count_params(small) == count_params(l1)  # same widths, other channels chosen
    assert not torch.equal(small(X), l1(X))


def test_pruned_model_save_load_identical_and_exports(fastdepth, tmp_path):
    small = prune(fastdepth, X, ratio=0.4).eval()
    path = save_pruned(small, tmp_path / "small.pt")
    with pytest.raises(FileExistsError, match="small.pt"):
        save_pruned(small, path)
    again = load_pruned(path)
    assert torch.equal(again(X), small(X))
    assert channel_table(again).equals(channel_table(small))
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "small.onnx"
    torch.onnx.export(again, (X,), str(out), dynamo=False, input_names=["image"], output_names=["depth"])
    onnx.checker.check_model(onnx.load(str(out)))


@pytest.mark.parametrize("kwargs, match", [
    ({"ratio": 1.0}, r"ratio must be in \[0, 1\)"),
    ({"ratio": -0.1}, r"ratio must be in \[0, 1\)"),
    ({}, "exactly one"),
    ({"ratio": 0.2, "target_macs": 10}, "exactly one"),
    ({"target_macs": 10**12}, "budget already met"),
    ({"target_macs": 1}, "budget unreachable"),
    ({"ratio": 0.2, "ignored_layers": ["no.such.layer"]}, "no.such.layer"),
    ({"ratio": 0.2, "importance": "l3"}, "importance must be one of"),
])
def test_prune_bad_input(kwargs, match):
    net = _tiny()
    with pytest.raises(ValueError, match=match):
        prune(net, X, steps=3, **kwargs)


def test_prunable_layers_names_groups(fastdepth):
    groups = prunable_layers(fastdepth, X)
    assert len(groups) > 5 and (groups["channels"] >= 2).all()
    assert not any(n.endswith("head") for n in groups.index if channel_table(fastdepth).loc[n, "out"] == 1)


def test_midas_small_prunes_through_its_fusions():
    net = create_model("midas-small").eval()
    x = torch.rand(1, 3, 64, 64)
    small = prune(net, x, ratio=0.3)
    assert count_params(small) < 0.7 * count_params(net)
    assert small(x).shape == (1, 1, 64, 64)


# --- NetAdapt --------------------------------------------------------------------------------------------

def _score(m):
    torch.manual_seed(123)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        return -float(m(x).abs().mean())


def _short(m, it):
    torch.manual_seed(1000 + it)
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    m.train()
    loss = (m(torch.rand(2, 3, 32, 32)) - 0.5).abs().mean()
    loss.backward()
    opt.step()
    m.eval()


def test_netadapt_meets_macs_budget_in_few_iterations(tmp_path):
    net = _tiny()
    base = count_macs(net, X.shape)
    res = netadapt(net, X, budget=0.6, step=0.15, score=_score, short_term=_short, out_dir=tmp_path, progress=False)
    assert count_macs(res.model, X.shape) <= 0.6 * base
    assert 2 <= len(res.history) <= 5
    h = res.history
    assert (h["resource"] <= h["target"]).all() and h["resource"].is_monotonic_decreasing
    assert (h["channels_after"] < h["channels_before"]).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"iter_{i:03d}.pt" for i in range(1, len(h) + 1)]
    assert count_params(net) == count_params(_tiny())  # the input model is untouched


def test_netadapt_meets_a_parameter_budget():
    net = _tiny()
    res = netadapt(net, X, budget=0.6, step=0.2, resource="params", score=_score, short_term=_short, progress=False)
    assert count_params(res.model) <= 0.6 * count_params(net)
    h = res.history
    assert res.resource == "params" and (h["resource"] == h["params"]).all() and (h["resource"] <= h["target"]).all()


def test_netadapt_resumes_bit_identically_after_kill(tmp_path):
    full = netadapt(_tiny(), X, budget=0.5, step=0.15, score=_score, short_term=_short, out_dir=tmp_path / "a",
                    progress=False)
    assert len(full.history) >= 3
    # "kill" after two iterations: a run with max_iterations=2 leaves exactly what a killed run leaves
    netadapt(_tiny(), X, budget=0.5, step=0.15, score=_score, short_term=_short, out_dir=tmp_path / "b",
             max_iterations=2, progress=False)
    assert len(list((tmp_path / "b").glob("iter_*.pt"))) == 2
    resumed = netadapt(_tiny(), X, budget=0.5, step=0.15, score=_score, short_term=_short, out_dir=tmp_path / "b",
                       progress=False)
    pd_equal = resumed.history.equals(full.history)
    assert pd_equal, (resumed.history, full.history)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="step=0.15"):
        netadapt(_tiny(), X, budget=0.5, step=0.2, score=_score, out_dir=tmp_path / "b", progress=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"budget": 1.0}, r"budget must be in \(0, 1\)"),
    ({"budget": 0.5, "resource": "watts"}, "resource must be"),
    ({"budget": 0.5, "layers": ["c.0", "nope"]}, "'nope'"),
    ({"budget": 0.5, "layers": ["a.1"]}, r"'a.1' is not the root of a channel group"),
    ({"budget": 0.001, "min_channels": 16}, "budget unreachable"),
])
def test_netadapt_bad_input(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        netadapt(_tiny(), X, score=_score, out_dir=tmp_path, progress=False, **kwargs)


# --- haly2021's sweeps -----------------------------------------------------------------------------------

def test_unstructured_nonzero_counts_match_a_hand_count():
    net = _tiny()
    out = prune_unstructured(net, 0.5)
    convs = [m for m in out.modules() if isinstance(m, nn.Conv2d)]
    hand = sum(int((m.weight != 0).sum()) for m in convs)
    expected = sum(m.weight.numel() - round(0.5 * m.weight.numel()) for m in convs)  # l1_unstructured rounds
    rep = sparsity_report(out)
    assert rep["nonzero_conv_weights"] == hand == expected
    all_nonzero = sum(int((p != 0).sum()) for p in out.parameters())
    assert rep["nonzero_params"] == all_nonzero
    assert rep["params"] == count_params(net)  # as many parameters as before
    assert count_macs(out, X.shape) == count_macs(net, X.shape)  # and as many MACs
    assert not any(hasattr(m, "weight_mask") for m in out.modules())  # permanent
    dense = sparsity_report(net)
    assert rep["dense_bytes"] == pytest.approx(dense["dense_bytes"], rel=0.01)  # zeros cost as much on disk
    assert rep["gzip_bytes"] < 0.8 * dense["gzip_bytes"]  # but compress


def test_unstructured_masks_survive_training_then_permanent():
    from depthlib.prune import make_permanent

    net = prune_unstructured(_tiny(), 0.7, permanent=False)
    before = sparsity_report(net)["nonzero_conv_weights"]
    _short(net, 0)
    assert sparsity_report(make_permanent(net))["nonzero_conv_weights"] == before


def test_whole_layer_pruning_zeroes_the_smallest_layers():
    net = create_model("midas-small")
    out, zeroed = prune_whole_layers(net, 0.10)
    n_conv = sum(isinstance(m, nn.Conv2d) for m in net.modules())
    assert len(zeroed) == int(0.10 * n_conv)
    mods = dict(out.named_modules())
    assert all(int(mods[n].weight.count_nonzero()) == 0 for n in zeroed)
    norms = {n: float(m.weight.abs().sum()) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    assert max(norms[n] for n in zeroed) <= min(v for n, v in norms.items() if n not in zeroed)
    with pytest.raises(ValueError, match="sparsity"):
        prune_whole_layers(net, 1.2)


def test_haly_table_parameter_counts_are_nominal():
    params = count_params(create_model("midas-small"))
    assert params == 16_600_929
    for s, printed in ((0.02, 16.3), (0.20, 13.3), (0.60, 6.6), (0.99, 0.17)):
        assert round(nominal_params(params, s) / 1e6, 2 if printed < 1 else 1) == printed


# --- the chapters' sweep ---------------------------------------------------------------------------------

def test_ssi_disparity_is_scale_and_shift_invariant():
    from depthlib.prune import ssi_disparity

    depth = torch.rand(2, 1, 16, 16) * 5 + 1
    mask = torch.ones_like(depth, dtype=torch.bool)
    assert float(ssi_disparity(3.0 / depth + 0.2, depth, mask)) == pytest.approx(0.0, abs=1e-5)
    assert float(ssi_disparity(depth, depth, mask)) > 1e-3  # depth is not affine in disparity


def test_sweep_rows_count_and_evaluate_both_ways():
    from depthlib.prune import sweep
    from depthlib.train import TrainConfig

    torch.manual_seed(0)
    data = [{"image": torch.rand(3, 32, 32), "depth": torch.rand(1, 32, 32) * 4 + 1,
             "mask": torch.ones(1, 32, 32, dtype=torch.bool)} for _ in range(2)]
    cfg = TrainConfig(batch_size=2, max_depth=10.0, progress=False)
    lat = dict(warmup=0, repeats=1)
    un = sweep(_tiny(), "unstructured", [0.0, 0.5], data, config=cfg, input_size=X.shape, latency_kwargs=lat)
    st = sweep(_tiny(), "structured", [0.5], data, config=cfg, input_size=X.shape, latency_kwargs=lat)
    assert un.loc[0, "nonzero_params"] > un.loc[1, "nonzero_params"] and un.loc[0, "params"] == un.loc[1, "params"]
    assert un.loc[0, "macs"] == un.loc[1, "macs"]
    assert st.loc[0, "params"] <= 0.5 * count_params(_tiny()) and st.loc[0, "macs"] < un.loc[0, "macs"]
    assert (un["their_rmse"] != un["rmse"]).all()  # unaligned vs aligned
    with pytest.raises(ValueError, match="method"):
        sweep(_tiny(), "random", [0.5], data, config=cfg, input_size=X.shape)


def test_midas_official_checkpoint_layout_maps_onto_midas_small(tmp_path):
    from depthlib.models.midas_weights import _ENCODER_PREFIXES, load_midas_v21_small

    torch.manual_seed(0)
    src = create_model("midas-small", normalization="imagenet")
    inverse = {v: k for k, v in _ENCODER_PREFIXES.items()}
    ckpt = {}
    for key, value in src.state_dict().items():
        if key.endswith("num_batches_tracked") or key.startswith("input_"):
            continue  # the recorded input normalisation is the model's, not MiDaS's checkpoint's
        if key.startswith("decoder."):
            ckpt["scratch." + key[len("decoder."):]] = value
        else:
            prefix = next(p for p in inverse if key.startswith(p))
            ckpt[inverse[prefix] + key[len(prefix):]] = value
    ckpt["scratch.refinenet4.resConfUnit1.conv1.weight"] = torch.zeros(1)  # MiDaS's never-called unit
    torch.save(ckpt, tmp_path / "midas.pt")
    dst = load_midas_v21_small(create_model("midas-small", normalization="imagenet"), tmp_path / "midas.pt")
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(dst.eval()(x), src.eval()(x))
    with pytest.raises(FileNotFoundError, match="midas_v21_small"):
        load_midas_v21_small(create_model("midas-small"), tmp_path / "absent.pt")
    del ckpt["scratch.output_conv.0.weight"]
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="output_conv"):
        load_midas_v21_small(create_model("midas-small"), tmp_path / "bad.pt")


def test_unstructured_and_whole_layer_pruning_take_a_channels_last_model():
    # fit leaves a model in channels_last by default; torch.nn.utils.prune's view(-1) could not take its weights
    net = _tiny().to(memory_format=torch.channels_last)
    out = prune_unstructured(net, 0.5)
    assert sparsity_report(out)["nonzero_conv_weights"] == sparsity_report(prune_unstructured(_tiny(), 0.5))["nonzero_conv_weights"]
    layers, zeroed = prune_whole_layers(net, 0.5)
    assert zeroed and all(int(dict(layers.named_modules())[n].weight.count_nonzero()) == 0 for n in zeroed)
