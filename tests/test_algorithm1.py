"""Algorithm 1: literal batch-1 loop vs batched lock-step; A-SGD vs E-SGD."""

import pytest
import torch

from rnnpose.algorithm1 import StepConfig, batched_step, literal_step
from rnnpose.config import get_profile
from rnnpose.models.rmpp import RMPP
from rnnpose.targets import person_heatmaps

PROF = get_profile("tiny", lstm1_hidden=16)  # the fixtures below were pinned at this size


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


# ---------------------------------------------------------------- the ablation switches
# Each test below pins a switch against an expectation worked out by hand (counts of
# backward() calls and Hungarian matchings, which GT are left, what LSTM2 sees), not against
# the other implementation.


def _never_stops(loop: int | None = None) -> RMPP:
    """p_t ~ 1 at every iteration: an image decodes to max_iterations."""
    torch.manual_seed(0)
    m = RMPP(PROF if loop is None else PROF.replace(loop=loop))
    with torch.no_grad():
        m.lstm1.stop.bias.fill_(10.0)
    return m


@pytest.fixture
def spy(monkeypatch):
    """Counts ``backward()`` calls and records each Hungarian matching of either step:
    ``matchings`` as (predictions, GT left), ``pairs`` as (matched predictions, their GT)."""
    import rnnpose.algorithm1 as alg
    import rnnpose.losses.rmpp as losses
    from rnnpose.matching import hungarian_match

    rec = {"backward": 0, "matchings": [], "pairs": []}
    real_backward = torch.Tensor.backward

    def backward(self, *args, **kwargs):
        rec["backward"] += 1
        return real_backward(self, *args, **kwargs)

    def match(pred, gt):
        pi, gi = hungarian_match(pred, gt)
        rec["matchings"].append((pred.shape[0], gt.shape[0]))
        rec["pairs"].append((pred.detach()[pi].clone(), gt.detach()[gi].clone()))
        return pi, gi

    monkeypatch.setattr(torch.Tensor, "backward", backward)
    monkeypatch.setattr(losses, "hungarian_match", match)
    monkeypatch.setattr(alg, "hungarian_match", match)
    return rec


# z = 5 people, max_iterations 6, p_t ~ 1 throughout: predictions t=1..5 may match (aa'), t=6
# is an over-prediction. A chunk matches its predictions against the GT not yet assigned
# (Algorithm 1, line 17), so the GT column shrinks chunk by chunk.
SGD_CASES = {
    ("exact", 2): [(5, 5)],  # E-SGD: one chunk, one matching, one backward(), whatever T
    ("approx", 6): [(5, 5)],
    ("approx", 4): [(4, 5), (1, 1)],  # t=1-4, then t=5-6 (t=6 is beyond z)
    ("approx", 2): [(2, 5), (2, 3), (1, 1)],
    ("approx", 1): [(1, 5), (1, 4), (1, 3), (1, 2), (1, 1), (0, 0)],
}


@pytest.mark.parametrize("sgd,T", list(SGD_CASES))
@pytest.mark.parametrize("path", ["literal", "batched"])
def test_sgd_mode_and_T_set_chunks_matchings_and_backward_calls(spy, path, sgd, T):
    m, gt = _never_stops(), _gt(5, 3)
    feats = _data()[0][:1]
    cfg = StepConfig.from_profile(PROF, T=T, max_iterations=6, sgd=sgd)
    if path == "literal":
        out = literal_step(m, feats, gt, cfg)
    else:
        out = batched_step(m, feats, [gt], cfg)
    want = SGD_CASES[(sgd, T)]
    assert spy["matchings"] == want
    assert spy["backward"] == out["chunks"] == len(want)
    assert out["iterations"] == 6 and out["z_hat"] == 6


@pytest.mark.parametrize("sgd,want_backward", [("exact", 1), ("approx", 3)])
def test_batched_chunks_are_per_image(spy, sgd, want_backward):
    """Two images (z = 5 and 2) in lock-step, T = 2: each closes its own chunks; backward()
    runs once all running images have closed one."""
    m, feats = _never_stops(), _data()[0][:2]
    cfg = StepConfig.from_profile(PROF, T=2, max_iterations=6, sgd=sgd)
    out = batched_step(m, feats, [_gt(5, 3), _gt(2, 4)], cfg)
    if sgd == "exact":
        assert spy["matchings"] == [(5, 5), (2, 2)]
    else:  # per iteration 2, 4, 6: image 0 then image 1 (all of whose GT went at t=2)
        assert spy["matchings"] == [(2, 5), (2, 2), (2, 3), (0, 0), (1, 1), (0, 0)]
    assert spy["backward"] == want_backward and out["per_image"] == [(6, 6), (6, 6)]


def _lstm1_outputs(model: RMPP) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Records LSTM1's (heatmaps, logit) of every iteration (a forward hook)."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    model.lstm1.register_forward_hook(lambda mod, a, out: seen.append((out[0].detach(),
                                                                       out[1].detach())))
    return seen


