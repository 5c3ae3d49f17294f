"""Algorithm 1: literal batch-1 loop vs batched lock-step; A-SGD vs E-SGD."""

import pytest
import torch

from rnnpose.algorithm1 import StepConfig, batched_step, literal_step
from rnnpose.config import get_profile
from rnnpose.models.rmpp import RMPP
from rnnpose.targets import person_heatmaps

PROF = get_profile("tiny", lstm1_hidden=16)  # the fixtures below were pinned at this size


pytestmark = pytest.mark.usefixtures("one_thread")
ZS = (1, 3, 0)  # people per image: exact count, under-prediction, over-prediction (see _model)


def _gt(z: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(z, 17, 3, generator=g) * 15
    kp[..., 2] = 2
    return person_heatmaps(kp, 16, 1.0)


def _model() -> RMPP:
    """A fixed untrained model whose stop probabilities give, for ZS and T=2: image 0 stops at
    t=2 (p: >, <), image 1 under-predicts (p: >, <, <, <; stops at t=4 = z+1), image 2
    over-predicts (p: >, <)."""
    torch.manual_seed(0)
    m = RMPP(PROF)
    with torch.no_grad():
        m.lstm1.stop.weight.mul_(40.0)
        m.lstm1.stop.bias.fill_(5.0)
    return m


def _data():
    feats = torch.randn(3, 8, 16, 16, generator=torch.Generator().manual_seed(5))
    return feats, [_gt(z, 10 + i) for i, z in enumerate(ZS)]


def _grads(m):
    return {n: (p.grad.clone() if p.grad is not None else None) for n, p in m.named_parameters()}


def _literal_all(m, feats, gts, cfg, images=(0, 1, 2)):
    m.zero_grad()
    res = [literal_step(m, feats[b : b + 1], gts[b], cfg, seed=b) for b in images]
    return res, _grads(m)


def _assert_grads_close(a, b):
    for n in a:
        if a[n] is None or b[n] is None:
            assert a[n] is None and b[n] is None, n
        else:
            torch.testing.assert_close(a[n], b[n], atol=1e-5, rtol=1e-4, msg=n)


def test_stop_pattern_of_the_fixture():
    m, (feats, gts) = _model(), _data()
    cfg = StepConfig.from_profile(PROF, T=2, max_iterations=6)
    res, _ = _literal_all(m, feats, gts, cfg)
    assert [(r["iterations"], r["z_hat"]) for r in res] == [(2, 1), (4, 1), (2, 1)]
    # image 1 closes a chunk at t=2 (p < omega) and every later t (p < omega): 4 chunks
    assert [r["chunks"] for r in res] == [1, 3, 1]


@pytest.mark.parametrize(
    "config,ordering,sgd",
    [("aa'", "learned", "approx"), ("bb'", "random", "approx"), ("ab'", "confidence", "exact")],
)
def test_batched_equals_literal(config, ordering, sgd):
    m, (feats, gts) = _model(), _data()
    cfg = StepConfig.from_profile(PROF, T=2, max_iterations=6, loss_config=config,
                                  ordering=ordering, sgd=sgd)  # fmt: skip
    res, g_lit = _literal_all(m, feats, gts, cfg)
    m.zero_grad()
    out = batched_step(m, feats, gts, cfg, seeds=[0, 1, 2])
    g_bat = _grads(m)
    for key in ("heatmap1", "stop", "heatmap2", "total"):
        assert out[key] == pytest.approx(sum(r[key] for r in res), rel=1e-5, abs=1e-6), key
    assert out["iterations"] == sum(r["iterations"] for r in res)
    assert out["z_hat"] == sum(r["z_hat"] for r in res)
    assert out["chunks"] == sum(r["chunks"] for r in res)
    _assert_grads_close(g_lit, g_bat)


def test_asgd_with_large_T_equals_exact_and_small_T_differs():
    m, (feats, gts) = _model(), _data()
    approx = StepConfig.from_profile(PROF, T=6, max_iterations=6, sgd="approx")
    exact = StepConfig.from_profile(PROF, T=6, max_iterations=6, sgd="exact")
    r_a, g_a = _literal_all(m, feats, gts, approx, images=(0, 2))
    r_e, g_e = _literal_all(m, feats, gts, exact, images=(0, 2))
    assert [r["total"] for r in r_a] == pytest.approx([r["total"] for r in r_e])
    _assert_grads_close(g_a, g_e)
    cut = StepConfig.from_profile(PROF, T=1, max_iterations=6, sgd="approx")
    r_c, g_c = _literal_all(m, feats, gts, cut, images=(0, 2))
    assert [r["total"] for r in r_c] == pytest.approx([r["total"] for r in r_e])  # same losses
    w = "lstm1.lstm.cells.0.conv.weight"
    assert not torch.allclose(g_c[w], g_e[w], atol=1e-6)  # ...but truncated gradients


def test_gradients_reach_every_parameter():
    m, (feats, gts) = _model(), _data()
    cfg = StepConfig.from_profile(PROF, T=2, max_iterations=6)
    m.zero_grad()
    batched_step(m, feats, gts, cfg, seeds=[0, 1, 2])
    for n, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_max_iterations_caps_and_batched_without_lstm2():
    torch.manual_seed(0)
    m = RMPP(PROF, use_lstm2=False)
    with torch.no_grad():
        m.lstm1.stop.bias.fill_(10.0)  # p ~ 1: never stops by itself
    feats, gts = _data()
    cfg = StepConfig.from_profile(PROF, T=2, max_iterations=3)
    res, g_lit = _literal_all(m, feats, gts, cfg)
    assert [r["iterations"] for r in res] == [3, 3, 3] and all(r["heatmap2"] == 0 for r in res)
    m.zero_grad()
    out = batched_step(m, feats, gts, cfg, seeds=[0, 1, 2])
    assert out["total"] == pytest.approx(sum(r["total"] for r in res), rel=1e-5)
    _assert_grads_close(g_lit, _grads(m))
