"""Inference with a trained RMPP: decode people, read joints off their heatmaps (section 3.2).

* :func:`decode` runs LSTM1 on a batch of images until each image's ``p_t < omega`` (or
  ``max_iterations``), then LSTM2 over each image's persons (LSTM1's order unless another
  ordering is asked for; outputs are returned in LSTM1's order).
* :func:`heatmaps_to_keypoints` -- ``x_j = argmax H_t,j``; a joint whose maximum is below
  ``tau`` (0.015 in the paper) is discarded (score 0); kept joints are moved a quarter pixel
  toward the higher neighbour in x and in y (the sub-pixel step of pose-ae-train).
* Person score = ``p_t * mean(kept joint maxima)`` (0 if no joint is kept): the stop
  probability says "this is a new person", the joint maxima how sure its joints are.
* :func:`to_coco_results` maps heatmap coordinates back to original pixels: ``x * stride``
  (heatmap -> network input, no half-pixel shift) then the inverse of the image's affine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rnnpose.config import TAU_DEFAULT
from rnnpose.data.transforms import apply_affine, invert_affine
from rnnpose.models.rmpp import RMPP, init_heatmaps, mix_seed
from rnnpose.orderings import order

_DECODE_ORDER_KEY = 104_729


@torch.no_grad()
def decode(
    model: RMPP,
    features: torch.Tensor,
    omega: float,
    tau: float = TAU_DEFAULT,
    use_lstm2: bool = True,
    max_iterations: int = 30,
    *,
    seeds: list[int] | None = None,
    ordering: str = "learned",
) -> list[dict[str, torch.Tensor]]:
    """Decode ``features [B,C,H,W]`` (raw AE features; normalised here).

    Returns per image ``{"heatmaps" [Z,J,H,W] (LSTM2's when used, else LSTM1's),
    "heatmaps1" (LSTM1's), "p" [Z], "keypoints" [Z,J,3] (x, y, score; heatmap coords),
    "scores" [Z], "p_stop": the p_t below omega that ended decoding, nan if max_iterations
    ended it}`` with Z the iterations before the first ``p_t < omega``.
    """
    b_all = features.shape[0]
    dev = features.device
    seeds = list(seeds) if seeds is not None else [0] * b_all
    shape = (model.joints, features.shape[2], features.shape[3])
    feat = model.norm(features)
    people: list[list[torch.Tensor]] = [[] for _ in range(b_all)]
    probs: list[list[float]] = [[] for _ in range(b_all)]
    stop_p = [float("nan")] * b_all  # p_t of the iteration that stopped (nan: hit the cap)
    active = list(range(b_all))
    state = None
    t = 0
    while active and t < max_iterations:
        t += 1
        rows = torch.tensor(active, device=dev)
        feat_a = feat if len(active) == b_all else feat.index_select(0, rows)
        hm, logit, state = model.lstm1(feat_a, state, init_heatmaps([seeds[b] for b in active],
                                                                    t, shape, dev))  # fmt: skip
        p = torch.sigmoid(logit.double()).cpu().tolist()
        keep = []
        for r, b in enumerate(active):
            if p[r] >= omega:
                people[b].append(hm[r])
                probs[b].append(p[r])
                keep.append(r)
            else:
                stop_p[b] = p[r]
        if len(keep) < len(active):
            active = [active[r] for r in keep]
            if active:
                idx = torch.tensor(keep, device=dev)
                state = [(h.index_select(0, idx), c.index_select(0, idx)) for h, c in state]
    hm1 = [torch.stack(ps) if ps else features.new_zeros(0, *shape) for ps in people]
    p_t = [torch.tensor(ps, dtype=torch.float32) for ps in probs]
    final = hm1
    if use_lstm2 and model.lstm2 is not None:
        final = _refine(model, feat, hm1, p_t, seeds, ordering)
    out = []
    for b in range(b_all):
        kps = torch.stack([heatmaps_to_keypoints(h, tau) for h in final[b]]) if len(
            final[b]
        ) else torch.zeros(0, model.joints, 3)
        out.append({
            "heatmaps": final[b], "heatmaps1": hm1[b], "p": p_t[b],
            "keypoints": kps, "scores": person_scores(kps, p_t[b]), "p_stop": stop_p[b],
        })  # fmt: skip
    return out


def _refine(
    model: RMPP,
    feat: torch.Tensor,
    hm1: list[torch.Tensor],
    p_t: list[torch.Tensor],
    seeds: list[int],
    ordering: str,
) -> list[torch.Tensor]:
    """LSTM2 over each image's persons in the given ordering, returned in LSTM1's order."""
    assert model.lstm2 is not None
    final = list(hm1)
    todo = [b for b in range(len(hm1)) if len(hm1[b])]
    if not todo:
        return final
    perms = [
        order(ordering, hm1[b], p_t[b],
              torch.Generator().manual_seed(mix_seed(seeds[b], _DECODE_ORDER_KEY)))
        for b in todo
    ]  # fmt: skip
    seqs = [hm1[b][perm.to(hm1[b].device)] for b, perm in zip(todo, perms, strict=True)]
    idx = torch.tensor(todo, device=feat.device)
    outs, _ = model.lstm2.ragged(feat.index_select(0, idx), seqs)
    for b, perm, o in zip(todo, perms, outs, strict=True):
        back = torch.empty_like(perm)
        back[perm] = torch.arange(len(perm))
        final[b] = o[back.to(o.device)]
    return final


def heatmaps_to_keypoints(hm: torch.Tensor, tau: float = TAU_DEFAULT) -> torch.Tensor:
    """``hm [J,H,W]`` -> ``[J,3]`` (x, y, score) in heatmap pixels; score 0 = discarded."""
    j, h, w = hm.shape
    hm = hm.detach().float().cpu()
    vals, flat = hm.flatten(1).max(1)
    y = (flat // w).long()
    x = (flat % w).long()
    rows = torch.arange(j)
    xf, yf = x.float(), y.float()
    xl, xr = (x - 1).clamp(min=0), (x + 1).clamp(max=w - 1)
    yu, yd = (y - 1).clamp(min=0), (y + 1).clamp(max=h - 1)
    inner_x = (x > 0) & (x < w - 1)
    inner_y = (y > 0) & (y < h - 1)
    dx = torch.sign(hm[rows, y, xr] - hm[rows, y, xl]) * inner_x
    dy = torch.sign(hm[rows, yd, x] - hm[rows, yu, x]) * inner_y
    keep = vals >= tau
    return torch.stack([xf + 0.25 * dx, yf + 0.25 * dy, torch.where(keep, vals, 0.0)], dim=1)


def person_scores(keypoints: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``p_t * mean of the kept joints' maxima`` per person (0 when no joint is kept)."""
    if keypoints.shape[0] == 0:
        return torch.zeros(0)
    s = keypoints[..., 2]
    kept = (s > 0).float()
    mean = (s * kept).sum(1) / kept.sum(1).clamp(min=1)
    return p.float() * mean


def to_coco_results(
    people: dict[str, torch.Tensor],
    affine: np.ndarray,
    stride: int,
    image_id: int,
    *,
    fill_dropped: bool = False,
) -> list[dict[str, Any]]:
    """COCO keypoint results (original pixels) of one decoded image.

    A discarded joint (score 0) is written as (0, 0, 0) -- the paper discards it; with
    ``fill_dropped`` its argmax location is kept instead (OKS ignores predicted visibility).
    People with no kept joint are left out.
    """
    kps = people["keypoints"].detach().cpu().double().numpy()
    scores = people["scores"].detach().cpu().double().numpy()
    inv = invert_affine(np.asarray(affine, dtype=np.float64))
    out = []
    for k in range(kps.shape[0]):
        kept = kps[k, :, 2] > 0
        if not kept.any():
            continue
        xy = apply_affine(kps[k, :, :2] * stride, inv)
        vis = np.where(kept, kps[k, :, 2], 0.0)
        if not fill_dropped:
            xy = np.where(kept[:, None], xy, 0.0)
        flat = np.concatenate([xy, vis[:, None]], axis=1).reshape(-1)
        out.append({
            "image_id": int(image_id), "category_id": 1,
            "keypoints": [float(v) for v in flat], "score": float(scores[k]),
        })  # fmt: skip
    return out
