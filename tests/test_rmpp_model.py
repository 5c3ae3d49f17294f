"""RMPP decoders: FeatureNorm, LSTM1 with the feedback loop and stop head, LSTM2."""

import torch

from rnnpose.config import get_profile
from rnnpose.models.rmpp import RMPP, FeatureNorm, init_heatmaps


def test_feature_norm_uses_fixed_stats():
    norm = FeatureNorm(2)
    norm.set_stats(torch.tensor([1.0, -2.0]), torch.tensor([4.0, 0.25]))
    with torch.no_grad():
        norm.gamma.copy_(torch.tensor([2.0, 1.0]))
        norm.beta.copy_(torch.tensor([0.0, 1.0]))
    x = torch.tensor([3.0, -1.0]).view(1, 2, 1, 1).expand(3, 2, 2, 2)
    norm.train()
    y = norm(x)
    torch.testing.assert_close(y[:, 0], torch.full((3, 2, 2), 2.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(y[:, 1], torch.full((3, 2, 2), 3.0), atol=1e-4, rtol=0)
    assert norm.mean.tolist() == [1.0, -2.0]  # forward never updates the statistics
    assert "mean" in norm.state_dict() and "var" in norm.state_dict()


def test_init_noise_is_uniform_and_reproducible():
    a = init_heatmaps([5, 6], 3, (17, 8, 8))
    b = init_heatmaps([6], 3, (17, 8, 8))
    assert a.min() >= 0 and a.max() <= 0.1 and a.max() > 0.09
    torch.testing.assert_close(a[1:], b)  # same image + iteration -> same draw
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(init_heatmaps([6], 4, (17, 8, 8)), b)


def _model(**kw):
    torch.manual_seed(0)
    return RMPP(get_profile("tiny", **{"lstm1_hidden": 16, **kw}))


def test_shapes_depth_and_stop_head():
    prof = get_profile("tiny", lstm1_hidden=16)
    m = _model()
    assert m.lstm1.lstm.hidden_sizes == [16, 8, 4]
    assert m.lstm2.lstm.hidden_sizes == [16, 8]
    assert m.lstm1.lstm.cells[0].in_channels == prof.rmpp_in_channels + 17
    assert m.lstm1.stop.in_features == 16 + 8 + 4
    feat = torch.randn(2, prof.rmpp_in_channels, 16, 16)
    hm, logit, states = m.lstm1(feat, None, init_heatmaps([0, 1], 1, (17, 16, 16)))
    assert hm.shape == (2, 17, 16, 16) and logit.shape == (2,)
    pooled = torch.cat([h.amax(dim=(2, 3)) for h, _ in states], 1)
    torch.testing.assert_close(logit, m.lstm1.stop(pooled).squeeze(1))
    assert RMPP(get_profile("tiny", lstm2_depth=4)).lstm2.lstm.hidden_sizes == [16, 8, 4, 2]
    assert RMPP(prof, use_lstm2=False).lstm2 is None


def test_feedback_loop_feeds_own_output_back():
    m = _model(loop=2)
    feat = torch.randn(1, 8, 16, 16)
    init = init_heatmaps([0], 1, (17, 16, 16))
    hm, logit, st = m.lstm1(feat, None, init)
    h1, _, s1 = m.lstm1.step(feat, init, None)
    h2, l2, s2 = m.lstm1.step(feat, h1, s1)
    torch.testing.assert_close(hm, h2)
    torch.testing.assert_close(logit, l2)
    m0 = _model(loop=0)
    hm0, _, _ = m0.lstm1(feat, None, init)
    torch.testing.assert_close(hm0, m0.lstm1.step(feat, init, None)[0])  # loop 0: one pass
    m3 = _model(loop=3)
    assert m3.lstm1.passes == 3


def test_refiner_runs_over_persons_with_state():
    m = _model()
    feat = torch.randn(1, 8, 16, 16)
    seq = torch.rand(3, 17, 16, 16)
    out, st = m.lstm2.sequence(feat, seq)
    assert out.shape == (3, 17, 16, 16)
    first, s = m.lstm2(feat, seq[:1], None)
    second, _ = m.lstm2(feat, seq[1:2], s)
    torch.testing.assert_close(out[1:2], second)
    alone, _ = m.lstm2(feat, seq[1:2], None)
    assert not torch.allclose(alone, second)  # the hidden state carries over persons
