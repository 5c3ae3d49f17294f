"""RMPP's loss terms (section 3.2, eq. 1-4) and the count-mismatch configurations (section 4.2).

* eq. 2 / eq. 4 -- squared L2 between matched predicted and GT person heatmaps.
* eq. 3 -- binary cross-entropy of the stop probabilities against eq. 1's vector
  (:func:`rnnpose.targets.stop_targets`: ones for t <= z, zeros after). Computed from the logit.
* All terms are SUMS (over persons, joints and iterations), so the loss of a sequence cut into
  A-SGD chunks is exactly the sum of the chunk losses; they are weighted equally (section 3.2).

Normalisation (the paper does not give it). A heatmap term is ``scale * sum_pixels (H^ - H)^2``
with ``scale = 1 / (J * pi * sigma^2)``: ``pi sigma^2`` is the energy ``sum g^2`` of one unit
Gaussian, so predicting all-zero maps for a person with every joint labelled costs 1 -- the
same order as the stop BCE at chance (ln 2 ~ 0.69) -- independent of the map size M and of
sigma. A per-pixel mean instead makes the heatmap term ~M^2 times smaller than the stop term
and the decoder learns to count before it learns to localise; a plain pixel sum makes it
``J pi sigma^2`` (~670 at the paper's sigma 2) times larger and the count is learnt slowly.

Which predictions take part in the heatmap loss (section 4.2, table 4), for prediction t:

* t <= z (the under-prediction side): ``a`` -- only if p_t >= omega; ``b`` -- always.
* t > z (the over-prediction side): ``a'`` -- never (only the first z predictions are
  assigned); ``b'`` -- if p_t >= omega (all z_hat confident predictions enter the assignment,
  so a late duplicate can take a GT from an earlier prediction).

The eligible predictions are matched to the (remaining) GT by
:func:`rnnpose.matching.hungarian_match`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rnnpose.matching import hungarian_match
from rnnpose.skeleton import NUM_JOINTS
from rnnpose.targets import stop_targets

#: The four configurations of table 4; the paper's default is (a, a').
LOSS_CONFIGS: tuple[str, ...] = ("aa'", "ab'", "ba'", "bb'")


def check_config(config: str) -> str:
    if config not in LOSS_CONFIGS:
        raise ValueError(f"unknown loss config {config!r}; choose one of {', '.join(LOSS_CONFIGS)}")
    return config


#: Normalisations of the heatmap terms (``Profile.rmpp_heatmap_norm``).
HEATMAP_NORMS: tuple[str, ...] = ("person", "joint", "sum")


def heatmap_scale(sigma: float, joints: int = NUM_JOINTS, norm: str = "person") -> float:
    """The factor of the summed squared error: ``person`` -- ``1 / (J pi sigma^2)``, an all-zero
    prediction of a fully labelled person costs 1; ``joint`` -- ``1 / (pi sigma^2)``, 1 per
    labelled joint; ``sum`` -- 1, the plain sum of squares over pixels (eq. 2 read literally)."""
    if norm not in HEATMAP_NORMS:
        raise ValueError(f"unknown heatmap normalisation {norm!r}; choose one of {HEATMAP_NORMS}")
    return {"person": 1.0 / (joints * math.pi * sigma**2), "joint": 1.0 / (math.pi * sigma**2),
            "sum": 1.0}[norm]  # fmt: skip


def heatmap_loss(pred: torch.Tensor, gt: torch.Tensor, scale: float) -> torch.Tensor:
    """Eq. 2 / eq. 4: ``scale * sum_{t,j,pixels} (pred - gt)^2`` over matched pairs [r,J,H,W]."""
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    if pred.dtype in (torch.float16, torch.bfloat16):  # autocast outputs: sum in float32
        pred = pred.float()
    return scale * (pred - gt.to(pred.dtype)).pow(2).sum()


def stop_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 3: summed binary cross-entropy of ``sigmoid(logits)`` against eq. 1's targets."""
    return F.binary_cross_entropy_with_logits(
        logits.float(), targets.to(logits.device, torch.float32), reduction="sum"
    )


def stop_targets_at(ts: torch.Tensor, z: int) -> torch.Tensor:
    """Eq. 1 at iterations ``ts`` (1-based): 1 for t <= z, 0 after."""
    ts = torch.as_tensor(ts, dtype=torch.long)
    if ts.numel() == 0:
        return torch.zeros(0)
    vec = stop_targets(z, max(z, int(ts.max())))  # length >= max(ts) + 1
    return vec[ts - 1]


def loss_candidates(
    ts: torch.Tensor, probs: torch.Tensor, z: int, omega: float, config: str = "aa'"
) -> torch.Tensor:
    """Bool mask of the predictions that may enter the heatmap loss (section 4.2)."""
    check_config(config)
    ts = torch.as_tensor(ts, dtype=torch.long)
    confident = torch.as_tensor(probs, dtype=torch.float64).cpu() >= omega
    under = ts <= z
    keep_under = torch.ones_like(under) if config[0] == "b" else confident
    keep_over = confident if config[1] == "b" else torch.zeros_like(under)
    return torch.where(under, keep_under, keep_over)


def chunk_losses(
    preds: torch.Tensor,
    logits: torch.Tensor,
    ts: torch.Tensor,
    gt: torch.Tensor,
    z: int,
    *,
    omega: float,
    scale: float,
    config: str = "aa'",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """LSTM1's losses for a run of consecutive iterations ``ts`` of one image.

    ``preds [k,J,H,W]``, ``logits [k]``, ``gt [m,J,H,W]`` (the GT still unassigned), ``z`` the
    image's total GT count. Returns ``(l_HM1, l_stop, pred_idx, gt_idx)`` where ``pred_idx``
    indexes ``preds`` (ascending) and ``gt_idx`` indexes ``gt``.
    """
    probs = torch.sigmoid(logits.detach().double()).cpu()
    cand = torch.nonzero(loss_candidates(ts, probs, z, omega, config)).flatten()
    pi, gi = hungarian_match(preds.detach()[cand], gt)
    pred_idx = cand[pi]
    hm = heatmap_loss(preds[pred_idx.to(preds.device)], gt[gi.to(gt.device)], scale)
    st = stop_loss(logits, stop_targets_at(ts, z))
    return hm, st, pred_idx, gi
