"""The decoder's switches beyond the paper (emitted-heatmap memory, global context, coordinate
channels): off in the paper profile, each changes what LSTM1 reads in the way it says, and the
batched training step and batched decoding still equal their one-image versions."""

import pytest
import torch

from rnnpose.algorithm1 import StepConfig, batched_step, literal_step
from rnnpose.config import PROFILES, get_profile
from rnnpose.decode import decode
from rnnpose.models.rmpp import RMPP
from rnnpose.targets import person_heatmaps

AIDS = {"emitted": {"rmpp_emitted": True}, "context": {"rmpp_context": 4},
        "coords": {"rmpp_coords": True}}  # fmt: skip


def _model(**aids) -> RMPP:
    torch.manual_seed(0)
    m = RMPP(get_profile("tiny", lstm1_hidden=16, **aids))
    with torch.no_grad():
        m.lstm1.stop.weight.mul_(40.0)
        m.lstm1.stop.bias.fill_(5.0)
    return m


def _feats(b: int = 3) -> torch.Tensor:
    return torch.randn(b, 8, 16, 16, generator=torch.Generator().manual_seed(5))


def test_the_paper_profile_has_every_aid_off():
    p = PROFILES["paper"]
    assert (p.rmpp_emitted, p.rmpp_context, p.rmpp_coords) == (False, 0, False)
    m = RMPP(get_profile("tiny"))
    assert m.lstm1.lstm.cells[0].in_channels == 8 + 17  # features + fed-back heatmaps only


@pytest.mark.parametrize("name, extra", [("emitted", 17), ("context", 4), ("coords", 2)])
def test_each_aid_widens_lstm1_input(name, extra):
    m = RMPP(get_profile("tiny", **AIDS[name]))
    assert m.lstm1.lstm.cells[0].in_channels == 8 + 17 + extra
    assert m.lstm2.lstm.cells[0].in_channels == 8 + 17  # LSTM2 reads what the paper says


def test_emitted_memory_is_the_running_max_of_the_persons_so_far():
    m = _model(rmpp_emitted=True)
    feat = m.norm(_feats(1))
    init = torch.full((1, 17, 16, 16), 0.05)
    states, outs = None, []
    for _ in range(3):
        hm, _, states = m.lstm1(feat, states, init)
        outs.append(hm.clamp(0, 1))
        e = states[m.lstm1.depth][0]
        torch.testing.assert_close(e, torch.stack(outs).amax(0))
    # and it is read: a different memory changes the next person
    h_a = m.lstm1(feat, states, init)[0]
    states[m.lstm1.depth] = (torch.ones_like(e), torch.ones_like(e))
    assert (h_a - m.lstm1(feat, states, init)[0]).abs().max() > 1e-5


def test_context_is_a_map_of_the_pooled_hidden_state_broadcast_to_every_pixel():
    m = _model(rmpp_context=4)
    feat = m.norm(_feats(1))
    hm, _, states = m.lstm1.step(feat, torch.zeros(1, 17, 16, 16), None)
    pooled = torch.cat([h.amax(dim=(2, 3)) for h, _ in states[: m.lstm1.depth]], dim=1)
    g = states[m.lstm1.depth][0]
    assert g.shape == (1, 4, 1, 1)
    torch.testing.assert_close(g[:, :, 0, 0], m.lstm1.context(pooled))
    x = m.lstm1._extras(feat, states)[0]
    assert x.shape == (1, 4, 16, 16) and torch.equal(x[0, :, 3, 7], g[0, :, 0, 0])


def test_coordinate_channels():
    m = _model(rmpp_coords=True)
    xy = m.lstm1._extras(torch.zeros(2, 8, 16, 16), None)[0]
    assert xy.shape == (2, 2, 16, 16)
    assert xy[0, 0, 5, 0] == -1 and xy[0, 0, 5, 15] == 1  # x runs along the columns
    assert xy[0, 1, 0, 9] == -1 and xy[0, 1, 15, 9] == 1  # y along the rows


@pytest.mark.parametrize("name", list(AIDS) + ["all"])
def test_batched_step_and_decoding_equal_one_image_at_a_time(name):
    aids = {k: v for a in AIDS.values() for k, v in a.items()} if name == "all" else AIDS[name]
    m = _model(**aids)
    feats = _feats()
    kp = torch.rand(3, 3, 17, 3, generator=torch.Generator().manual_seed(1)) * 15
    kp[..., 2] = 2
    gts = [person_heatmaps(kp[i, :z], 16, 1.0) for i, z in enumerate((1, 3, 0))]
    cfg = StepConfig.from_profile(get_profile("tiny", **aids), T=2)
    m.zero_grad()
    lit = [literal_step(m, feats[b : b + 1], gts[b], cfg, seed=b) for b in range(3)]
    g_lit = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad()
    bat = batched_step(m, feats, gts, cfg, seeds=[0, 1, 2])
    assert bat["total"] == pytest.approx(sum(r["total"] for r in lit), rel=1e-5)
    for n, g in g_lit.items():
        p = dict(m.named_parameters())[n]
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-3, msg=n)
    with torch.no_grad():
        m.lstm1.stop.bias.fill_(0.0)  # images stop at different iterations
    outs = decode(m, feats, omega=0.27, max_iterations=6, seeds=[0, 1, 2])
    for b, out in enumerate(outs):
        one = decode(m, feats[b : b + 1], omega=0.27, max_iterations=6, seeds=[b])[0]
        torch.testing.assert_close(out["heatmaps"], one["heatmaps"], atol=1e-5, rtol=1e-4)
