"""Loss rebalancing inside depthlib.train.fit (TrainConfig.rebalance; Lee & Kim 2020 as yucel2021 uses it): the
weights follow MultiLossRebalancer's documented rule, hard-first favours the slower-decaying term, the history,
rebalance.csv and df.attrs record them, resume is bit-identical, bad input fails naming the value.
Tiny models: seconds on one thread."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from _training import Net, assert_same_state, metric_columns, net  # noqa: F401 (tests/_training.py)
from depthlib.data import open_dataset
from depthlib.train import DistillTerm, TrainConfig, fit, load_checkpoint
from depthlib.train.rebalance import rebalance_boundaries


class Constant(Dataset):
    """``n`` samples with a constant depth of 2 m (every pixel valid)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.full((3, 8, 8), i / self.n), "depth": torch.full((1, 8, 8), 2.0),
                "mask": torch.ones(1, 8, 8, dtype=torch.bool), "path": f"constant:{i}"}


class TwoRates(nn.Module):
    """Two heads with their own parameter: the final prediction ``a`` learns fast, the auxiliary one ``0.1 b``
    100x slower under SGD (its gradient is scaled by 0.1 twice), so their L2 losses decay at different rates."""

    output_kind = "metric"

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(()))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor):
        ones = torch.ones_like(x[:, :1])
        depth = self.a * ones
        if self.training:
            return {"depth": depth, "aux": [0.1 * self.b * ones]}
        return depth


def two_rate_config(**rebalance) -> TrainConfig:
    return TrainConfig(epochs=3, batch_size=2, lr=0.1, momentum=0.0, weight_decay=0.0, optimizer="sgd",
                       schedule="none", loss="l2", progress=False, seed=0,
                       rebalance={"per_epoch": 2, "wrap_aux": False, **rebalance})


def expected_weights(rows: pd.DataFrame, names: list[str], start: float, slope: float, end: float,
                     initialize: bool = False) -> list[dict[str, float]]:
    """MultiLossRebalancer's rule (its docstring), by hand from the recorded mean losses."""
    w = {k: 1.0 / len(names) for k in names}
    prev_l = prev_t = None
    out = []
    for j, row in rows.iterrows():
        lam = min(max(start + slope * row["epoch"], min(start, end)), max(start, end))
        assert row["lam"] == pytest.approx(lam)
        losses = {k: row[f"loss_{k}"] for k in names}
        total = sum(w[k] * losses[k] for k in names)
        if initialize and j == 0:
            w = {k: total / len(names) / losses[k] for k in names}
        elif prev_l is not None:
            w = {k: w[k] * min(max(1 + lam * ((total / prev_t) * prev_l[k] / losses[k] - 1), 0.5), 2.0)
                 for k in names}
        prev_t, prev_l = sum(w[k] * losses[k] for k in names), losses
        out.append(dict(w))
    return out


@pytest.mark.parametrize("order, lams, initialize", [("hard_first", (-3.0, 1.5, 3.0), False),
                                                      ("easy_first", (3.0, -1.5, -3.0), False),
                                                      ("hard_first", (-3.0, 1.5, 3.0), True)],
                         ids=["hard_first", "easy_first", "hard_first-WI"])
def test_weights_follow_the_documented_rule(tmp_path, order, lams, initialize):
    hist = fit(TwoRates(), Constant(8), config=two_rate_config(order=order, initialize=initialize), out_dir=tmp_path)
    rb = hist.attrs["rebalance"]
    names = ["loss/0", "loss/1"]
    # 4 batches an epoch, 2 rebalances: after batches 2 and 4 of each epoch
    assert list(rb["epoch"]) == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert list(rb.columns) == ["epoch", "lam"] + [f"w_{k}" for k in names] + [f"loss_{k}" for k in names]
    want = expected_weights(rb, names, *lams, initialize=initialize)
    for (_, row), w in zip(rb.iterrows(), want):
        for k in names:
            assert row[f"w_{k}"] == pytest.approx(w[k], rel=1e-12)
    assert (rb[[f"w_{k}" for k in names]] > 0).all().all()
    # the two terms decay at different rates: the final head's loss falls fast, the auxiliary one's barely
    assert rb["loss_loss/0"].iloc[-1] < 0.5 * rb["loss_loss/0"].iloc[0]
    assert rb["loss_loss/1"].iloc[-1] > 0.95 * rb["loss_loss/1"].iloc[0]
    if not initialize:
        slow_gains = rb["w_loss/1"].iloc[1] > rb["w_loss/0"].iloc[1]  # the first update (epoch 1)
        assert slow_gains == (order == "hard_first")
    # the epoch history holds the weights at the end of each epoch; rebalance.csv the full record
    for e in (1, 2, 3):
        at_end = rb[rb["epoch"] == float(e)].iloc[0]
        for k in names:
            assert hist.loc[hist["epoch"] == e, f"w_{k}"].item() == at_end[f"w_{k}"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "rebalance.csv"), rb, check_exact=False, rtol=1e-12)
    assert load_checkpoint(tmp_path / "last.pt")["rebalance"]["weights"] == {k: rb[f"w_{k}"].iloc[-1] for k in names}


