"""The stacked-hourglass network of Associative Embedding (Newell et al. 2017; paper section 2.1).

The layout follows the public ``pose-ae-train`` implementation the paper builds on (section 3.3):
a stride-4 stem (7x7 conv with stride 2, conv, 2x2 max-pool, two convs), then ``nstack``
recursive hourglasses, each followed by two 3x3 convs and a 1x1 output conv with intermediate
supervision. Between stacks the next input is ``x + merge_preds(pred) + merge_features(feature)``.

Each stack predicts ``profile.ae_out_channels = 17 + 17*tag_dim + f`` maps: part heatmaps,
associative-embedding tags (joint-major: channel ``j*tag_dim + l``) and ``f`` feature maps that
no loss touches, exactly like the 68-channel output (17 + 17 + 34) of pose-ae-train. RMPP's
decoder reads those ``f`` features of every stack (section 3.3: c = 4 * f).

One difference in the recursion: pose-ae-train's inner hourglass levels always add 128
channels (its ``Hourglass`` default) whatever the outer level adds, while ours pass
``hg_increase`` down. The two are the same network only at ``hg_increase == 128`` (the ``paper``
profile); ``rnnpose import-ae`` (:mod:`rnnpose.train.ae_import`) refuses any other checkpoint,
and the ``cpu``/``tiny`` networks keep their own recursion.

Building blocks are AE's ``Conv``: conv (with bias) -> ReLU -> BatchNorm. ``pose-ae-train`` has the
BatchNorm switch (off by default there); it is on here by default (``bn=True``) because it makes
the small CPU profiles train in a few epochs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from rnnpose.config import Profile
from rnnpose.skeleton import NUM_JOINTS


class AEOutput(NamedTuple):
    """Per-stack outputs: heatmaps [B,S,17,M,M], tags [B,S,17*L,M,M], features [B,S,f,M,M]."""

    heatmaps: torch.Tensor
    tags: torch.Tensor
    features: torch.Tensor


class ConvBlock(nn.Module):
    """AE's ``Conv``: a same-padded convolution, optionally followed by ReLU then BatchNorm."""

    def __init__(
        self, cin: int, cout: int, k: int = 3, stride: int = 1, *, bn: bool = True,
        relu: bool = True,
    ):  # fmt: skip
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=(k - 1) // 2, bias=True)
        self.relu = nn.ReLU(inplace=True) if relu else None
        self.bn = nn.BatchNorm2d(cout) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.relu is not None:
            x = self.relu(x)
        if self.bn is not None:
            x = self.bn(x)
        return x


class Hourglass(nn.Module):
    """A recursive hourglass of ``depth`` down-samplings; each level adds ``increase`` channels."""

    def __init__(self, depth: int, channels: int, increase: int, *, bn: bool = True):
        super().__init__()
        inner = channels + increase
        self.up1 = ConvBlock(channels, channels, bn=bn)
        self.pool = nn.MaxPool2d(2, 2)
        self.low1 = ConvBlock(channels, inner, bn=bn)
        self.low2: nn.Module = (
            Hourglass(depth - 1, inner, increase, bn=bn)
            if depth > 1
            else ConvBlock(inner, inner, bn=bn)
        )
        self.low3 = ConvBlock(inner, channels, bn=False)  # pose-ae-train: no BN here
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up1(x) + self.up2(self.low3(self.low2(self.low1(self.pool(x)))))


class PoseNet(nn.Module):
    """Stacked hourglass with AE's heads: ``forward(images[B,3,S,S] in [0,1]) -> AEOutput``."""

    def __init__(self, profile: Profile, *, bn: bool = True):
        super().__init__()
        hg = profile.hg_channels
        if profile.input_size % (4 * 2**profile.hg_depth):
            raise ValueError(
                f"input_size {profile.input_size} must be divisible by 4 * 2**hg_depth"
            )
        if profile.input_size != 4 * profile.output_size:
            raise ValueError("the AE network has stride 4: input_size must be 4 * output_size")
        self.profile = profile
        self.nstack = profile.nstack
        self.tag_dim = profile.tag_dim
        self.feat_channels = profile.feat_channels
        out = profile.ae_out_channels
        c1, c2 = max(hg // 4, 8), max(hg // 2, 8)  # paper profile: 64, 128 as in pose-ae-train
        self.pre = nn.Sequential(
            ConvBlock(3, c1, 7, 2, bn=bn),
            ConvBlock(c1, c2, bn=bn),
            nn.MaxPool2d(2, 2),
            ConvBlock(c2, c2, bn=bn),
            ConvBlock(c2, hg, bn=bn),
        )
        self.features = nn.ModuleList(
            nn.Sequential(
                Hourglass(profile.hg_depth, hg, profile.hg_increase, bn=bn),
                ConvBlock(hg, hg, bn=False),
                ConvBlock(hg, hg, bn=False),
            )
            for _ in range(self.nstack)
        )
        self.outs = nn.ModuleList(
            ConvBlock(hg, out, 1, bn=False, relu=False) for _ in range(self.nstack)
        )
        self.merge_features = nn.ModuleList(
            ConvBlock(hg, hg, 1, bn=False, relu=False) for _ in range(self.nstack - 1)
        )
        self.merge_preds = nn.ModuleList(
            ConvBlock(out, hg, 1, bn=False, relu=False) for _ in range(self.nstack - 1)
        )

    def forward_raw(self, images: torch.Tensor) -> torch.Tensor:
        """The stacked raw predictions [B, nstack, ae_out_channels, M, M] (pose-ae-train's form)."""
        x = self.pre(images)
        preds = []
        for i in range(self.nstack):
            feature = self.features[i](x)
            preds.append(self.outs[i](feature))
            if i < self.nstack - 1:
                x = x + self.merge_preds[i](preds[-1]) + self.merge_features[i](feature)
        return torch.stack(preds, 1)

    def split(self, raw: torch.Tensor) -> AEOutput:
        """Cut the raw channels into heatmaps, tags and unsupervised features."""
        j, jt = NUM_JOINTS, NUM_JOINTS * (1 + self.tag_dim)
        return AEOutput(raw[:, :, :j], raw[:, :, j:jt], raw[:, :, jt:])

    def forward(self, images: torch.Tensor) -> AEOutput:
        return self.split(self.forward_raw(images))


#: What the decoder may read (``Profile.rmpp_input``): the paper's features, or beyond the
#: paper the features plus the last stack's tags, or plus its heatmaps and tags.
RMPP_INPUTS: tuple[str, ...] = ("features", "features+tags", "features+maps")


def rmpp_features(out: AEOutput, inputs: str = "features") -> torch.Tensor:
    """The f feature maps of all stacks concatenated: [B, nstack*f, M, M] (section 3.3);
    ``inputs`` (beyond the paper) appends the last stack's tags, or its heatmaps and tags."""
    if inputs not in RMPP_INPUTS:
        raise ValueError(f"unknown decoder input {inputs!r}; choose one of {RMPP_INPUTS}")
    b, s, f, h, w = out.features.shape
    parts = [out.features.reshape(b, s * f, h, w)]
    if inputs == "features+maps":
        parts.append(out.heatmaps[:, -1])
    if inputs != "features":
        parts.append(out.tags[:, -1])
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def tags_per_joint(tags: torch.Tensor, tag_dim: int) -> torch.Tensor:
    """Reshape tag maps [..., 17*L, M, M] to [..., 17, L, M, M] (joint-major channel layout)."""
    *lead, c, h, w = tags.shape
    return tags.reshape(*lead, c // tag_dim, tag_dim, h, w)


def freeze(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode (BatchNorm uses running statistics) with no gradients."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
