"""pose-ae-train's network written from its architecture, for the import tests.

Nothing here uses rnnpose's modules: the key names and shapes are those of pose-ae-train's
``models/posenet.py`` and ``models/layers.py`` (PoseNet(nstack, inp_dim, oup_dim, bn,
increase); ``Conv`` = conv2d with bias -> ReLU -> BatchNorm, each optional; ``Hourglass(n, f,
bn, increase)`` whose inner ``Hourglass(n-1, f + increase, bn)`` keeps the default increase of
128; ``Merge`` = a ``Conv`` without ReLU or BatchNorm), and :func:`forward` computes that
network with ``torch.nn.functional`` calls on the raw tensors of a state dict.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _conv(shapes: dict, name: str, cin: int, cout: int, k: int, bn: bool) -> None:
    shapes[f"{name}.conv.weight"] = (cout, cin, k, k)
    shapes[f"{name}.conv.bias"] = (cout,)
    if bn:
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{p}"] = (cout,)


def _hourglass(shapes: dict, name: str, n: int, f: int, bn: bool, increase: int) -> None:
    nf = f + increase
    _conv(shapes, f"{name}.up1", f, f, 3, bn)
    _conv(shapes, f"{name}.low1", f, nf, 3, bn)
    if n > 1:
        _hourglass(shapes, f"{name}.low2", n - 1, nf, bn, 128)  # their default, not `increase`
    else:
        _conv(shapes, f"{name}.low2", nf, nf, 3, bn)
    _conv(shapes, f"{name}.low3", nf, f, 3, False)  # their Conv's default bn=False


def their_shapes(nstack: int = 4, inp_dim: int = 256, oup_dim: int = 68, bn: bool = False,
                 increase: int = 128) -> dict[str, tuple[int, ...]]:  # fmt: skip
    """``PoseNet(...).state_dict()``'s names and shapes in pose-ae-train (no wrapper prefix)."""
    s: dict[str, tuple[int, ...]] = {}
    _conv(s, "pre.0", 3, 64, 7, bn)
    _conv(s, "pre.1", 64, 128, 3, bn)
    _conv(s, "pre.3", 128, 128, 3, bn)  # pre.2 is the max-pool
    _conv(s, "pre.4", 128, inp_dim, 3, bn)
    for i in range(nstack):
        _hourglass(s, f"features.{i}.0", 4, inp_dim, bn, increase)
        _conv(s, f"features.{i}.1", inp_dim, inp_dim, 3, False)
        _conv(s, f"features.{i}.2", inp_dim, inp_dim, 3, False)
    for i in range(nstack):
        _conv(s, f"outs.{i}", inp_dim, oup_dim, 1, False)
    for i in range(nstack - 1):
        _conv(s, f"merge_features.{i}.conv", inp_dim, inp_dim, 1, False)
        _conv(s, f"merge_preds.{i}.conv", oup_dim, inp_dim, 1, False)
    return s


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0,
                 prefix: str = "") -> dict[str, torch.Tensor]:  # fmt: skip
    """Random weights: convs N(0, 1/fan_in) as their ``weights_init``, small biases, BatchNorm
    statistics away from the identity (so a wrong BatchNorm order or a dropped one shows)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        if name.endswith("conv.weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            t = torch.randn(shape, generator=g) * fan_in**-0.5
        elif name.endswith("running_var"):
            t = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith("bn.weight"):
            t = 0.5 + torch.rand(shape, generator=g)
        else:  # biases, running means
            t = 0.1 * torch.randn(shape, generator=g)
        out[prefix + name] = t
    return out


def _apply_conv(w: dict, name: str, x: torch.Tensor, relu: bool = True,
                stride: int = 1) -> torch.Tensor:  # fmt: skip
    weight = w[f"{name}.conv.weight"]
    x = F.conv2d(x, weight, w[f"{name}.conv.bias"], stride=stride,
                 padding=(weight.shape[-1] - 1) // 2)  # fmt: skip
    if relu:
        x = F.relu(x)
    if f"{name}.bn.weight" in w:
        x = F.batch_norm(x, w[f"{name}.bn.running_mean"], w[f"{name}.bn.running_var"],
                         w[f"{name}.bn.weight"], w[f"{name}.bn.bias"], training=False,
                         eps=1e-5)  # fmt: skip
    return x


def _apply_hourglass(w: dict, name: str, n: int, x: torch.Tensor) -> torch.Tensor:
    up1 = _apply_conv(w, f"{name}.up1", x)
    low = _apply_conv(w, f"{name}.low1", F.max_pool2d(x, 2, 2))
    low = (_apply_hourglass(w, f"{name}.low2", n - 1, low) if n > 1
           else _apply_conv(w, f"{name}.low2", low))  # fmt: skip
    low = _apply_conv(w, f"{name}.low3", low)
    return up1 + F.interpolate(low, scale_factor=2, mode="nearest")


def forward(state: dict[str, torch.Tensor], imgs_nhwc: torch.Tensor, prefix: str = "",
            nstack: int = 4) -> torch.Tensor:  # fmt: skip
    """pose-ae-train's ``PoseNet.forward``: NHWC images -> [B, nstack, oup_dim, H/4, W/4]."""
    w = {k[len(prefix):]: v for k, v in state.items()}
    x = imgs_nhwc.permute(0, 3, 1, 2)
    x = _apply_conv(w, "pre.0", x, stride=2)
    x = _apply_conv(w, "pre.1", x)
    x = F.max_pool2d(x, 2, 2)
    x = _apply_conv(w, "pre.3", x)
    x = _apply_conv(w, "pre.4", x)
    preds = []
    for i in range(nstack):
        feature = _apply_hourglass(w, f"features.{i}.0", 4, x)
        feature = _apply_conv(w, f"features.{i}.1", feature)
        feature = _apply_conv(w, f"features.{i}.2", feature)
        preds.append(_apply_conv(w, f"outs.{i}", feature, relu=False))
        if i != nstack - 1:
            x = (x + _apply_conv(w, f"merge_preds.{i}.conv", preds[-1], relu=False)
                 + _apply_conv(w, f"merge_features.{i}.conv", feature, relu=False))  # fmt: skip
    return torch.stack(preds, 1)