def test_the_objective_is_the_weighted_sum_of_the_terms():
    # one step: train_loss = sum_i w_i L_i with the initial weights (here given), before any rebalance
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.1, momentum=0.0, weight_decay=0.0, schedule="none", loss="l2",
                      progress=False, rebalance={"per_epoch": 1, "wrap_aux": False,
                                                 "weights": {"loss/0": 0.2, "loss/1": 0.7}})
    hist = fit(TwoRates(), Constant(8), config=cfg)
    assert hist["train_loss"][0] == pytest.approx(0.2 * 4.0 + 0.7 * 4.0)  # both heads predict 0 for a 2 m target
    assert hist.attrs["rebalance"]["loss_loss/0"][0] == pytest.approx(4.0)


def test_wrapped_heads_give_one_term_per_loss():
    cfg = TrainConfig(epochs=1, batch_size=2, lr=0.1, momentum=0.0, weight_decay=0.0, schedule="none", loss="l2",
                      progress=False, rebalance={"per_epoch": 1})
    hist = fit(TwoRates(), Constant(4), config=cfg)
    assert list(hist.attrs["rebalance"].columns) == ["epoch", "lam", "w_loss", "loss_loss"]
    # one term: 0.5 * L_final + 0.5 * L_aux (fixed head weights) times the rebalancer's weight 1
    assert hist.attrs["rebalance"]["loss_loss"][0] == pytest.approx(4.0, rel=0.2)


def test_boundaries_are_evenly_spaced():
    assert rebalance_boundaries(10, 5) == [2, 4, 6, 8, 10]
    assert rebalance_boundaries(7, 5) == [2, 3, 5, 6, 7]
    assert rebalance_boundaries(3, 5) == [1, 2, 3]  # more rebalances than batches: after every batch
    assert rebalance_boundaries(4, 1) == [4]


# ----------------------------------------------------------------------------------- with a teacher




def synth(n: int):
    return open_dataset("synth", split="train", n=n, size=(16, 16), seed=1)


def config(**rebalance) -> TrainConfig:
    return TrainConfig(epochs=2, batch_size=2, lr=0.05, schedule="step", step_size=1, gamma=0.5, loss="l1",
                       progress=False, seed=3, rebalance={"per_epoch": 3, **rebalance})


TERMS = [DistillTerm("pixel_rmse", 7.0), DistillTerm("pairwise", 1.0, "body.1", "body.1"),
         DistillTerm("holistic", 0.05)]


@pytest.mark.parametrize("wrap_aux", [True, False], ids=["wrapped", "per-head"])
def test_resume_with_rebalancing_is_bit_identical(tmp_path, wrap_aux):
    train, cfg = synth(8), config(wrap_aux=wrap_aux)
    full = net()
    h_full = fit(full, train, config=cfg, out_dir=tmp_path / "full", teacher=net(5, aux=False), distill=TERMS)
    parted = net()
    fit(parted, train, config=cfg, out_dir=tmp_path / "parted", teacher=net(5, aux=False), distill=TERMS,
        stop_after_epoch=1)
    resumed = net(99)
    h_res = fit(resumed, train, config=cfg, out_dir=tmp_path / "parted", teacher=net(5, aux=False), distill=TERMS)
    pd.testing.assert_frame_equal(metric_columns(h_full), metric_columns(h_res), check_exact=True)
    pd.testing.assert_frame_equal(h_full.attrs["rebalance"], h_res.attrs["rebalance"], check_exact=True)
    assert_same_state(full, resumed)
    names = (["loss", "pixel_rmse", "pairwise"] if wrap_aux else
             ["loss/0", "loss/1", "pixel_rmse/0", "pixel_rmse/1", "pairwise"])
    assert [c for c in h_full.columns if c.startswith("w_")] == [f"w_{n}" for n in names]  # holistic: not rebalanced
    assert len(h_full.attrs["rebalance"]) == 2 * 3
    assert (h_full.attrs["rebalance"][[f"w_{n}" for n in names]] > 0).all().all()
    # a run already done restores its final weights and its records without training
    again = net(42)
    h_again = fit(again, train, config=cfg, out_dir=tmp_path / "parted", teacher=net(5, aux=False), distill=TERMS)
    pd.testing.assert_frame_equal(metric_columns(h_full), metric_columns(h_again), check_exact=True)
    pd.testing.assert_frame_equal(h_full.attrs["rebalance"], h_again.attrs["rebalance"], check_exact=True)
    assert_same_state(full, again)


