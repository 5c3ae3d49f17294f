"""AE loss: masked heatmap MSE and the pull/push tag loss (pose-ae-train's forms and weights)."""

from __future__ import annotations

import math

import torch

from rnnpose.losses.ae import PULL_WEIGHT, PUSH_WEIGHT, ae_loss, heatmap_loss, tag_loss
from rnnpose.models.hourglass import AEOutput

M = 8


def _idx(people: list[list[tuple[int, int]]], max_people: int = 4) -> torch.Tensor:
    """tag_idx [1,P,17,2] from per-person lists of (joint, flat pixel)."""
    idx = torch.zeros(1, max_people, 17, 2, dtype=torch.long)
    for p, joints in enumerate(people):
        for j, flat in joints:
            idx[0, p, j] = torch.tensor([flat, 1])
    return idx


def _tags(values: dict[tuple[int, int], float]) -> torch.Tensor:
    """tags [1,1,17,1,M,M] with the given (joint, flat) -> value, zeros elsewhere."""
    t = torch.zeros(1, 1, 17, 1, M * M)
    for (j, flat), v in values.items():
        t[0, 0, j, 0, flat] = v
    return t.reshape(1, 1, 17, 1, M, M)


def test_pull_zero_for_constant_tags_and_push_vanishes_with_separation():
    people = [[(0, 3), (5, 10), (11, 20)], [(0, 40), (5, 41), (12, 50)]]
    idx = _idx(people)
    pushes = []
    for gap in (0.0, 0.5, 1.0, 2.0, 4.0):
        vals = {(j, f): 1.0 for j, f in people[0]} | {(j, f): 1.0 + gap for j, f in people[1]}
        push, pull = tag_loss(_tags(vals), idx)
        assert abs(pull.item()) < 1e-12
        # one pair of people: push = 0.5 * exp(-gap^2)
        assert math.isclose(push.item(), 0.5 * math.exp(-(gap**2)), rel_tol=1e-6)
        pushes.append(push.item())
    assert pushes == sorted(pushes, reverse=True) and pushes[-1] < 1e-7


def test_pull_value_and_push_average_over_pairs():
    # person 0 tags 0 and 2 (mean 1, pull 1); person 1 tags 5,5 (pull 0); person 2 tag 9 alone
    people = [[(0, 1), (1, 2)], [(0, 30), (3, 31)], [(7, 60)]]
    vals = {(0, 1): 0.0, (1, 2): 2.0, (0, 30): 5.0, (3, 31): 5.0, (7, 60): 9.0}
    push, pull = tag_loss(_tags(vals), _idx(people))
    assert math.isclose(pull.item(), (1.0 + 0.0 + 0.0) / 3, rel_tol=1e-6)
    means = [1.0, 5.0, 9.0]
    pairs = [(0, 1), (0, 2), (1, 2)]
    expect = 0.5 * sum(math.exp(-((means[a] - means[b]) ** 2)) for a, b in pairs) / 3
    assert math.isclose(push.item(), expect, rel_tol=1e-5)


def test_push_grows_as_two_people_approach():
    people = [[(0, 3), (2, 9)], [(0, 12), (2, 13)]]
    idx = _idx(people)
    values = []
    for gap in (3.0, 1.5, 0.7, 0.2, 0.0):
        vals = {(0, 3): 0.0, (2, 9): 0.0, (0, 12): gap, (2, 13): gap}
        values.append(tag_loss(_tags(vals), idx)[0].item())
    assert values == sorted(values) and math.isclose(values[-1], 0.5, rel_tol=1e-6)


def test_single_person_and_empty_image_give_zero_push():
    one = tag_loss(_tags({(0, 3): 1.0, (1, 4): 3.0}), _idx([[(0, 3), (1, 4)]]))
    assert one[0].item() == 0.0 and math.isclose(one[1].item(), 1.0, rel_tol=1e-6)
    none = tag_loss(_tags({}), _idx([]))
    assert none[0].item() == 0.0 and none[1].item() == 0.0


