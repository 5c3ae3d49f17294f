"""Hungarian assignment of predicted persons to GT persons (section 3.2).

Kept apart from the losses (like DETR's matcher): the matching only decides WHICH prediction is
compared to WHICH ground truth; it sees detached heatmaps and returns indices.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment


def match_cost(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``C[k, k'] = sum_j ||pred[k, j] - gt[k', j]||_2`` (Frobenius norm per joint map).

    ``pred [N,J,H,W]``, ``gt [M,J,H,W]`` -> ``[N, M]`` (float64 on the CPU).
    """
    n, m = pred.shape[0], gt.shape[0]
    if n == 0 or m == 0:
        return torch.zeros(n, m, dtype=torch.float64)
    p = pred.detach().flatten(2).transpose(0, 1).double()  # [J, N, HW]
    g = gt.detach().to(p.device).flatten(2).transpose(0, 1).double()  # [J, M, HW]
    return torch.cdist(p, g).sum(0).cpu()


def hungarian_match(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The minimum-cost assignment: ``(pred_idx, gt_idx)`` LongTensors of length min(N, M).

    ``pred_idx`` is ascending (the predictions keep LSTM1's order); unmatched rows or columns
    (N != M) are simply absent. Either side may be empty.
    """
    cost = match_cost(pred, gt)
    if cost.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty.clone()
    rows, cols = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)
