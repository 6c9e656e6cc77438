"""depthlib.losses: every loss against a small case computed by hand (or with numpy), plus gradchecks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from depthlib import losses as L

DENSE = ["l1", "l2", "smooth_l1", "berhu", "sobel_edge", "silog", "ssi"]


def t4(values, dtype=torch.float64) -> torch.Tensor:
    """A (1, 1, H, W) tensor from a nested list."""
    return torch.tensor(values, dtype=dtype)[None, None]


# A 2x2 case shared by the pixel-wise losses: the 0 in the target is an invalid pixel.
PRED = [[1.0, 2.0], [3.0, 4.0]]
TARGET = [[1.5, 0.0], [2.0, 6.0]]  # valid residuals pred - target: -0.5, +1, -2


def test_l1_hand():
    assert L.l1(t4(PRED), t4(TARGET)).item() == pytest.approx((0.5 + 1 + 2) / 3)


def test_l2_hand():
    assert L.l2(t4(PRED), t4(TARGET)).item() == pytest.approx((0.25 + 1 + 4) / 3)


def test_smooth_l1_hand():
    # beta = 1: 0.5 * 0.5^2 = 0.125 ; |1| is not < 1 -> 1 - 0.5 ; |2| -> 1.5
    assert L.smooth_l1(t4(PRED), t4(TARGET)).item() == pytest.approx((0.125 + 0.5 + 1.5) / 3)
    # beta = 4: all quadratic, 0.5 x^2 / 4
    assert L.smooth_l1(t4(PRED), t4(TARGET), beta=4.0).item() == pytest.approx((0.25 + 1 + 4) / 8 / 3)


def test_berhu_hand():
    # c = 0.2 * 2 = 0.4; every |x| > c: (x^2 + c^2) / (2c)
    expected = ((0.25 + 0.16) / 0.8 + (1 + 0.16) / 0.8 + (4 + 0.16) / 0.8) / 3
    assert L.berhu(t4(PRED), t4(TARGET)).item() == pytest.approx(expected)
    # a residual below c takes the L1 branch: residuals 0.1 and 2 -> c = 0.4
    assert L.berhu(t4([[1.1, 3.0]]), t4([[1.0, 1.0]])).item() == pytest.approx((0.1 + (4 + 0.16) / 0.8) / 2)
    # fixed threshold
    assert L.berhu(t4(PRED), t4(TARGET), threshold=1.0).item() == pytest.approx((0.5 + 1 + (4 + 1) / 2) / 3)


def test_berhu_perfect_prediction_is_zero_with_finite_gradient():
    pred = t4(PRED).requires_grad_()
    loss = L.berhu(pred, pred.detach().clone())
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(pred.grad).all()


def test_berhu_adaptive_gradient_treats_c_as_constant():
    pred = t4(PRED).requires_grad_()
    L.berhu(pred, t4(TARGET)).backward()
    # d/dx (x^2 + c^2)/(2c) = x / c, divided by the 3 valid pixels; the invalid pixel gets 0
    expected = torch.tensor([[-0.5 / 0.4, 0.0], [1 / 0.4, -2 / 0.4]], dtype=torch.float64) / 3
    torch.testing.assert_close(pred.grad[0, 0], expected)


def _np_sobel_magnitude(x: np.ndarray) -> np.ndarray:
    """Kornia's normalised Sobel magnitude, independently: replicate padding, kernels / 8, eps 1e-6."""
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64) / 8
    ky = kx.T
    p = np.pad(x, 1, mode="edge")
    h, w = x.shape
    gx = np.zeros_like(x)
    gy = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            win = p[i : i + 3, j : j + 3]
            gx[i, j] = (win * kx).sum()
            gy[i, j] = (win * ky).sum()
    return np.sqrt(gx**2 + gy**2 + 1e-6)


def _np_smooth_l1(a: np.ndarray, b: np.ndarray, beta: float = 1.0) -> float:
    d = np.abs(a - b)
    return float(np.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta).mean())


