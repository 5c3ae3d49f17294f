"""Ground-truth encodings, with known values; eq. 1 pinned for every case of the paper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rnnpose.targets import (
    person_heatmaps,
    shared_heatmaps,
    stop_targets,
    tag_indices,
    to_heatmap,
    to_input,
)


def people(*joints):
    """People with a single labelled joint each: (joint, x, y, v)."""
    k = torch.zeros(len(joints), 17, 3)
    for z, (j, x, y, v) in enumerate(joints):
        k[z, j] = torch.tensor([x, y, v], dtype=torch.float32)
    return k


@pytest.mark.parametrize(
    "z,z_hat,expected",
    [
        (3, 1, [1, 1, 1, 0]),  # z_hat < z: iterate until z + 1
        (3, 3, [1, 1, 1, 0]),  # z_hat = z
        (2, 5, [1, 1, 0, 0, 0, 0]),  # z_hat > z: zeros for the extra iterations
        (0, 0, [0]),  # nobody: stop at once
        (0, 2, [0, 0, 0]),
    ],
)
def test_stop_targets_eq1(z, z_hat, expected):
    p = stop_targets(z, z_hat)
    assert p.tolist() == expected
    assert len(p) == max(z, z_hat) + 1


def test_stop_targets_rejects_negative_counts():
    with pytest.raises(ValueError):
        stop_targets(-1, 0)


def test_person_heatmaps_gaussian_values():
    k = people((0, 5.0, 7.0, 2), (3, 2.4, 9.6, 1))
    maps = person_heatmaps(k, 16, sigma=2.0)
    assert maps.shape == (2, 17, 16, 16)
    assert maps[0, 0, 7, 5] == 1.0 and maps[0, 0].argmax() == 7 * 16 + 5
    assert maps[0, 0, 7, 6] == pytest.approx(math.exp(-1 / 8))
    assert maps[0, 0, 9, 7] == pytest.approx(math.exp(-8 / 8))
    # centred on the nearest pixel (2.4, 9.6) -> (2, 10); v=1 joints count
    assert maps[1, 3, 10, 2] == 1.0
    # unlabelled joints give empty maps; one peak per map
    assert maps[0, 1:].abs().sum() == 0 and maps[1, :3].abs().sum() == 0
    assert (maps[:, :, :, :] == 1.0).sum() == 2


def test_joints_outside_the_map_or_unlabelled_do_not_count():
    k = people((0, 16.0, 3.0, 2), (0, -0.6, 3.0, 2), (0, 3.0, 3.0, 0), (0, 15.4, -0.4, 2))
    maps = person_heatmaps(k, 16, sigma=1.0)
    assert maps[:3].abs().sum() == 0
    assert maps[3, 0, 0, 15] == 1.0


def test_shared_heatmaps_max_over_people():
    k = people((2, 4.0, 4.0, 2), (2, 6.0, 4.0, 2), (5, 10.0, 1.0, 1))
    shared = shared_heatmaps(k, 12, sigma=1.0)
    assert shared.shape == (17, 12, 12)
    assert shared[2, 4, 4] == 1.0 and shared[2, 4, 6] == 1.0
    # between the two people: both Gaussians give exp(-1/2); the max, not the sum
    assert shared[2, 4, 5] == pytest.approx(math.exp(-0.5))
    assert shared[5, 1, 10] == 1.0
    assert torch.equal(shared, person_heatmaps(k, 12, 1.0).amax(0))
    assert shared_heatmaps(torch.zeros(0, 17, 3), 12, 1.0).shape == (17, 12, 12)
    assert shared_heatmaps(np.asarray(k), 12, 1.0).equal(shared)  # numpy input


def test_tag_indices():
    k = people((0, 3.0, 2.0, 2), (4, 7.6, 1.2, 1), (1, 1.0, 1.0, 2))
    idx = tag_indices(k, 10, max_people=2)
    assert idx.shape == (2, 17, 2) and idx.dtype == torch.long
    assert idx[0, 0].tolist() == [2 * 10 + 3, 1]
    assert idx[1, 4].tolist() == [1 * 10 + 8, 1]
    assert idx[:, :, 1].sum() == 2  # the third person is dropped (max_people=2)
    assert idx[0, 1].tolist() == [0, 0]


def test_to_heatmap_and_back():
    k = torch.tensor([[[8.0, 12.0, 2.0]] * 17])
    h = to_heatmap(k, 4)
    assert h[0, 0].tolist() == [2.0, 3.0, 2.0]
    assert torch.equal(to_input(h, 4), k) and torch.equal(k[0, 0], torch.tensor([8.0, 12, 2]))
    n = to_heatmap(k.numpy(), 4)
    assert isinstance(n, np.ndarray) and n[0, 0].tolist() == [2.0, 3.0, 2.0]
