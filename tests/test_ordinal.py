"""yucel2021's ordinal pipeline: Li et al.'s MC loss, the relative head, relative_metrics and ordinal_run."""


import pandas as pd
import pytest
import torch
from torch import nn

from depthlib.losses import get_loss, mannequin_si
from depthlib.models import create_model
from depthlib.train.ordinal import relative_metrics


def _depth(b=2, h=32, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, h, w, generator=g) * 4 + 0.5


def test_mannequin_si_is_zero_for_log_depth_up_to_a_constant_without_image():
    t = _depth()
    assert float(mannequin_si(torch.log(t) + 1.7, t)) == pytest.approx(0.0, abs=1e-5)


def test_mannequin_si_data_term_is_one_and_a_half_times_the_scale_invariant_mse():
    t = _depth(b=1)
    noise = torch.randn(1, 1, 32, 64, generator=torch.Generator().manual_seed(1)) * 0.1
    z = torch.log(t) + noise
    si_mse = float(noise.pow(2).mean() - noise.mean() ** 2)
    got = float(mannequin_si(z, t, w_grad=0.0))
    assert got == pytest.approx(1.5 * si_mse, rel=1e-4)


def test_mannequin_si_ignores_invalid_pixels_and_takes_the_image_by_its_kind():
    t = _depth()
    mask = torch.ones_like(t, dtype=torch.bool)
    mask[..., :8] = False
    z = torch.log(t)
    z_bad = z.clone()
    z_bad[..., :8] += torch.randn_like(z_bad[..., :8])  # only invalid pixels change
    assert float(mannequin_si(z_bad, t, mask, w_grad=0.75)) == pytest.approx(0.0, abs=1e-5)
    loss = get_loss("mannequin_si")
    assert loss.kind == "dense_image"
    image = torch.rand(2, 3, 32, 64)
    smooth = float(mannequin_si(torch.zeros_like(z) + torch.log(t), t, mask, image))
    assert smooth > 0  # the edge-aware smoothness of a non-constant prediction


def test_mannequin_si_gradient_is_finite():
    t = _depth()
    z = torch.zeros_like(t, requires_grad=True)
    mannequin_si(z, t, image=torch.rand(2, 3, 32, 64)).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_relative_fbnet_head_has_no_relu_and_is_marked_relative():
    torch.manual_seed(0)
    net = create_model("mbv2-fbnet-x112", relative=True, aux_heads=2).train()
    out = net(torch.rand(2, 3, 64, 128))
    assert net.output_kind == "relative"
    assert float(out["depth"].min()) < 0  # a log depth may be negative: no ReLU clips it
    assert [tuple(a.shape) for a in out["aux"]] == [(2, 1, 8, 16), (2, 1, 16, 32)]
    with pytest.raises(ValueError, match="relative"):
        create_model("mbv2-fbnet-x112", relative="yes")
    assert create_model("mbv2-fbnet-x112").output_kind == "metric"


class _Log(nn.Module):
    """A 'network' that reads log depth / 10 from the image's first channel and adds a constant."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.shift = shift
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x[:, :1] * 10 + self.shift + 0 * self.dummy


def test_relative_metrics_scale_free_on_dense_sets_and_whdr_on_pairs():
    t = _depth(b=3)
    samples = [{"image": torch.log(t[i]).expand(3, 32, 64) / 10, "depth": t[i], "mask": torch.ones(1, 32, 64, dtype=torch.bool)}
               for i in range(3)]
    # pairs: A at the deepest pixel (farther) vs B at the shallowest, relation +1; the second pair is wrong on purpose
    pair_samples = []
    for i in range(3):
        flat = t[i, 0].flatten()
        a, b = int(flat.argmax()), int(flat.argmin())
        pairs = torch.tensor([[a // 64, a % 64, b // 64, b % 64]])
        pair_samples.append({"image": torch.log(t[i]).expand(3, 32, 64) / 10, "pairs": pairs,
                             "relation": torch.tensor([1 if i < 2 else -1])})
    net = _Log(shift=5.0)
    got = relative_metrics(net, {"nyu": samples, "diw": pair_samples}, batch_size=2)
    assert got["nyu_rmse"] == pytest.approx(0.0, abs=1e-4)  # exact up to a constant in log space
    assert got["nyu_si_rmse"] == pytest.approx(0.0, abs=1e-4)
    assert got["diw_whdr"] == pytest.approx(1 / 3)
    assert not any(k.startswith("diw_rmse") for k in got)


def test_ordinal_run_rejects_an_unknown_dataset_before_training():
    from depthlib.train.ordinal import ordinal_run

    data = {"train": {"diw": [], "mc": []}, "evaluations": {}}
    with pytest.raises(ValueError, match=r"unknown dataset\(s\) \['redwebb'\].*known: \['diw', 'mc'\]"):
        ordinal_run(model="mbv2-fbnet-x112", seed=0, sequence=["mc", "redwebb", "diw"], datasets=data, common={})
    with pytest.raises(ValueError, match="needs a teacher"):
        ordinal_run(model="mbv2-fbnet-x112", seed=0, sequence=["diw"], datasets=data, common={},
                    distill=[{"kind": "pixel_rmse"}])
    with pytest.raises(ValueError, match="loss_weight"):
        ordinal_run(model="mbv2-fbnet-x112", seed=0, sequence=["diw"], datasets=data, common={}, loss_weight=-1.0)


class _CrashOnce(torch.utils.data.Dataset):
    """A training set that raises once, at its ``at``-th item: a run killed in the middle of a stage. Its
    counters are private, so the checkpoint's fingerprint of the data is the same before and after."""

    def __init__(self, inner, at):
        self.inner, self._at, self._seen, self._crashed = inner, at, 0, False

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        self._seen += 1
        if not self._crashed and self._seen == self._at:
            self._crashed = True
            raise RuntimeError("simulated kill")
        return self.inner[i]


