"""Stacked-hourglass AE network: output layout per profile, merges, freezing."""

from __future__ import annotations

import pytest
import torch

from rnnpose.config import get_profile
from rnnpose.models.hourglass import PoseNet, freeze, rmpp_features, tags_per_joint


@pytest.mark.parametrize("name", ["tiny", "cpu"])
def test_forward_shapes(name):
    p = get_profile(name)
    torch.manual_seed(0)
    model = PoseNet(p).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, p.input_size, p.input_size))
    m = p.output_size
    assert out.heatmaps.shape == (2, p.nstack, 17, m, m)
    assert out.tags.shape == (2, p.nstack, 17 * p.tag_dim, m, m)
    assert out.features.shape == (2, p.nstack, p.feat_channels, m, m)
    feats = rmpp_features(out)
    assert feats.shape == (2, p.rmpp_in_channels, m, m)
    # stack s's features are channels [s*f, (s+1)*f)
    f = p.feat_channels
    assert torch.equal(feats[:, f * (p.nstack - 1) :], out.features[:, -1])


def test_paper_profile_channels_without_forward():
    p = get_profile("paper")
    model = PoseNet(p)
    assert p.ae_out_channels == 68  # 17 heatmaps + 17 tags + 34 features (section 3.3)
    assert all(o.conv.out_channels == 68 for o in model.outs)
    assert len(model.outs) == 4 and len(model.merge_preds) == 3 == len(model.merge_features)
    # stem: 7x7 stride-2 conv to 64, then 128, then hg_channels (pose-ae-train)
    assert model.pre[0].conv.kernel_size == (7, 7) and model.pre[0].conv.stride == (2, 2)
    assert [model.pre[i].conv.out_channels for i in (0, 1, 3, 4)] == [64, 128, 128, 256]
    # hourglass levels widen by hg_increase: 256 -> 384 -> 512 -> 640 -> 768
    hg = model.features[0][0]
    widths = []
    while hasattr(hg, "low1"):
        widths.append(hg.low1.conv.out_channels)
        hg = hg.low2
    assert widths == [384, 512, 640, 768]


def test_tag_dim_layout_and_split():
    p = get_profile("tiny", tag_dim=2)
    torch.manual_seed(0)
    model = PoseNet(p).eval()
    with torch.no_grad():
        raw = model.forward_raw(torch.rand(1, 3, 64, 64))
        out = model.split(raw)
    assert raw.shape[2] == 17 + 34 + p.feat_channels
    assert torch.equal(out.heatmaps, raw[:, :, :17])
    per_joint = tags_per_joint(out.tags, 2)
    assert per_joint.shape == (1, 1, 17, 2, 16, 16)
    assert torch.equal(per_joint[:, :, 3, 1], raw[:, :, 17 + 3 * 2 + 1])


def test_merge_connections_feed_next_stack():
    p = get_profile("cpu")
    torch.manual_seed(0)
    model = PoseNet(p).eval()
    x = torch.rand(1, 3, p.input_size, p.input_size)
    with torch.no_grad():
        before = model(x)
        model.merge_preds[0].conv.weight.add_(0.5)
        after = model(x)
    assert torch.equal(before.heatmaps[:, 0], after.heatmaps[:, 0])
    assert not torch.allclose(before.heatmaps[:, 1], after.heatmaps[:, 1])


def test_freeze():
    model = freeze(PoseNet(get_profile("tiny")).train())
    assert not model.training and not any(q.requires_grad for q in model.parameters())
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    stats = bn.running_mean.clone()
    with torch.no_grad():
        model(torch.rand(2, 3, 64, 64))
    assert torch.equal(bn.running_mean, stats)


def test_bad_geometry_is_refused():
    with pytest.raises(ValueError):
        PoseNet(get_profile("tiny", input_size=60, output_size=15))