def test_sobel_edge_numpy():
    rng = np.random.default_rng(0)
    pred, target = rng.uniform(1, 5, (5, 6)), rng.uniform(1, 5, (5, 6))
    expected = _np_smooth_l1(pred, target) + 12 * _np_smooth_l1(_np_sobel_magnitude(pred), _np_sobel_magnitude(target))
    assert L.sobel_edge(t4(pred.tolist()), t4(target.tolist())).item() == pytest.approx(expected, rel=1e-12)


def test_sobel_edge_ramp_uses_normalised_kernels():
    # pred is a ramp of slope 1 per pixel along x, target is flat and equal to pred's mean at the centre column;
    # with kornia's normalised kernels the interior magnitude is sqrt(1 + 1e-6) ~ 1, not 8
    pred = t4([[0.0, 1.0, 2.0, 3.0]] * 4) + 1
    target = torch.full_like(pred, 2.5)
    depth = _np_smooth_l1(pred.numpy()[0, 0], target.numpy()[0, 0])
    mag_p = _np_sobel_magnitude(pred.numpy()[0, 0])
    assert mag_p[1, 1] == pytest.approx(1.0, abs=1e-6)
    edge = _np_smooth_l1(mag_p, np.full((4, 4), 1e-3))
    assert L.sobel_edge(pred, target, lambd=2.0).item() == pytest.approx(depth + 2.0 * edge)


def test_sobel_edge_ignores_holes_in_ground_truth():
    pred = t4([[1.0, 2.0, 3.0, 4.0, 5.0]] * 5)
    target = pred.clone()
    target[..., 2, 2] = 0  # a hole: without the eroded mask it would create a strong fake edge
    assert L.sobel_edge(pred, target).item() == 0.0


def test_sobel_edge_xy_mode_numpy():
    rng = np.random.default_rng(1)
    pred, target = rng.uniform(1, 5, (4, 4)), rng.uniform(1, 5, (4, 4))
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64) / 8

    def grads(x):
        p = np.pad(x, 1, mode="edge")
        gx = np.array([[(p[i : i + 3, j : j + 3] * kx).sum() for j in range(4)] for i in range(4)])
        gy = np.array([[(p[i : i + 3, j : j + 3] * kx.T).sum() for j in range(4)] for i in range(4)])
        return np.stack([gx, gy])

    expected = _np_smooth_l1(pred, target) + 12 * _np_smooth_l1(grads(pred), grads(target))
    got = L.sobel_edge(t4(pred.tolist()), t4(target.tolist()), mode="xy").item()
    assert got == pytest.approx(expected, rel=1e-12)


def test_silog_hand():
    # image 1: d = ln 2, ln 1 (0 target invalid) ; image 2: d = ln 0.5, ln 0.5, ln 0.5, ln 0.5
    pred = torch.tensor([[[[2.0, 3.0], [1.0, 9.0]]], [[[1.0, 1.0], [1.0, 1.0]]]], dtype=torch.float64)
    target = torch.tensor([[[[1.0, 3.0], [1.0, 0.0]]], [[[2.0, 2.0], [2.0, 2.0]]]], dtype=torch.float64)
    ln2 = math.log(2)
    img1 = (ln2**2) / 3 - 0.5 * (ln2 / 3) ** 2
    img2 = ln2**2 - 0.5 * ln2**2
    assert L.silog(pred, target).item() == pytest.approx((img1 + img2) / 2)
    # lambda = 1 makes a global scale error free
    assert L.silog(pred[1:], target[1:], lambd=1.0).item() == pytest.approx(0.0, abs=1e-15)


def _np_ssi(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, alpha=0.5, scales=4) -> float:
    """MiDaS's loss, independently: numpy lstsq per image, explicit loops for the gradient term."""
    res = np.zeros_like(pred)
    for b in range(pred.shape[0]):
        m = mask[b]
        a = np.stack([pred[b][m], np.ones(m.sum())], axis=1)
        (s, t), *_ = np.linalg.lstsq(a, target[b][m], rcond=None)
        res[b] = np.where(m, s * pred[b] + t - target[b], 0.0)
    total = (res**2).sum() / (2 * mask.sum())
    for k in range(scales):
        r, mk = res[:, :: 2**k, :: 2**k], mask[:, :: 2**k, :: 2**k]
        g = 0.0
        for b in range(r.shape[0]):
            for i in range(r.shape[1]):
                for j in range(r.shape[2]):
                    if j + 1 < r.shape[2] and mk[b, i, j] and mk[b, i, j + 1]:
                        g += abs(r[b, i, j + 1] - r[b, i, j])
                    if i + 1 < r.shape[1] and mk[b, i, j] and mk[b, i + 1, j]:
                        g += abs(r[b, i + 1, j] - r[b, i, j])
        total += alpha * g / mk.sum()
    return float(total)