def test_resume_refuses_another_rebalancing(tmp_path):
    fit(net(), synth(4), config=config(), out_dir=tmp_path, stop_after_epoch=1)
    with pytest.raises(ValueError, match=r"another TrainConfig \(rebalance: "):
        fit(net(), synth(4), config=config(order="easy_first"), out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"another TrainConfig \(rebalance: "):
        fit(net(), synth(4), config=TrainConfig(epochs=2, batch_size=2, lr=0.05, schedule="step", step_size=1,
                                                 gamma=0.5, loss="l1", progress=False, seed=3), out_dir=tmp_path)


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"per_epoch": 0}, r"TrainConfig.rebalance\['per_epoch'\] must be an int >= 1, got 0"),
        ({"per_epoch": 2.5}, r"rebalance\['per_epoch'\] .* got 2.5"),
        ({"order": "hard"}, r"TrainConfig.rebalance\['order'\] must be one of \('hard_first', 'easy_first'\), got 'hard'"),
        ({"initialize": "no"}, r"TrainConfig.rebalance\['initialize'\] must be True or False, got 'no'"),
        ({"wrap_aux": 1}, r"rebalance\['wrap_aux'\] must be True or False, got 1"),
        ({"weights": {"loss": -0.5}}, r"TrainConfig.rebalance\['weights'\]\['loss'\] must be a finite number >= 0, got -0.5"),
        ({"weights": {"loss": float("nan")}}, r"rebalance\['weights'\]\['loss'\] .* got nan"),
        ({"weights": {"loss": float("inf")}}, r"rebalance\['weights'\]\['loss'\] .* got inf"),
        ({"weights": {"loss": 0.0}}, r"must not all be 0"),
        ({"weights": [0.5, 0.5]}, r"rebalance\['weights'\] must be None or a non-empty dict"),
        ({"every": 5}, r"TrainConfig.rebalance: unknown key\(s\) \['every'\]"),
        ([5], r"TrainConfig.rebalance must be None or a dict, got \[5\]"),
    ],
)
def test_bad_rebalance_values_are_refused_naming_the_value(spec, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(rebalance=spec)


def test_defaults_are_filled_in_and_saved():
    cfg = TrainConfig(rebalance={"per_epoch": 5})
    assert cfg.rebalance == {"per_epoch": 5, "order": "hard_first", "initialize": False, "wrap_aux": True,
                             "weights": None}
    assert cfg.to_dict()["rebalance"] == cfg.rebalance
    assert TrainConfig(rebalance={}).rebalance == TrainConfig(rebalance={"per_epoch": 5}).rebalance


def test_weights_for_other_terms_fail_before_the_first_step():
    model = net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"rebalance\['weights'\]=\{'loss': 1.0\} must give one weight per rebalanced "
                                         r"term \['loss', 'pixel_rmse'\]; missing \['pixel_rmse'\]"):
        fit(model, synth(4), config=config(weights={"loss": 1.0}), teacher=net(5, aux=False),
            distill=[DistillTerm("pixel_rmse")])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match=r"unknown \['rank'\]"):
        fit(net(), synth(4), config=config(weights={"loss": 1.0, "rank": 1.0}))


def _zero_loss(pred, target, mask):
    return (pred * 0).sum()


def test_a_rebalanced_term_that_reaches_zero_is_reported():
    # Lee & Kim's ratio L_i' / L_i is undefined for a zero loss: the error says where it happened
    cfg = TrainConfig(epochs=1, batch_size=2, loss=_zero_loss, progress=False, rebalance={"per_epoch": 3})
    with pytest.raises(ValueError, match=r"loss rebalancing at epoch 0.5 \(TrainConfig.rebalance\): .*mean losses must be > 0"):
        fit(net(), synth(4), config=cfg, teacher=net(5, aux=False), distill=[DistillTerm("pixel_rmse")])
