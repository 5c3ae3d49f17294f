"""Hungarian matching of person heatmaps (section 3.2)."""

import itertools

import torch

from rnnpose.matching import hungarian_match, match_cost


def test_cost_is_sum_of_per_joint_frobenius_norms():
    pred = torch.zeros(1, 2, 2, 2)
    gt = torch.zeros(1, 2, 2, 2)
    pred[0, 0, 0, 0] = 3.0
    pred[0, 0, 1, 1] = 4.0  # joint 0: distance 5
    gt[0, 1] = 1.0  # joint 1: distance sqrt(4) = 2
    assert match_cost(pred, gt)[0, 0].item() == 7.0


def test_recovers_a_permutation():
    torch.manual_seed(0)
    gt = torch.rand(4, 3, 5, 5)
    perm = torch.tensor([2, 0, 3, 1])
    pred = gt[perm] + 0.01 * torch.randn(4, 3, 5, 5)
    pi, gi = hungarian_match(pred, gt)
    assert pi.tolist() == [0, 1, 2, 3]
    assert gi.tolist() == perm.tolist()


def test_rectangular_is_optimal_and_empty_sides():
    torch.manual_seed(1)
    pred, gt = torch.rand(3, 2, 4, 4), torch.rand(5, 2, 4, 4)
    pi, gi = hungarian_match(pred, gt)
    cost = match_cost(pred, gt)
    best = min(
        sum(cost[i, c].item() for i, c in enumerate(cols))
        for cols in itertools.permutations(range(5), 3)
    )
    assert len(pi) == 3 and abs(cost[pi, gi].sum().item() - best) < 1e-9
    for n, m in ((0, 3), (2, 0), (0, 0)):
        a, b = hungarian_match(torch.rand(n, 2, 4, 4), torch.rand(m, 2, 4, 4))
        assert a.dtype == torch.long and len(a) == len(b) == 0