def test_ssi_numpy():
    rng = np.random.default_rng(2)
    pred, target = rng.uniform(0.1, 1, (2, 8, 8)), rng.uniform(0.1, 1, (2, 8, 8))
    target[0, :3, :2] = 0  # invalid pixels
    mask = target > 0
    expected = _np_ssi(pred, target, mask)
    got = L.ssi(torch.from_numpy(pred)[:, None], torch.from_numpy(target)[:, None]).item()
    assert got == pytest.approx(expected, rel=1e-10)


def test_ssi_is_zero_for_an_affine_prediction():
    rng = np.random.default_rng(3)
    target = torch.from_numpy(rng.uniform(0.1, 1, (2, 1, 6, 6)))
    pred = torch.empty_like(target)
    pred[0] = (target[0] - 0.3) / 2.0  # a different scale and shift per image
    pred[1] = 5.0 * target[1] + 1.0
    assert L.ssi(pred, target).item() == pytest.approx(0.0, abs=1e-12)


def test_ranking_hand():
    pred = t4([[1.0, 2.0], [3.0, 0.5]])
    pairs = torch.tensor([[0, 0, 0, 1], [1, 0, 1, 1], [0, 1, 1, 1]])  # (A, B): (1, 2), (3, 0.5), (2, 0.5)
    relation = torch.tensor([1, 1, 0])  # A farther, A farther, equal
    expected = (math.log(1 + math.exp(-(1 - 2))) + math.log(1 + math.exp(-(3 - 0.5))) + (2 - 0.5) ** 2) / 3
    assert L.ranking(pred, pairs, relation).item() == pytest.approx(expected)
    # inverse space: larger value = closer, the ordinal pairs' roles swap
    expected_inv = (math.log(1 + math.exp(1 - 2)) + math.log(1 + math.exp(3 - 0.5)) + 1.5**2) / 3
    assert L.ranking(pred, pairs, relation, space="inverse").item() == pytest.approx(expected_inv)


def test_ranking_matches_paper_003_eq2_with_its_encoding():
    # 003: r = 1 (A closer) -> log(1 + exp(z_B - z_A)); ours with relation = -r and space='inverse'
    pred = t4([[0.3, -1.2]])
    pairs = torch.tensor([[0, 0, 0, 1]])
    r003 = 1
    eq2 = math.log(1 + math.exp(-1.2 - 0.3))
    assert L.ranking(pred, pairs, torch.tensor([-r003]), space="inverse").item() == pytest.approx(eq2)


def test_ranking_is_stable_for_large_differences():
    pred = t4([[1000.0, -1000.0]])
    loss = L.ranking(pred, torch.tensor([[0, 0, 0, 1]]), torch.tensor([-1]))
    assert loss.item() == pytest.approx(2000.0)


def test_ranking_improved_hand():
    # five ordinal pairs with losses softplus(-r*diff) and one equal pair; floor(0.25 * 5) = 1 easiest dropped
    values = [[5.0, 1.0, 2.0, 3.0, 4.0, 0.0, 2.5]]
    pred = t4(values)
    pairs = torch.tensor([[0, 0, 0, 1], [0, 2, 0, 1], [0, 3, 0, 4], [0, 4, 0, 2], [0, 5, 0, 1], [0, 6, 0, 2]])
    relation = torch.tensor([1, 1, -1, 1, -1, 0])
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    ordinal = [sp(-(5 - 1)), sp(-(2 - 1)), sp(3 - 4), sp(-(4 - 2)), sp(0 - 1)]
    equal = (2.5 - 2.0) ** 2
    kept = sorted(ordinal)[1:]
    assert L.ranking_improved(pred, pairs, relation).item() == pytest.approx((sum(kept) + equal) / 6)
    assert L.ranking_improved(pred, pairs, relation, ignore_fraction=0.0).item() == pytest.approx(
        L.ranking(pred, pairs, relation).item()
    )


