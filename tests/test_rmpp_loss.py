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


def _mismatch_case():
    """z = 2 GT persons (one-pixel joints at (0,0) and (3,3)) and three predictions:
    t=1 (p high) half of GT 0, t=2 (p LOW, still t <= z) 0.9 x GT 1, t=3 (p high, beyond z)
    0.8 x GT 0."""
    gt = torch.zeros(2, 17, 4, 4)
    gt[0, :, 0, 0] = 1.0
    gt[1, :, 3, 3] = 1.0
    preds = torch.stack([0.5 * gt[0], 0.9 * gt[1], 0.8 * gt[0]])
    logits = torch.tensor([3.0, -3.0, 3.0])  # p = 0.95, 0.047 (< omega), 0.95
    return preds, logits, torch.tensor([1, 2, 3]), gt


# Per configuration (table 4): the matched (prediction, GT) pairs and the summed squared error
# worked out by hand. Cost C[k,k'] = sum_j ||pred_k,j - gt_k',j||_2 over 17 one-pixel joints:
#   t=1 -> GT0: 17 * 0.5, t=1 -> GT1: 17 * sqrt(0.25 + 1) = 17 * 1.118
#   t=2 -> GT1: 17 * 0.1, t=2 -> GT0: 17 * sqrt(0.81 + 1)
#   t=3 -> GT0: 17 * 0.2, t=3 -> GT1: 17 * sqrt(0.64 + 1) = 17 * 1.281
# aa': only t=1 enters -> GT0, loss 17 * 0.25
# ba': t=1, t=2 enter (b: every t <= z) -> GT0, GT1, loss 17 * (0.25 + 0.01)
# ab': t=1, t=3 enter (b': confident t > z); both resemble GT0: t=1 -> GT1, t=3 -> GT0 costs
#      17 * (1.118 + 0.2) < 17 * (0.5 + 1.281); loss 17 * (0.25 + 1) + 17 * 0.04
# bb': all three enter, 3 predictions for 2 GT: t=2 -> GT1, t=3 -> GT0 (cost 17 * 0.3) beats
#      every pair with t=1; loss 17 * (0.01 + 0.04); t=1 is left unmatched
HAND = {
    "aa'": ([0], [0], 17 * 0.25),
    "ba'": ([0, 1], [0, 1], 17 * (0.25 + 0.01)),
    "ab'": ([0, 2], [1, 0], 17 * (1.25 + 0.04)),
    "bb'": ([1, 2], [1, 0], 17 * (0.01 + 0.04)),
}


@pytest.mark.parametrize("config", list(HAND))
def test_each_loss_configuration_against_a_hand_computed_answer(config):
    preds, logits, ts, gt = _mismatch_case()
    hm, st, pi, gi = chunk_losses(preds, logits, ts, gt, 2, omega=OMEGA, scale=1.0,
                                  config=config)  # fmt: skip
    want_pi, want_gi, want_loss = HAND[config]
    assert pi.tolist() == want_pi and gi.tolist() == want_gi
    assert hm.item() == pytest.approx(want_loss, rel=1e-5)
    # the stop term does not depend on the configuration: targets 1, 1, 0 (eq. 1)
    want_stop = math.log1p(math.exp(-3.0)) + 2 * math.log1p(math.exp(3.0))
    assert st.item() == pytest.approx(want_stop, rel=1e-5)


def test_each_loss_configuration_gives_its_own_loss():
    preds, logits, ts, gt = _mismatch_case()
    losses = {c: chunk_losses(preds, logits, ts, gt, 2, omega=OMEGA, scale=1.0, config=c)[0]
              for c in HAND}  # fmt: skip
    assert len({round(v.item(), 4) for v in losses.values()}) == 4


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_heatmap_loss_of_low_precision_maps_sums_in_float32(dtype):
    # 17 x 61 x 61 = 63257 unit errors: not representable in bf16 (8-bit mantissa) and, times 2,
    # past fp16's largest value (65504) -- a low-precision sum would round or overflow
    pred = torch.ones(1, 17, 61, 61, dtype=dtype, requires_grad=True)
    gt = torch.zeros(1, 17, 61, 61)
    loss = heatmap_loss(pred, gt, 1.0)
    assert loss.dtype == torch.float32 and loss.item() == 63257.0
    assert heatmap_loss(pred, gt, 2.0).item() == 2 * 63257.0  # no overflow to inf
    loss.backward()
    assert pred.grad.dtype == dtype and torch.all(pred.grad == 2.0)  # d/dx (x - 0)^2 at x=1
    half_gt = torch.full((1, 17, 61, 61), 0.5, dtype=dtype)  # GT in low precision too
    assert heatmap_loss(pred.detach().float(), half_gt, 1.0).item() == 63257.0 * 0.25


def test_heatmap_loss_with_nothing_matched_is_a_differentiable_zero():
    pred = torch.rand(3, 17, 4, 4, requires_grad=True)
    empty = pred[torch.zeros(0, dtype=torch.long)]
    loss = heatmap_loss(empty, torch.zeros(0, 17, 4, 4), 1.0)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()  # a chunk with no match still back-propagates (its stop term)
    assert torch.equal(pred.grad, torch.zeros_like(pred))
    # no GT left: chunk_losses matches nothing and only the stop term remains
    hm, st, pi, gi = chunk_losses(pred, torch.tensor([0.0, 0.0, 0.0]), torch.tensor([1, 2, 3]),
                                  torch.zeros(0, 17, 4, 4), 0, omega=OMEGA, scale=1.0)  # fmt: skip
    assert hm.item() == 0.0 and pi.tolist() == [] and gi.tolist() == []
    assert st.item() == pytest.approx(3 * math.log(2))
