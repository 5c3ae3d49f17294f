"""ConvLSTM cell and stack (section 3.1, SHI et al. 2015)."""

import torch

from rnnpose.models.convlstm import ConvLSTM, ConvLSTMCell, detach_states, halving


def test_cell_matches_hand_computed_gates():
    torch.manual_seed(0)
    cell = ConvLSTMCell(2, 3)
    x = torch.randn(1, 2, 5, 5)
    h0, c0 = torch.randn(1, 3, 5, 5), torch.randn(1, 3, 5, 5)
    h, c = cell(x, (h0, c0))
    gates = torch.nn.functional.conv2d(
        torch.cat([x, h0], 1), cell.conv.weight, cell.conv.bias, padding=1
    )
    i, f, o, g = gates.chunk(4, 1)
    c_ref = torch.sigmoid(f) * c0 + torch.sigmoid(i) * torch.tanh(g)
    torch.testing.assert_close(c, c_ref)
    torch.testing.assert_close(h, torch.sigmoid(o) * torch.tanh(c_ref))
    assert cell.conv.kernel_size == (3, 3) and cell.conv.in_channels == 5
    assert cell.conv.out_channels == 12  # all four gates from one convolution


def test_zero_state_equals_none():
    torch.manual_seed(1)
    cell = ConvLSTMCell(2, 3)
    x = torch.randn(2, 2, 4, 4)
    z = torch.zeros(2, 3, 4, 4)
    a = cell(x)
    b = cell(x, (z, z))
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


def test_stack_feeds_hidden_to_next_layer():
    torch.manual_seed(2)
    net = ConvLSTM(4, [8, 4, 2])
    x = torch.randn(1, 4, 6, 6)
    states = net(x)
    assert [h.shape[1] for h, _ in states] == [8, 4, 2]
    h1, _ = net.cells[0](x)
    h2, _ = net.cells[1](h1)
    torch.testing.assert_close(states[1][0], h2)
    again = net(x, states)  # the state carries: a second step differs from the first
    assert not torch.allclose(again[-1][0], states[-1][0])
    det = detach_states(again)
    assert all(not h.requires_grad for h, _ in det)


def test_halving():
    assert halving(128, 3) == [128, 64, 32]
    assert halving(2, 3) == [2, 1, 1]
