"""The RMPP decoders over frozen AE features (sections 3.1, 3.1.2 and 3.3 of the paper).

* :class:`FeatureNorm` -- the affine input normalisation with FIXED running statistics of the
  whole training set (section 3.3: "the running statistics of the entire data are used").
* :class:`Decoder` (LSTM1) -- per iteration ``t`` it emits the J heatmaps of ONE person and the
  stop logit. Its input is ``[features, fed-back heatmaps]`` (plus the hidden state inside the
  ConvLSTM). The first pass of a person gets heatmaps ~ U[0, 0.1]; the output is fed back and the
  step repeated, ``loop`` passes in all (Algorithm 1, lines 4-9); the hidden state carries across
  passes and persons. The stop head is a linear layer over the per-layer spatial max of ``h``.
* :class:`Refiner` (LSTM2) -- input ``[features, H_t]`` of one person at a time, in a given
  order; outputs refined heatmaps; its hidden state runs over the sequence of persons.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rnnpose.config import Profile
from rnnpose.models.convlstm import ConvLSTM, State, halving

#: Upper bound of the uniform feedback initialisation (section 3.3: U[0, 0.1]).
INIT_HIGH: float = 0.1


def mix_seed(*keys: int) -> int:
    """A deterministic 63-bit seed from integers (image seed, iteration, ...)."""
    s = 0x9E3779B97F4A7C15
    for k in keys:
        s = (s * 6364136223846793005 + int(k) + 1442695040888963407) % 2**64
    return s % 2**63


def init_heatmaps(
    seeds: Sequence[int], t: int, shape: tuple[int, int, int], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The U[0, 0.1] heatmaps of iteration ``t`` for each image seed: ``[len(seeds), J, H, W]``.

    Drawn on the CPU from a generator seeded by ``(seed, t)``, so an image gets the same noise
    whether it is decoded alone (the literal loop) or in a batch, on any device.
    """
    out = torch.empty(len(seeds), *shape)
    for i, s in enumerate(seeds):
        g = torch.Generator().manual_seed(mix_seed(s, t))
        out[i] = torch.rand(shape, generator=g) * INIT_HIGH
    return out.to(device)


def heatmap_head(channels: int, joints: int) -> nn.Conv2d:
    """The 1x1 output convolution; initialised near zero (weights N(0, 0.001), bias 0, as in
    common heatmap heads) so the first predictions are flat instead of noise."""
    conv = nn.Conv2d(channels, joints, 1)
    nn.init.normal_(conv.weight, std=1e-3)
    nn.init.zeros_(conv.bias)
    return conv