def test_sample_ordinal_pairs_relations_follow_the_target():
    target = torch.tensor([[[[1.0, 2.0, 0.0], [1.01, 4.0, 8.0]]]])
    g = torch.Generator().manual_seed(0)
    pairs, relation = L.sample_ordinal_pairs(target, n_pairs=200, threshold=0.02, generator=g)
    assert pairs.shape == (1, 200, 4) and relation.shape == (1, 200)
    za = target[0, 0][pairs[0, :, 0], pairs[0, :, 1]]
    zb = target[0, 0][pairs[0, :, 2], pairs[0, :, 3]]
    assert bool((za > 0).all() and (zb > 0).all())  # never the invalid pixel
    expected = torch.where(za > 1.02 * zb, 1, torch.where(za * 1.02 < zb, -1, 0))
    assert torch.equal(relation[0], expected)
    assert bool((relation == 0).any())  # 1.0 vs 1.01 and identical points are "equal"


def test_distill_rmse_hand():
    student = t4([[1.0, 2.0], [3.0, 4.0]])
    teacher = t4([[1.0, 0.0], [3.0, 8.0]])  # a teacher's 0 is a value, not a hole
    assert L.distill_rmse(student, teacher).item() == pytest.approx(math.sqrt((4 + 16) / 4))
    mask = torch.tensor([[True, False], [True, True]])[None, None]
    assert L.distill_rmse(student, teacher, mask).item() == pytest.approx(math.sqrt(16 / 3))
    s = student.clone().requires_grad_()
    L.distill_rmse(s, s.detach().clone()).backward()
    assert torch.isfinite(s.grad).all()


def test_distill_pairwise_hand():
    # two nodes; student features [1,0], [0,1] (orthogonal), teacher [2,0], [3,0] (parallel)
    student = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]], dtype=torch.float64)
    teacher = torch.tensor([[[[2.0, 3.0]], [[0.0, 0.0]]]], dtype=torch.float64)
    # affinities [[1,0],[0,1]] vs [[1,1],[1,1]]: mean squared difference = 2 / 4
    assert L.distill_pairwise(student, teacher, scale=None).item() == pytest.approx(0.5)


def test_distill_pairwise_pools_patches_numpy():
    rng = np.random.default_rng(4)
    s, t = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 5, 4, 4))

    def affinity(f):
        pooled = f.reshape(f.shape[0], f.shape[1], 2, 2, 2, 2).max(axis=(3, 5)).reshape(f.shape[0], f.shape[1], 4)
        unit = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.einsum("bcm,bcn->bmn", unit, unit)

    expected = ((affinity(s) - affinity(t)) ** 2).mean()
    got = L.distill_pairwise(torch.from_numpy(s), torch.from_numpy(t), scale=0.5).item()
    assert got == pytest.approx(expected, rel=1e-10)


def test_distill_feature_l2_hand():
    s = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    t = torch.tensor([[[[1.0, 0.0]], [[0.0, 4.0]]]])
    assert L.distill_feature_l2(s, t).item() == pytest.approx((4 + 9) / 4)
    with pytest.raises(ValueError, match="same shape"):
        L.distill_feature_l2(s, torch.zeros(1, 2, 2, 2))
    # a constant student keeps its value when resized
    assert L.distill_feature_l2(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 4, 4), interpolate=True).item() == 1.0


def test_distillation_does_not_train_the_teacher():
    s, t = torch.rand(1, 2, 3, 3, requires_grad=True), torch.rand(1, 2, 3, 3, requires_grad=True)
    (L.distill_rmse(s[:, :1], t[:, :1]) + L.distill_pairwise(s, t, scale=None) + L.distill_feature_l2(s, t)).backward()
    assert t.grad is None and s.grad is not None


