"""Orderings of LSTM2's input (table 3)."""

import pytest
import torch

from rnnpose.orderings import order


def _people():
    hm = torch.zeros(3, 2, 6, 6)
    hm[0, :, 4, 1] = 1.0  # row 4
    hm[1, :, 0, 5] = 1.0  # row 0
    hm[2, :, 4, 0] = 1.0  # row 4, left of person 0
    return hm


def test_named_orderings():
    hm, p = _people(), torch.tensor([0.5, 0.9, 0.7])
    assert order("learned", hm, p).tolist() == [0, 1, 2]
    assert order("inverse", hm, p).tolist() == [2, 1, 0]
    assert order("confidence", hm, p).tolist() == [1, 2, 0]
    assert order("canonical", hm, p).tolist() == [1, 2, 0]


def test_random_is_seeded_permutation():
    hm = torch.zeros(6, 1, 2, 2)
    a = order("random", hm, None, torch.Generator().manual_seed(3))
    b = order("random", hm, None, torch.Generator().manual_seed(3))
    assert a.tolist() == b.tolist() and sorted(a.tolist()) == list(range(6))
    with pytest.raises(ValueError):
        order("sideways", hm)
    assert order("inverse", torch.zeros(0, 1, 2, 2)).tolist() == []
