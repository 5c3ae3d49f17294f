"""Associative Embedding's training loss (Newell et al. 2017; paper section 2.1).

Per stack (intermediate supervision), as in pose-ae-train (``task/loss.py`` and
``extensions/AE``):

* heatmap: mean over joints and pixels of ``(pred - gt)^2 * mask`` (``HeatmapLoss``), with the
  shared ground-truth heatmaps and the ignore mask (0 over crowds / unannotated people);
* pull: for each person, the mean over its labelled joints of the squared distance between the
  joint's tag and the person's mean tag (divided by the tag dimension), averaged over people;
* push: ``exp(-||m_p - m_q||^2)`` over the pairs of different people's mean tags, averaged over
  pairs and halved (0 with fewer than two people).

Each term is averaged over the batch and the stacks, and the total uses pose-ae-train's weights
(``task/pose.py``: detection 1, push 1e-3, pull 1e-3).
"""

from __future__ import annotations

import torch

from rnnpose.models.hourglass import AEOutput, tags_per_joint

#: pose-ae-train ``task/pose.py`` ``__config__['train']['loss']``.
PUSH_WEIGHT: float = 1e-3
PULL_WEIGHT: float = 1e-3
HEATMAP_WEIGHT: float = 1.0


def heatmap_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked heatmap MSE per image: pred [B,...,J,M,M], gt [B,J,M,M], mask [B,M,M] -> [B,...]."""
    extra = pred.dim() - gt.dim()
    shape = (gt.shape[0],) + (1,) * extra + gt.shape[1:]
    gt = gt.reshape(shape)
    m = mask.reshape((mask.shape[0],) + (1,) * (extra + 1) + mask.shape[1:])
    return ((pred - gt) ** 2 * m).mean(dim=(-3, -2, -1))


def gather_tags(tags: torch.Tensor, tag_idx: torch.Tensor) -> torch.Tensor:
    """Tags at the labelled joints: tags [B,S,J,L,M,M], tag_idx [B,P,J,2] -> [B,S,P,J,L]."""
    b, s, j, dim, h, w = tags.shape
    p = tag_idx.shape[1]
    flat = tags.reshape(b, s, j, dim, h * w)
    index = tag_idx[..., 0].long().clamp(0, h * w - 1)  # [B,P,J]; invalid slots masked later
    index = index.permute(0, 2, 1)[:, None, :, None, :].expand(b, s, j, dim, p)
    picked = torch.gather(flat, -1, index)  # [B,S,J,L,P]
    return picked.permute(0, 1, 4, 2, 3)


def tag_loss(
    tags: torch.Tensor, tag_idx: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """AE's push and pull per image and stack: tags [B,S,J,L,M,M] -> (push [B,S], pull [B,S])."""
    picked = gather_tags(tags, tag_idx)  # [B,S,P,J,L]
    dim = picked.shape[-1]
    valid = (tag_idx[..., 1] > 0).to(picked.dtype)[:, None, :, :, None]  # [B,1,P,J,1]
    n_joints = valid.sum(dim=3)  # [B,1,P,1]
    present = (n_joints[..., 0] > 0).to(picked.dtype)  # [B,1,P]
    means = (picked * valid).sum(dim=3) / n_joints.clamp(min=1)  # [B,S,P,L]
    sq = (((picked - means[:, :, :, None]) ** 2) * valid).sum(dim=(3, 4)) / dim  # [B,S,P]
    per_person = sq / n_joints[..., 0].clamp(min=1)
    n_people = present.sum(dim=-1)  # [B,1]
    pull = (per_person * present).sum(dim=-1) / n_people.clamp(min=1)

    d2 = ((means[:, :, :, None] - means[:, :, None]) ** 2).sum(-1)  # [B,S,P,P]
    pair = present[..., :, None] * present[..., None, :]
    pair = pair * (1 - torch.eye(pair.shape[-1], dtype=pair.dtype, device=pair.device))
    n_pairs = n_people * (n_people - 1)  # ordered pairs
    push = (torch.exp(-d2) * pair).sum(dim=(-2, -1)) / n_pairs.clamp(min=1) * 0.5
    return push, pull


def ae_loss(
    out: AEOutput,
    heatmaps: torch.Tensor,
    masks: torch.Tensor,
    tag_idx: torch.Tensor,
    *,
    push_weight: float = PUSH_WEIGHT,
    pull_weight: float = PULL_WEIGHT,
    heatmap_weight: float = HEATMAP_WEIGHT,
) -> dict[str, torch.Tensor]:
    """The AE loss of every stack, averaged over batch and stacks.

    ``heatmaps`` [B,17,M,M] shared targets, ``masks`` [B,M,M], ``tag_idx`` [B,P,17,2] holding
    ``(y*M + x, valid)`` per person and joint. Returns scalars ``total``, ``heatmap``, ``push``,
    ``pull`` (the last three unweighted).
    """
    tag_dim = out.tags.shape[2] // out.heatmaps.shape[2]
    det = heatmap_loss(out.heatmaps, heatmaps, masks).mean()
    push, pull = tag_loss(tags_per_joint(out.tags, tag_dim), tag_idx.to(out.tags.device))
    push, pull = push.mean(), pull.mean()
    total = heatmap_weight * det + push_weight * push + pull_weight * pull
    return {"total": total, "heatmap": det, "push": push, "pull": pull}