def test_ordinal_run_killed_in_its_last_stage_resumes_bit_identically(tmp_path):
    from depthlib.data import relative_chapter_data
    from depthlib.train.ordinal import ordinal_run

    data = relative_chapter_data(["mc", "diw"], size=(32, 64), n_train=4, n_test=2, seed=0)
    common = {"batch_size": 2, "epochs": 2, "lr": 1e-3, "optimizer": "adam", "progress": False, "device": "cpu"}
    kwargs = dict(model="mbv2-fbnet-x112", seed=3, sequence=["mc", "diw"], common=common, output_scale=0.1,
                  aux_heads=1, rebalance={"per_epoch": 2})
    reference = ordinal_run(datasets=data, **kwargs)

    mc, diw = _CrashOnce(data["train"]["mc"], at=-1), _CrashOnce(data["train"]["diw"], at=6)  # DIW, epoch 2
    crashing = {**data, "train": {"mc": mc, "diw": diw}}
    with pytest.raises(RuntimeError, match="simulated kill"):
        ordinal_run(datasets=crashing, out_dir=tmp_path / "run", **kwargs)
    assert list((tmp_path / "run").iterdir()), "the killed run left no checkpoint to resume from"
    mc_before, diw_before = mc._seen, diw._seen
    resumed = ordinal_run(datasets=crashing, out_dir=tmp_path / "run", **kwargs)
    assert mc._seen == mc_before, "the finished MC stage was trained again"
    assert diw._seen - diw_before == len(diw), "DIW should resume at its second epoch, not start over"
    metrics = [k for k in reference if k.startswith(("nyu_", "diw_", "mc_", "redweb_"))]
    assert metrics and {k: resumed[k] for k in metrics} == {k: reference[k] for k in metrics}
    assert resumed["train_loss"] == reference["train_loss"]
    pd.testing.assert_frame_equal(resumed["rebalance_history"].reset_index(drop=True),
                                  reference["rebalance_history"].reset_index(drop=True))


def test_ordinal_netadapt_prunes_to_each_parameter_budget_and_evaluates_every_version(tmp_path):
    from depthlib.data import relative_chapter_data
    from depthlib.profiler import count_params
    from depthlib.prune import ordinal_netadapt
    from depthlib.train.ordinal import ordinal_run

    data = relative_chapter_data(["diw"], size=(32, 64), n_train=6, n_test=2, seed=0)
    common = {"batch_size": 2, "epochs": 1, "lr": 1e-3, "optimizer": "adam", "progress": False, "device": "cpu"}
    run = ordinal_run(model="mbv2-fbnet-x112", seed=0, sequence=["diw"], datasets=data, common=common,
                      aux_heads=1, output_scale=0.1, keep_state=True)
    net = create_model("mbv2-fbnet-x112", relative=True, aux_heads=1)
    net.load_state_dict(run["state_dict"])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    diw = data["train"]["diw"]
    out = ordinal_netadapt(net, train_data=diw, short_data=torch.utils.data.Subset(diw, range(4)),
                           score_data=torch.utils.data.Subset(diw, range(4, 6)), evaluations=data["evaluations"],
                           budgets=[0.9, 0.8], short_fields={**common, "epochs": 1}, long_fields=common, seed=0,
                           example_size=(1, 3, 32, 64), step=0.1, out_dir=tmp_path, progress=False)
    unpruned = out["unpruned"]["params"]
    assert unpruned == run["params"]  # the intermediate head is not counted
    versions = out["versions"]
    assert list(versions["budget"]) == [0.9, 0.8]
    assert (versions["params"] <= versions["budget"] * unpruned).all()
    assert versions["params"].is_monotonic_decreasing and versions["diw_whdr"].between(0, 1).all()
    assert list(out["history"]["iteration"]) == list(range(1, len(out["history"]) + 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["budget-0.800", "budget-0.900"]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the input is untouched
    assert count_params(net) > unpruned  # still with its head
    with pytest.raises(ValueError, match="strictly decreasing"):
        ordinal_netadapt(net, train_data=diw, short_data=diw, score_data=diw, evaluations={}, budgets=[0.5, 0.7], short_fields={},
                         long_fields={}, seed=0, example_size=(1, 3, 32, 64))
    with pytest.raises(ValueError, match="need a teacher"):
        ordinal_netadapt(net, train_data=diw, short_data=diw, score_data=diw, evaluations={}, budgets=[0.5], short_fields={},
                         long_fields={}, seed=0, example_size=(1, 3, 32, 64), distill=[{"kind": "pixel_rmse"}])