def _sharp_lstm2(model: RMPP) -> RMPP:
    """LSTM2 whose output depends visibly on its hidden state (the default head is ~0)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.lstm2.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


@pytest.mark.parametrize("path", ["literal", "batched"])
def test_lstm2_state_runs_on_across_chunks(spy, path):
    """T = 1: three chunks of one matched person each. LSTM2 must see them as ONE sequence of
    three (its state detached, not cleared, at chunk ends): heatmap2 equals LSTM2 run once over
    the three matched predictions, and differs from restarting LSTM2 at every chunk."""
    m = _sharp_lstm2(_never_stops())
    feats, gts = _data()[0][:2], [_gt(3, 3), _gt(3, 4)]
    cfg = StepConfig.from_profile(PROF, T=1, max_iterations=3)
    images = (0,) if path == "literal" else (0, 1)
    if path == "literal":
        out = literal_step(m, feats[:1], gts[0], cfg)
    else:
        out = batched_step(m, feats, gts, cfg, seeds=[0, 1])
    # one matching per image and chunk: 3 GT, then 2, then 1 left
    assert spy["matchings"] == [(1, z) for z in (3, 2, 1) for _ in images]
    carried = restarted = 0.0
    with torch.no_grad():
        for b in images:  # the batched step closes image 0's chunk, then image 1's
            pairs = spy["pairs"][b :: len(images)]
            matched = torch.cat([p for p, _ in pairs])
            target = torch.cat([g for _, g in pairs])
            feat = m.norm(feats[b : b + 1])
            seq, _ = m.lstm2.sequence(feat, matched)
            carried += cfg.scale * (seq - target).pow(2).sum().item()
            for k in range(3):
                alone, _ = m.lstm2.sequence(feat, matched[k : k + 1])
                restarted += cfg.scale * (alone - target[k : k + 1]).pow(2).sum().item()
    assert out["heatmap2"] == pytest.approx(carried, rel=1e-5)
    assert abs(carried - restarted) > 0.01 * carried  # the check can tell the two apart


@pytest.mark.parametrize("ordering", ["learned", "random", "confidence", "inverse", "canonical"])
@pytest.mark.parametrize("path", ["literal", "batched"])
def test_ordering_permutes_lstm2_input_and_target_alike(spy, monkeypatch, path, ordering):
    """E-SGD (one chunk), z = 3: the ordering is asked with the matched predictions and their
    p_t, and LSTM2 reads those predictions in the returned order with the GT in the same order
    (eq. 4). heatmap2 is recomputed from the recorded permutation."""
    import rnnpose.algorithm1 as alg

    m = _sharp_lstm2(_never_stops())
    with torch.no_grad():  # p_t = 0.89, 0.93, 0.94: confidence reverses LSTM1's order
        m.lstm1.stop.bias.fill_(1.0)
        m.lstm1.stop.weight.mul_(-10.0)
    seen = _lstm1_outputs(m)
    calls = []
    real_order = alg.order

    def order(name, heatmaps, probs=None, generator=None):
        perm = real_order(name, heatmaps, probs, generator)
        calls.append((name, heatmaps.detach().clone(), probs.clone(), perm.clone()))
        return perm

    monkeypatch.setattr(alg, "order", order)
    feats, gt = _data()[0][:1], _gt(3, 3)
    cfg = StepConfig.from_profile(PROF, T=4, max_iterations=3, sgd="exact", ordering=ordering)
    if path == "literal":
        out = literal_step(m, feats, gt, cfg, seed=2)
    else:
        out = batched_step(m, feats, [gt], cfg, seeds=[2])
    probs = torch.sigmoid(torch.cat([lg for _, lg in seen]).double())
    assert (probs >= cfg.omega).all() and probs.argsort(descending=True).tolist() == [2, 1, 0]
    ((matched, target),) = spy["pairs"]
    ((name, heatmaps, p_given, perm),) = calls
    assert name == ordering and torch.equal(heatmaps, matched)
    torch.testing.assert_close(p_given.double(), probs, atol=1e-6, rtol=0)
    assert perm.tolist() == real_order(ordering, matched, probs.float(),
                                       alg._order_generator(2, 0)).tolist()  # fmt: skip
    with torch.no_grad():
        seq, _ = m.lstm2.sequence(m.norm(feats), matched[perm])
    want = cfg.scale * (seq - target[perm]).pow(2).sum().item()
    assert out["heatmap2"] == pytest.approx(want, rel=1e-5)


# Predictions entering the matching per loss configuration (section 4.2), E-SGD:
# under-prediction: image 1 of the fixture (z = 3, p: >, <, <, <, stops at t = 4 = z + 1);
# over-prediction: z = 2 and p ~ 1 up to max_iterations = 4.
#                 (under: t <= 3 with p >= omega / all t <= 3;  over: t <= 2 / all confident)
CONFIG_CASES = {"aa'": ((1, 3), (2, 2)), "ab'": ((1, 3), (4, 2)),
                "ba'": ((3, 3), (2, 2)), "bb'": ((3, 3), (4, 2))}  # fmt: skip


@pytest.mark.parametrize("config", list(CONFIG_CASES))
@pytest.mark.parametrize("path", ["literal", "batched"])
def test_loss_configuration_decides_which_predictions_are_matched(spy, path, config):
    feats, gts = _data()
    under = StepConfig.from_profile(PROF, T=2, max_iterations=6, sgd="exact", loss_config=config)
    over = StepConfig.from_profile(PROF, T=2, max_iterations=4, sgd="exact", loss_config=config)
    for model, cfg, gt in ((_model(), under, gts[1]), (_never_stops(), over, _gt(2, 4))):
        if path == "literal":
            literal_step(model, feats[1:2], gt, cfg, seed=1)
        else:
            batched_step(model, feats[1:2], [gt], cfg, seeds=[1])
    assert spy["matchings"] == list(CONFIG_CASES[config])


@pytest.mark.parametrize("loop", [0, 2, 3])
def test_loop_passes_per_person(loop):
    """Each iteration runs LSTM1 ``max(1, loop)`` times, pass k+1 reading pass k's heatmaps and
    the first pass the U[0, 0.1] initialisation (Algorithm 1, lines 4-10)."""
    from rnnpose.models.rmpp import init_heatmaps

    m = _never_stops(loop=loop)
    inputs, outputs = [], []
    m.lstm1.lstm.register_forward_pre_hook(lambda mod, a: inputs.append(a[0][:, -17:].clone()))
    m.lstm1.out.register_forward_hook(lambda mod, a, out: outputs.append(out.detach().clone()))
    feats = _data()[0][:1]
    cfg = StepConfig.from_profile(PROF, T=2, max_iterations=3)
    out = literal_step(m, feats, _gt(2, 3), cfg, seed=4, backward=False)
    passes = max(1, loop)
    assert out["iterations"] == 3 and len(inputs) == len(outputs) == 3 * passes
    for t in range(3):
        first = t * passes
        torch.testing.assert_close(inputs[first], init_heatmaps([4], t + 1, (17, 16, 16)))
        for k in range(1, passes):
            torch.testing.assert_close(inputs[first + k], outputs[first + k - 1])


def _scripted_stops(model: RMPP, feats: torch.Tensor, script: dict[int, list[float]]) -> dict:
    """Replace LSTM1's stop logits by ``script[image][t - 1]`` (values only: the gradient still
    flows through the real logit), the image told apart by its normalised features. Returns a
    counter of LSTM1 calls (``t``) that each path resets before an image or a batch."""
    real = model.lstm1.forward
    keys = model.norm(feats)[:, 0, 0, 0].detach()
    calls = {"t": 0}

    def forward(feat, states, init):
        hm, logit, states = real(feat, states, init)
        calls["t"] += 1
        images = [int(torch.argmin((keys - k).abs())) for k in feat[:, 0, 0, 0].detach()]
        value = torch.tensor([script[b][calls["t"] - 1] for b in images], dtype=logit.dtype)
        return hm, logit - logit.detach() + value.view_as(logit), states

    model.lstm1.forward = forward
    return calls


def test_batched_detaches_only_the_image_that_closes_a_chunk():
    """Image 0 closes a chunk at t=2 (p < omega while t < z + 1) while image 1 runs on to
    t=3 (T): the batched step must cut the gradient for image 0's rows of LSTM1's state only
    (and not wait for image 1); the gradients equal the literal step's, image by image."""
    m, feats = _model(), _data()[0][:2]
    gts = [_gt(4, 20), _gt(2, 21)]
    script = {0: [3.0, -3.0, 3.0, 3.0, 3.0, 3.0], 1: [3.0] * 6}
    cfg = StepConfig.from_profile(PROF, T=3, max_iterations=6)
    calls = _scripted_stops(m, feats, script)
    m.zero_grad()
    res = []
    for b in (0, 1):
        calls["t"] = 0
        res.append(literal_step(m, feats[b : b + 1], gts[b], cfg, seed=b))
    g_lit = _grads(m)
    assert [r["chunks"] for r in res] == [3, 2]  # image 0: t=2 (p < omega), 3, 6; image 1: 3, 6
    m.zero_grad()
    calls["t"] = 0
    out = batched_step(m, feats, gts, cfg, seeds=[0, 1])
    assert out["chunks"] == 5 and out["per_image"] == [(6, 5), (6, 6)]
    assert out["total"] == pytest.approx(sum(r["total"] for r in res), rel=1e-5)
    _assert_grads_close(g_lit, _grads(m))