def test_heatmap_loss_zero_for_perfect_prediction_and_mask_respected():
    torch.manual_seed(0)
    gt = torch.rand(2, 17, M, M)
    mask = torch.ones(2, M, M)
    assert heatmap_loss(gt.clone(), gt, mask).abs().max().item() == 0.0
    pred = gt.clone()
    pred[0, :, :4] += 3.0  # wrong in the top half of image 0
    mask[0, :4] = 0.0  # ... which is masked out
    assert heatmap_loss(pred, gt, mask).abs().max().item() == 0.0
    mask[0, :4] = 1.0
    loss = heatmap_loss(pred, gt, mask)
    assert math.isclose(loss[0].item(), 9.0 * 0.5, rel_tol=1e-6) and loss[1].item() == 0.0


def _output(b=2, s=2, f=3, requires_grad=True):
    torch.manual_seed(1)
    hm = torch.rand(b, s, 17, M, M, requires_grad=requires_grad)
    tg = torch.randn(b, s, 17, M, M, requires_grad=requires_grad)
    ft = torch.randn(b, s, f, M, M)
    return AEOutput(hm, tg, ft)


def test_ae_loss_weights_and_gradients_flow():
    out = _output()
    gt = torch.rand(2, 17, M, M)
    masks = torch.ones(2, M, M)
    idx = torch.cat([_idx([[(0, 3), (4, 5)], [(0, 50), (2, 51)]]), _idx([[(1, 7), (9, 9)]])])
    loss = ae_loss(out, gt, masks, idx)
    expect = loss["heatmap"] + PUSH_WEIGHT * loss["push"] + PULL_WEIGHT * loss["pull"]
    assert torch.allclose(loss["total"], expect)
    assert PUSH_WEIGHT == 1e-3 and PULL_WEIGHT == 1e-3
    # the tag terms alone differentiate only the tags at labelled joints
    (loss["push"] + loss["pull"]).backward()
    g = out.tags.grad.reshape(2, 2, 17, M * M)
    assert g[0, :, 0, 3].abs().min() > 0 and g[1, :, 9, 9].abs().min() > 0
    touched = g.abs() > 0
    assert touched.sum().item() <= 2 * 6  # two stacks x six labelled joints
    out2 = _output()
    ae_loss(out2, gt, masks, idx)["total"].backward()
    assert out2.heatmaps.grad.abs().sum() > 0 and torch.isfinite(out2.tags.grad).all()


def test_stacks_are_averaged():
    out = _output(b=1, s=2)
    gt = out.heatmaps[:, 0].detach().clone()  # stack 0 perfect
    masks = torch.ones(1, M, M)
    idx = _idx([])
    full = ae_loss(out, gt, masks, idx)["heatmap"]
    second = heatmap_loss(out.heatmaps[:, 1], gt, masks).mean()
    assert torch.allclose(full, second / 2)


def test_tag_dim_two_divides_pull_by_dimension_and_sums_push_distance():
    people = [[(0, 3), (1, 4)], [(0, 40), (2, 41)]]
    vals = {(0, 3): 0.0, (1, 4): 1.0, (0, 40): 2.0, (2, 41): 2.0}
    one = _tags(vals)  # [1,1,17,1,M,M]
    two = torch.cat([one, torch.zeros_like(one)], dim=3)  # second dimension all zero
    push1, pull1 = tag_loss(one, _idx(people))
    push2, pull2 = tag_loss(two, _idx(people))
    assert math.isclose(pull2.item(), pull1.item() / 2, rel_tol=1e-6)  # AE divides by tag_dim
    assert math.isclose(push2.item(), push1.item(), rel_tol=1e-6)
    # channel layout through ae_loss: joint-major [17*L] -> [17, L]
    hm = torch.zeros(1, 1, 17, M, M)
    flat = two.reshape(1, 1, 34, M, M)
    loss = ae_loss(AEOutput(hm, flat, hm[:, :, :0]), hm[:, 0], torch.ones(1, M, M), _idx(people))
    assert math.isclose(loss["pull"].item(), pull2.item(), rel_tol=1e-6)
