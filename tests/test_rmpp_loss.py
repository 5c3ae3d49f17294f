"""RMPP's loss terms (eq. 1-4) and the table-4 configurations."""

import math

import pytest
import torch

from rnnpose.losses.rmpp import (
    chunk_losses,
    heatmap_loss,
    heatmap_scale,
    loss_candidates,
    stop_loss,
    stop_targets_at,
)
from rnnpose.targets import person_heatmaps

OMEGA = 0.25


def test_scale_makes_missing_person_cost_one():
    kp = torch.zeros(1, 17, 3)
    kp[0, :, 0], kp[0, :, 1], kp[0, :, 2] = 20.0, 20.0, 2
    gt = person_heatmaps(kp, 40, 2.0)
    loss = heatmap_loss(torch.zeros_like(gt), gt, heatmap_scale(2.0))
    assert loss.item() == pytest.approx(1.0, rel=1e-3)
    assert heatmap_loss(gt, gt, 1.0).item() == 0.0


def test_stop_loss_and_targets():
    assert stop_targets_at(torch.tensor([1, 2, 3, 4]), 2).tolist() == [1, 1, 0, 0]
    assert stop_targets_at(torch.tensor([5]), 0).tolist() == [0]
    logits = torch.tensor([0.0, 2.0])
    want = math.log(2) + math.log(1 + math.exp(2.0))  # targets 1 then 0
    assert stop_loss(logits, torch.tensor([1.0, 0.0])).item() == pytest.approx(want)


def test_candidates_per_config():
    # z = 2; predictions t=1..4 with p = 0.9, 0.1 (under), 0.8 (over), 0.1 (over, stop)
    ts, p = torch.tensor([1, 2, 3, 4]), torch.tensor([0.9, 0.1, 0.8, 0.1])
    got = {c: loss_candidates(ts, p, 2, OMEGA, c).tolist() for c in ("aa'", "ab'", "ba'", "bb'")}
    assert got["aa'"] == [True, False, False, False]
    assert got["ab'"] == [True, False, True, False]
    assert got["ba'"] == [True, True, False, False]
    assert got["bb'"] == [True, True, True, False]
    with pytest.raises(ValueError):
        loss_candidates(ts, p, 2, OMEGA, "cc'")


def test_chunk_losses_known_answer():
    gt = torch.zeros(2, 17, 4, 4)
    gt[0, :, 0, 0] = 1.0
    gt[1, :, 3, 3] = 1.0
    preds = torch.stack([gt[1] * 0.5, gt[0] * 0.9, gt[0]])  # t=3 duplicates person 0 better
    logits = torch.tensor([3.0, 3.0, 3.0])
    ts = torch.tensor([1, 2, 3])
    # (a, a'): t=3 is beyond z=2 and ignored; t=1 -> gt 1 (error 0.25 * 17), t=2 -> gt 0
    hm, st, pi, gi = chunk_losses(preds, logits, ts, gt, 2, omega=OMEGA, scale=1.0)
    assert pi.tolist() == [0, 1] and gi.tolist() == [1, 0]
    assert hm.item() == pytest.approx(17 * 0.25 + 17 * 0.01)
    want_stop = 2 * math.log1p(math.exp(-3.0)) + math.log1p(math.exp(3.0))
    assert st.item() == pytest.approx(want_stop, rel=1e-5)
    # (a, b'): the exact duplicate at t=3 steals gt 0, t=1 keeps gt 1, t=2 is unmatched
    hm, st, pi, gi = chunk_losses(
        preds, logits, ts, gt, 2, omega=OMEGA, scale=1.0, config="ab'"
    )
    assert pi.tolist() == [0, 2] and gi.tolist() == [1, 0]
    assert hm.item() == pytest.approx(17 * 0.25)