class FeatureNorm(nn.Module):
    """``y = gamma * (x - mean) / sqrt(var + eps) + beta`` with frozen dataset statistics.

    ``mean``/``var`` are buffers set once by :meth:`set_stats` (computed over the whole training
    set by :mod:`rnnpose.features`); ``forward`` never updates them, in train or eval mode.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("var", torch.ones(channels))

    def set_stats(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
            self.var.copy_(torch.as_tensor(var, dtype=self.var.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        scale = self.gamma / torch.sqrt(self.var + self.eps)
        return (x.to(scale.dtype) - self.mean.view(shape)) * scale.view(shape) + self.beta.view(
            shape
        )


class Decoder(nn.Module):
    """LSTM1: features + fed-back heatmaps -> one person's J heatmaps and a stop logit.

    Beyond the paper (switches, all off in the ``paper`` profile; the book labels them):

    * ``emitted`` -- the input also holds the running maximum of the heatmaps of the persons
      emitted so far (J channels): an explicit memory of what was already decoded, as the
      "canvas" of recurrent instance segmentation (Ren & Zemel 2017);
    * ``context`` -- ``context`` channels of global context: a linear map of the per-layer
      spatial maxima of the hidden states (the stop head's input), broadcast over the map and
      fed to the next pass, so that every pixel knows which person the decoder is drawing
      (3x3 ConvLSTM layers alone see only a few pixels per pass);
    * ``coords`` -- two coordinate channels (x, y in [-1, 1], CoordConv).

    The recurrent state is the list of the ConvLSTM layers' ``(h, c)``, followed, with the
    switches, by ``(E, E)`` (emitted heatmaps, [B,J,H,W]) and ``(g, g)`` (context, [B,G,1,1]):
    pairs, so that the training and decoding loops detach, mask and re-index them with the rest.
    """

    def __init__(self, in_channels: int, joints: int, hidden: int, depth: int, loop: int,
                 *, emitted: bool = False, context: int = 0, coords: bool = False):  # fmt: skip
        super().__init__()
        self.joints = joints
        self.loop = loop
        self.depth = depth
        self.emitted = bool(emitted)
        self.coords = bool(coords)
        extra = joints * self.emitted + context + 2 * self.coords
        self.lstm = ConvLSTM(in_channels + joints + extra, halving(hidden, depth))
        self.out = heatmap_head(self.lstm.hidden_sizes[-1], joints)
        self.stop = nn.Linear(sum(self.lstm.hidden_sizes), 1)
        self.context = nn.Linear(sum(self.lstm.hidden_sizes), context) if context else None

    @property
    def passes(self) -> int:
        """Passes per person: ``loop`` (0 = no loop = one pass with the uniform input)."""
        return max(1, self.loop)

    def _extras(self, feat: torch.Tensor, states: list[State] | None) -> list[torch.Tensor]:
        """The switched-on extra inputs, read from the state (zeros before the first step)."""
        b, _, h, w = feat.shape
        out = []
        k = self.depth
        if self.emitted:
            out.append(feat.new_zeros(b, self.joints, h, w) if states is None else states[k][0])
            k += 1
        if self.context is not None:
            g = (feat.new_zeros(b, self.context.out_features, 1, 1) if states is None
                 else states[k][0])  # fmt: skip
            out.append(g.to(feat.dtype).expand(-1, -1, h, w))
        if self.coords:
            ys = torch.linspace(-1.0, 1.0, h, device=feat.device, dtype=feat.dtype)
            xs = torch.linspace(-1.0, 1.0, w, device=feat.device, dtype=feat.dtype)
            grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))  # [2,H,W]: x then y
            out.append(grid.expand(b, -1, -1, -1))
        return out

    def step(
        self, feat: torch.Tensor, heatmaps: torch.Tensor, states: list[State] | None
    ) -> tuple[torch.Tensor, torch.Tensor, list[State]]:
        """One ConvLSTM pass: ``(heatmaps [B,J,H,W], stop logit [B], states)``."""
        x = torch.cat([feat, heatmaps.to(feat.dtype), *self._extras(feat, states)], dim=1)
        new = self.lstm(x, None if states is None else states[: self.depth])
        out = self.out(new[-1][0])
        pooled = torch.cat([h.amax(dim=(2, 3)) for h, _ in new], dim=1)
        state = list(new)
        if self.emitted:
            e = feat.new_zeros(out.shape) if states is None else states[self.depth][0]
            state.append((e, e))
        if self.context is not None:
            g = self.context(pooled)[:, :, None, None]
            state.append((g, g))
        return out, self.stop(pooled).squeeze(1), state

    def forward(
        self, feat: torch.Tensor, states: list[State] | None, init: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[State]]:
        """One person (iteration ``t``): ``loop`` passes, each fed the previous output.

        Returns the last pass's heatmaps, its stop logit (p_t = sigmoid(logit)) and the state
        (with ``emitted``, the person's heatmaps are added to the emitted maximum).
        """
        hm = init
        logit = None
        for _ in range(self.passes):
            hm, logit, states = self.step(feat, hm, states)
        if self.emitted:
            e = torch.maximum(states[self.depth][0], hm.clamp(0.0, 1.0).to(feat.dtype))
            states[self.depth] = (e, e)
        return hm, logit, states


class Refiner(nn.Module):
    """LSTM2: features + one person's heatmaps H_t -> refined heatmaps of that person."""

    def __init__(self, in_channels: int, joints: int, hidden: int, depth: int):
        super().__init__()
        self.lstm = ConvLSTM(in_channels + joints, halving(hidden, depth))
        self.out = heatmap_head(self.lstm.hidden_sizes[-1], joints)

    def forward(
        self, feat: torch.Tensor, heatmaps: torch.Tensor, states: list[State] | None
    ) -> tuple[torch.Tensor, list[State]]:
        states = self.lstm(torch.cat([feat, heatmaps.to(feat.dtype)], dim=1), states)
        return self.out(states[-1][0]), states

    def sequence(
        self, feat: torch.Tensor, heatmaps: torch.Tensor, states: list[State] | None = None
    ) -> tuple[torch.Tensor, list[State] | None]:
        """Run over persons ``heatmaps [Z,J,H,W]`` of one image (``feat [1,C,H,W]``)."""
        outs = []
        for k in range(heatmaps.shape[0]):
            o, states = self(feat, heatmaps[k : k + 1], states)
            outs.append(o[0])
        if not outs:
            return heatmaps.new_zeros(heatmaps.shape), states
        return torch.stack(outs), states

    def ragged(
        self,
        feat: torch.Tensor,
        seqs: list[torch.Tensor],
        states: list[list[State] | None] | None = None,
    ) -> tuple[list[torch.Tensor], list[list[State]]]:
        """:meth:`sequence` for several images at once (ragged lengths, one batched conv/step).

        ``feat [n,C,H,W]``, ``seqs[i] [r_i,J,H,W]``, ``states[i]`` image i's carried state
        (None = zeros). An image whose sequence has ended keeps its state (masked update).
        Returns the outputs per image and the new states (batch 1 each).
        """
        n = len(seqs)
        states = states if states is not None else [None] * n
        lengths = [s.shape[0] for s in seqs]
        steps = max(lengths, default=0)
        cur: list[State] = []
        for k, cell in enumerate(self.lstm.cells):
            zero = feat.new_zeros(1, cell.hidden_channels, *feat.shape[2:])
            cur.append((
                torch.cat([zero if s is None else s[k][0] for s in states]),
                torch.cat([zero if s is None else s[k][1] for s in states]),
            ))  # fmt: skip
        if steps == 0:
            return [s[:0] for s in seqs], [[(h[i : i + 1], c[i : i + 1]) for h, c in cur]
                                           for i in range(n)]  # fmt: skip
        padded = feat.new_zeros(steps, n, *seqs[0].shape[1:])
        for i, s in enumerate(seqs):
            padded[: lengths[i], i] = s  # differentiable copy into the padded buffer
        lens = torch.tensor(lengths, device=feat.device)
        outs: list[torch.Tensor] = []
        for k in range(steps):
            out, new = self(feat, padded[k], cur)
            valid = (lens > k).view(n, 1, 1, 1)
            cur = [
                (torch.where(valid, hn, ho), torch.where(valid, cn, co))
                for (hn, cn), (ho, co) in zip(new, cur, strict=True)
            ]
            outs.append(out)
        stacked = torch.stack(outs)  # [steps, n, J, H, W]
        per_image = [stacked[: lengths[i], i] for i in range(n)]
        new_states = [[(h[i : i + 1], c[i : i + 1]) for h, c in cur] for i in range(n)]
        return per_image, new_states


class RMPP(nn.Module):
    """FeatureNorm + LSTM1 (+ LSTM2 when ``use_lstm2``), sized by a :class:`Profile`."""

    def __init__(self, profile: Profile, use_lstm2: bool = True):
        super().__init__()
        c, j = profile.rmpp_in_channels, profile.num_joints
        self.joints = j
        self.norm = FeatureNorm(c)
        self.lstm1 = Decoder(c, j, profile.lstm1_hidden, profile.lstm1_depth, profile.loop,
                             emitted=profile.rmpp_emitted, context=profile.rmpp_context,
                             coords=profile.rmpp_coords)  # fmt: skip
        self.lstm2 = (
            Refiner(c, j, profile.lstm2_hidden, profile.lstm2_depth) if use_lstm2 else None
        )

    @property
    def use_lstm2(self) -> bool:
        return self.lstm2 is not None
