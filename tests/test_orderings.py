"""Orderings of LSTM2's input (table 3): the exact permutation of each, on fixtures where they
all differ."""

import pytest
import torch

from rnnpose.orderings import ORDERINGS, order


def _people():
    hm = torch.zeros(3, 2, 6, 6)
    hm[0, :, 4, 1] = 1.0  # row 4
    hm[1, :, 0, 5] = 1.0  # row 0
    hm[2, :, 4, 0] = 1.0  # row 4, left of person 0
    return hm


def _four_people():
    """Four persons (2 joints, 6x6 maps) whose five orderings are five different permutations.

    Location (argmax of the SUMMED joint maps, raster order y * 6 + x): person 0 at (y 4, x 1)
    = 25, person 1 at (0, 5) = 5, person 2 at (4, 0) = 24, person 3 at (2, 2) = 14 -- person 3's
    joint 0 alone peaks higher at (0, 0) = 0, but its summed map peaks at (2, 2) (0.5 + 1.0).
    """
    hm = torch.zeros(4, 2, 6, 6)
    hm[0, :, 4, 1] = 1.0
    hm[1, :, 0, 5] = 1.0
    hm[2, :, 4, 0] = 1.0
    hm[3, 0, 0, 0] = 0.9
    hm[3, 0, 2, 2] = 0.5
    hm[3, 1, 2, 2] = 1.0
    return hm


#: p_t of the four persons (confidence sorts them 0, 2, 3, 1)
PROBS = torch.tensor([0.9, 0.5, 0.7, 0.6])
EXPECTED = {
    "learned": [0, 1, 2, 3],  # LSTM1's own order
    "inverse": [3, 2, 1, 0],
    "confidence": [0, 2, 3, 1],  # p_t descending
    "canonical": [1, 3, 2, 0],  # locations 5, 14, 24, 25 ascending
    "random": [3, 1, 0, 2],  # torch.randperm(4) from a generator seeded with 5
}


def test_named_orderings():
    hm, p = _people(), torch.tensor([0.5, 0.9, 0.7])
    assert order("learned", hm, p).tolist() == [0, 1, 2]
    assert order("inverse", hm, p).tolist() == [2, 1, 0]
    assert order("confidence", hm, p).tolist() == [1, 2, 0]
    assert order("canonical", hm, p).tolist() == [1, 2, 0]


@pytest.mark.parametrize("name", ORDERINGS)
def test_each_ordering_gives_its_own_permutation(name):
    hm = _four_people()
    perm = order(name, hm, PROBS, torch.Generator().manual_seed(5))
    assert perm.dtype == torch.long and perm.tolist() == EXPECTED[name]
    assert len({tuple(v) for v in EXPECTED.values()}) == len(ORDERINGS)  # all five differ
    # the permutation is applied to the persons, not to the joints or pixels
    assert torch.equal(hm[perm][0], hm[EXPECTED[name][0]])


def test_ties_keep_lstm1_order():
    hm = torch.zeros(4, 1, 3, 3)
    hm[0, 0, 1, 1] = hm[1, 0, 0, 2] = hm[2, 0, 1, 1] = hm[3, 0, 0, 2] = 1.0
    assert order("canonical", hm).tolist() == [1, 3, 0, 2]  # 2 == 2 and 4 == 4 keep order
    p = torch.tensor([0.4, 0.8, 0.4, 0.8])
    assert order("confidence", hm, p).tolist() == [1, 3, 0, 2]
    with pytest.raises(ValueError, match="needs the stop probabilities"):
        order("confidence", hm)


def test_random_is_a_seeded_uniform_permutation():
    hm = torch.zeros(6, 1, 2, 2)
    a = order("random", hm, None, torch.Generator().manual_seed(3))
    b = order("random", hm, None, torch.Generator().manual_seed(3))
    assert a.tolist() == b.tolist() and sorted(a.tolist()) == list(range(6))
    # over 240 seeds every one of the 4! = 24 permutations of four persons comes up, and none
    # dominates (a uniform draw gives each 10 times on average)
    four = torch.zeros(4, 1, 2, 2)
    draws = [tuple(order("random", four, None, torch.Generator().manual_seed(s)).tolist())
             for s in range(240)]  # fmt: skip
    counts = {d: draws.count(d) for d in set(draws)}
    assert len(counts) == 24 and max(counts.values()) <= 25
    with pytest.raises(ValueError):
        order("sideways", hm)
    assert order("inverse", torch.zeros(0, 1, 2, 2)).tolist() == []
