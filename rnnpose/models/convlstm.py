"""Convolutional LSTM (Shi et al. 2015), the recurrent unit of both RMPP decoders (section 3.1).

A ConvLSTM replaces the LSTM's matrix products by convolutions, so input, hidden and cell
state are feature maps. All four gates come from one convolution over ``[input, hidden]``
(kernel 3, padding 1, section 3.3).
"""

from __future__ import annotations

import torch
from torch import nn

State = tuple[torch.Tensor, torch.Tensor]


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer: ``(x, (h, c)) -> (h', c')`` with gates i, f, o and candidate g."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.conv = nn.Conv2d(
            in_channels + hidden_channels, 4 * hidden_channels, kernel_size,
            padding=kernel_size // 2,
        )  # fmt: skip
        with torch.no_grad():  # forget-gate bias 1: remember by default at the start of training
            self.conv.bias[hidden_channels : 2 * hidden_channels].fill_(1.0)

    def zero_state(self, x: torch.Tensor) -> State:
        b, _, h, w = x.shape
        z = x.new_zeros(b, self.hidden_channels, h, w)
        return z, z

    def forward(self, x: torch.Tensor, state: State | None = None) -> State:
        h, c = self.zero_state(x) if state is None else state
        gates = self.conv(torch.cat([x, h], dim=1))
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ConvLSTM(nn.Module):
    """A stack of :class:`ConvLSTMCell`; layer k's input is layer k-1's hidden map ``h``."""

    def __init__(self, in_channels: int, hidden_sizes: list[int], kernel_size: int = 3):
        super().__init__()
        if not hidden_sizes:
            raise ValueError("ConvLSTM needs at least one layer")
        sizes = [in_channels, *hidden_sizes]
        self.hidden_sizes = list(hidden_sizes)
        self.cells = nn.ModuleList(
            ConvLSTMCell(sizes[k], sizes[k + 1], kernel_size) for k in range(len(hidden_sizes))
        )

    def forward(self, x: torch.Tensor, states: list[State] | None = None) -> list[State]:
        """One time step; returns the new ``(h, c)`` of every layer (last layer last)."""
        new: list[State] = []
        inp = x
        for k, cell in enumerate(self.cells):
            h, c = cell(inp, None if states is None else states[k])
            new.append((h, c))
            inp = h
        return new


def halving(first: int, depth: int) -> list[int]:
    """Hidden sizes ``[first, first/2, first/4, ...]`` (at least 1 channel each, section 3.3)."""
    return [max(1, first // 2**k) for k in range(depth)]


def detach_states(states: list[State] | None) -> list[State] | None:
    """Cut the gradient at the state but keep its values (A-SGD, section 3.2.1)."""
    if states is None:
        return None
    return [(h.detach(), c.detach()) for h, c in states]