# --------------------------------------------------------------------------------------------- gradchecks
def _gradcheck_dense(name: str, **kw):
    g = torch.Generator().manual_seed(5)
    pred = (torch.rand(2, 1, 5, 5, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    target = torch.rand(2, 1, 5, 5, generator=g, dtype=torch.float64) + 0.5
    target[0, 0, 1, 1] = 0
    fn = L.get_loss(name, **kw)
    assert gradcheck(lambda p: fn(p, target), (pred,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "name, kw",
    [
        ("l1", {}),
        ("l2", {}),
        ("smooth_l1", {}),
        ("berhu", {"threshold": 0.3}),
        ("sobel_edge", {}),
        ("sobel_edge", {"mode": "xy"}),
        ("silog", {}),
        ("ssi", {}),
    ],
)
def test_gradcheck_dense(name, kw):
    _gradcheck_dense(name, **kw)


@pytest.mark.parametrize("name", ["ranking", "ranking_improved"])
def test_gradcheck_ordinal(name):
    g = torch.Generator().manual_seed(6)
    pred = torch.rand(2, 1, 4, 4, generator=g, dtype=torch.float64).requires_grad_()
    pairs = torch.randint(0, 4, (2, 6, 4), generator=g)
    relation = torch.randint(-1, 2, (2, 6), generator=g)
    fn = L.get_loss(name)
    assert gradcheck(lambda p: fn(p, pairs, relation), (pred,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["distill_rmse", "distill_pairwise", "distill_feature_l2"])
def test_gradcheck_distillation(name):
    g = torch.Generator().manual_seed(7)
    channels = 1 if name == "distill_rmse" else 3
    s = torch.rand(2, channels, 4, 4, generator=g, dtype=torch.float64).requires_grad_()
    t = torch.rand(2, channels, 4, 4, generator=g, dtype=torch.float64)
    fn = L.get_loss(name)
    assert gradcheck(lambda x: fn(x, t), (s,), eps=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", DENSE)
def test_all_invalid_mask_raises(name):
    pred = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="no valid pixel"):
        L.get_loss(name)(pred, torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="no valid pixel"):
        L.get_loss(name)(pred, torch.rand(1, 1, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.bool))


def test_nan_target_pixels_are_never_used():
    target = t4([[1.0, float("nan")], [2.0, 3.0]])
    mask = torch.ones_like(target, dtype=torch.bool)
    assert math.isfinite(L.l1(t4(PRED), target, mask).item())


def test_shape_and_mask_errors():
    with pytest.raises(ValueError, match="same shape"):
        L.l1(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 5))
    with pytest.raises(TypeError, match="bool"):
        L.l1(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="outside"):
        L.ranking(torch.rand(1, 1, 4, 4), torch.tensor([[0, 0, 4, 0]]), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"\+1"):
        L.ranking(torch.rand(1, 1, 4, 4), torch.tensor([[0, 0, 1, 0]]), torch.tensor([2]))


def test_get_loss_errors_and_kind():
    with pytest.raises(ValueError, match="valid names: .*berhu.*sobel_edge"):
        L.get_loss("edge")
    with pytest.raises(ValueError, match="takes no option"):
        L.get_loss("l1", beta=2.0)
    assert L.get_loss("sobel_edge", lambd=1.0).kind == "dense"
    assert L.get_loss("ranking").kind == "ordinal"
    assert L.get_loss("distill_pairwise").kind == "distillation"
    assert set(L.list_losses()) >= set(DENSE) | {"ranking", "ranking_improved", "distill_rmse"}


def test_deep_supervision_hand():
    target = torch.full((1, 1, 4, 4), 2.0)
    output = {"depth": torch.full((1, 1, 4, 4), 1.0), "aux": [torch.full((1, 1, 2, 2), 3.0), torch.full((1, 1, 1, 1), 6.0)]}
    # L1 errors 1, 1, 4 (constant maps survive bilinear upsampling unchanged)
    assert L.deep_supervision(L.l1, output, target).item() == pytest.approx(0.5 * 1 + 0.25 * 1 + 0.25 * 4)
    with pytest.raises(ValueError, match="2 weights for 3"):
        L.deep_supervision(L.l1, output, target, weights=(0.5, 0.5))


# --------------------------------------------------------------------------------------------- rebalancing
def test_multi_loss_rebalancer_hand():
    rb = L.MultiLossRebalancer(["a", "b"])  # 003: equal weights, no initial scaling, lam from -3 up to +3
    assert rb.weights == {"a": 0.5, "b": 0.5}
    assert [rb.lam(e) for e in range(6)] == [-3.0, -1.5, 0.0, 1.5, 3.0, 3.0]

    for a, b in [(4.0, 2.0), (4.0, 2.0)]:
        rb.record({"a": a, "b": b})
    rb.rebalance(epoch=0)  # first period only stores the reference: means a=4, b=2, T' = 0.5*4 + 0.5*2 = 3
    assert rb.weights == {"a": 0.5, "b": 0.5}

    rb.record({"a": torch.tensor(2.0), "b": torch.tensor(1.8)})
    w = rb.rebalance(epoch=1)  # lam = -1.5
    total = 0.5 * 2 + 0.5 * 1.8  # 1.9
    adj_a = 1 - 1.5 * ((total / 3) * (4 / 2) - 1)  # a decays fast ("easy") -> loses weight when lam < 0
    adj_b = 1 - 1.5 * ((total / 3) * (2 / 1.8) - 1)
    assert w["a"] == pytest.approx(0.5 * min(max(adj_a, 0.5), 2))
    assert w["b"] == pytest.approx(0.5 * min(max(adj_b, 0.5), 2))
    assert w["b"] > w["a"]  # hard loss first

    rb.record({"a": 1.0, "b": 1.0})
    prev_total = w["a"] * 2 + w["b"] * 1.8
    w2 = rb.rebalance(epoch=4)  # lam = +3
    total = w["a"] * 1 + w["b"] * 1
    for k, prev in (("a", 2.0), ("b", 1.8)):
        adj = min(max(1 + 3 * ((total / prev_total) * (prev / 1.0) - 1), 0.5), 2)
        assert w2[k] == pytest.approx(w[k] * adj)
    assert len(rb.history) == 3


def test_multi_loss_rebalancer_lee_kim_initial_scaling_and_state():
    rb = L.MultiLossRebalancer(["a", "b"], lam_start=3.0, lam_slope=-1.5, lam_end=-3.0, initialize=True)
    loss = rb.combine({"a": torch.tensor(4.0, requires_grad=True), "b": torch.tensor(1.0, requires_grad=True)})
    assert loss.item() == pytest.approx(2.5) and loss.requires_grad
    w = rb.rebalance(0)
    # T = 0.5*4 + 0.5*1 = 2.5; w_i = T * 0.5 / L_i
    assert w == pytest.approx({"a": 2.5 * 0.5 / 4, "b": 2.5 * 0.5 / 1})
    clone = L.MultiLossRebalancer(["a", "b"], lam_start=3.0, lam_slope=-1.5, lam_end=-3.0, initialize=True)
    clone.load_state_dict(rb.state_dict())
    for r in (rb, clone):
        r.record({"a": 3.0, "b": 0.9})
    assert rb.rebalance(1) == clone.rebalance(1)
    with pytest.raises(ValueError, match="no loss recorded"):
        rb.rebalance(2)
    with pytest.raises(KeyError, match="missing"):
        rb.record({"a": 1.0})


def test_multi_loss_rebalancer_clips_each_update():
    rb = L.MultiLossRebalancer(["a", "b"], lam_start=3.0, lam_slope=0.0, lam_end=3.0)
    rb.record({"a": 10.0, "b": 1.0})
    rb.rebalance(0)
    rb.record({"a": 1.0, "b": 1.0})  # a fell 10x, b stayed: T/T' = 1/5.5
    w = rb.rebalance(1)
    # a: 1 + 3 * (10/5.5 - 1) = 3.45 -> clipped to 2 ; b: 1 + 3 * (1/5.5 - 1) = -1.45 -> clipped to 0.5
    assert w == pytest.approx({"a": 0.5 * 2.0, "b": 0.5 * 0.5})
