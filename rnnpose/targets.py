"""Ground-truth encodings: shared and per-person heatmaps, tag indices, the stop vector.

All keypoints here are in heatmap coordinates (``to_heatmap`` divides input pixels by the
stride, no half-pixel shift). A joint counts if v > 0 and its nearest heatmap pixel lies in
the map; its Gaussian is centred on that pixel (peak exactly 1), as in pose-ae-train.

- :func:`shared_heatmaps`: AE's J maps, the max over people (section 2.1).
- :func:`person_heatmaps`: RMPP's Z x J disjoint maps, one peak each (section 3.1.1).
- :func:`tag_indices`: where AE's push/pull loss reads each person's tags.
- :func:`stop_targets`: the vector ``p`` of eq. 1.
"""

from __future__ import annotations

import numpy as np
import torch

from rnnpose.skeleton import NUM_JOINTS


def _as_tensor(kpts: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(kpts) if not torch.is_tensor(kpts) else kpts)
    return t.to(torch.float32).reshape(-1, NUM_JOINTS, 3)


def joint_pixels(
    kpts: torch.Tensor | np.ndarray, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest heatmap pixel (x, y) of every joint, and whether the joint counts."""
    k = _as_tensor(kpts)
    xy = torch.floor(k[..., :2] + 0.5).long()
    x, y = xy[..., 0], xy[..., 1]
    counted = (k[..., 2] > 0) & (x >= 0) & (x < size) & (y >= 0) & (y < size)
    return x, y, counted


def person_heatmaps(kpts: torch.Tensor | np.ndarray, size: int, sigma: float) -> torch.Tensor:
    """[Z,17,size,size]: one Gaussian (peak 1, std ``sigma`` px) per counted joint, else 0."""
    x, y, counted = joint_pixels(kpts, size)
    grid = torch.arange(size, dtype=torch.float32)
    gx = torch.exp(-((grid - x[..., None].float()) ** 2) / (2 * sigma**2))  # [Z,17,size]
    gy = torch.exp(-((grid - y[..., None].float()) ** 2) / (2 * sigma**2))
    maps = gy[..., :, None] * gx[..., None, :]
    return maps * counted[..., None, None].float()


def shared_heatmaps(kpts: torch.Tensor | np.ndarray, size: int, sigma: float) -> torch.Tensor:
    """[17,size,size]: the per-person maps' maximum over people (zeros if nobody)."""
    maps = person_heatmaps(kpts, size, sigma)
    if maps.shape[0] == 0:
        return torch.zeros(NUM_JOINTS, size, size)
    return maps.amax(dim=0)


def tag_indices(kpts: torch.Tensor | np.ndarray, size: int, max_people: int) -> torch.Tensor:
    """[max_people,17,2] long: (flat index y*size+x, valid) per joint; extra people dropped."""
    x, y, counted = joint_pixels(kpts, size)
    out = torch.zeros(max_people, NUM_JOINTS, 2, dtype=torch.long)
    z = min(x.shape[0], max_people)
    flat = (y * size + x) * counted
    out[:z, :, 0] = flat[:z]
    out[:z, :, 1] = counted[:z].long()
    return out


def stop_targets(z: int, z_hat: int) -> torch.Tensor:
    """Eq. 1: ``|p| = max(z_hat, z) + 1``; ones for iterations t = 1..z, zeros after.

    ``z`` is the true number of people, ``z_hat`` how many the decoder predicted.
    """
    if z < 0 or z_hat < 0:
        raise ValueError(f"people counts must be >= 0, got z={z}, z_hat={z_hat}")
    p = torch.zeros(max(z, z_hat) + 1)
    p[:z] = 1.0
    return p


def _rescale(kpts: torch.Tensor | np.ndarray, factor: float) -> torch.Tensor | np.ndarray:
    out = kpts.clone() if torch.is_tensor(kpts) else np.array(kpts, dtype=np.float64)
    out[..., :2] = out[..., :2] * factor
    return out


def to_heatmap(kpts: torch.Tensor | np.ndarray, stride: int) -> torch.Tensor | np.ndarray:
    """Input pixels -> heatmap pixels (x, y divided by ``stride``; v kept)."""
    return _rescale(kpts, 1.0 / stride)


def to_input(kpts: torch.Tensor | np.ndarray, stride: int) -> torch.Tensor | np.ndarray:
    """Heatmap pixels -> input pixels (x, y multiplied by ``stride``; v kept)."""
    return _rescale(kpts, float(stride))
