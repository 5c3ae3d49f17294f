"""Algorithm 1 of the paper: one training step of RMPP on an image, with within-image batching.

Two implementations of the same computation:

* :func:`literal_step` follows Algorithm 1 line by line for ONE image: iterate; every ``T``
  iterations, or when ``p_t < omega``, match the chunk's predictions against the GT not yet
  assigned, compute its loss, ``backward()`` (gradients accumulate), drop the assigned GT and
  detach the hidden state (its values carry on). ``sgd="exact"`` (E-SGD) instead makes the
  whole sequence one chunk: one matching, one ``backward()`` at the end.
* :func:`batched_step` decodes B images in lock-step with a per-image "still running" set and
  the same per-image chunking, so the SUM of its losses and the accumulated gradients equal
  those of :func:`literal_step` run on each image (up to float rounding).

Stop condition (section 3.1.1, Algorithm 1 line 16): an image stops after iteration t when
``p_t < omega`` and ``t >= z + 1`` (then t = |p| = max(z_hat, z) + 1: an under-predicting
decoder is run on to z + 1 to obtain all of eq. 1's targets), or when ``t = max_iterations``.

LSTM2 and chunks: when a chunk closes, its MATCHED LSTM1 predictions (in LSTM1's order) are
permuted by the chosen ordering (:mod:`rnnpose.orderings`) and fed to LSTM2, whose targets are
the matched GT in the same permuted order (eq. 4). The ordering therefore acts WITHIN each
chunk; LSTM2's hidden state runs on across chunks (detached at chunk ends, like LSTM1's). With
E-SGD (or T >= the sequence length) there is one chunk and the ordering is global. LSTM2's loss
back-propagates into LSTM1 through its input heatmaps (section 4.1: LSTM2-only loss is worse,
so LSTM1 is trained by both).

Per-image randomness -- the U[0, 0.1] feedback initialisation of iteration t and the random
ordering of chunk c -- is drawn from generators seeded by ``(seed, t)`` / ``(seed, c)``, so
both paths see identical noise for an image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rnnpose.config import Profile
from rnnpose.losses.rmpp import (
    check_config,
    chunk_losses,
    heatmap_loss,
    heatmap_scale,
    loss_candidates,
    stop_loss,
    stop_targets_at,
)
from rnnpose.matching import hungarian_match
from rnnpose.models.convlstm import State, detach_states
from rnnpose.models.rmpp import RMPP, init_heatmaps, mix_seed
from rnnpose.orderings import ORDERINGS, order

#: generator key separating the orderings' randomness from the feedback initialisation
_ORDER_KEY = 7_919


@dataclass(frozen=True)
class StepConfig:
    """Options of one training step (the profile's values plus the ablation switches)."""

    omega: float
    T: int
    max_iterations: int
    scale: float  # heatmap-loss scale, see rnnpose.losses.rmpp
    sgd: str = "approx"  # "approx" (A-SGD, Algorithm 1) or "exact" (E-SGD)
    loss_config: str = "aa'"
    ordering: str = "learned"

    def __post_init__(self) -> None:
        if self.sgd not in ("approx", "exact"):
            raise ValueError(f"sgd must be 'approx' or 'exact', got {self.sgd!r}")
        if self.ordering not in ORDERINGS:
            raise ValueError(f"unknown ordering {self.ordering!r}")
        if self.T < 1 or self.max_iterations < 1:
            raise ValueError("T and max_iterations must be >= 1")
        check_config(self.loss_config)

    @classmethod
    def from_profile(cls, profile: Profile, **overrides: Any) -> StepConfig:
        base = dict(
            omega=profile.omega, T=profile.T, max_iterations=profile.max_iterations,
            scale=heatmap_scale(profile.sigma, profile.num_joints, profile.rmpp_heatmap_norm),
        )  # fmt: skip
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


def _order_generator(seed: int, chunk: int) -> torch.Generator:
    return torch.Generator().manual_seed(mix_seed(seed, _ORDER_KEY, chunk))


def _is_last(p: float, t: int, z: int, cfg: StepConfig) -> bool:
    return (p < cfg.omega and t >= z + 1) or t >= cfg.max_iterations


def _closes(p: float, t: int, last: bool, cfg: StepConfig) -> bool:
    return last or (cfg.sgd == "approx" and (p < cfg.omega or t % cfg.T == 0))


def _result(sums: dict[str, float], iterations: int, z_hat: int, chunks: int) -> dict[str, Any]:
    out: dict[str, Any] = dict(sums)
    out["total"] = sums["heatmap1"] + sums["stop"] + sums["heatmap2"]
    out.update(iterations=iterations, z_hat=z_hat, chunks=chunks)
    return out


def literal_step(
    model: RMPP,
    features: torch.Tensor,
    gt: torch.Tensor,
    cfg: StepConfig,
    *,
    seed: int = 0,
    backward: bool = True,
) -> dict[str, Any]:
    """Algorithm 1 for one image: ``features [1,C,H,W]``, ``gt [z,J,H,W]`` person heatmaps.

    Gradients are accumulated into the parameters (``backward=True``); the caller steps the
    optimiser. Returns the summed losses (``heatmap1``, ``stop``, ``heatmap2``, ``total``) and
    ``iterations`` (= |p|), ``z_hat`` (predictions with p_t >= omega), ``chunks``.
    """
    z = gt.shape[0]
    shape = (model.joints, features.shape[2], features.shape[3])
    remaining = torch.arange(z)  # line 17 removes assigned GT from this list
    s1: list[State] | None = None
    s2: list[State] | None = None
    feat = model.norm(features)
    hms: list[torch.Tensor] = []
    logits: list[torch.Tensor] = []
    ts: list[int] = []
    sums = {"heatmap1": 0.0, "stop": 0.0, "heatmap2": 0.0}
    z_hat = chunks = 0
    t = 0
    while True:
        t += 1
        init = init_heatmaps([seed], t, shape, features.device)  # line 4
        hm, logit, s1 = model.lstm1(feat, s1, init)  # lines 5-10 (the feedback loop)
        p = torch.sigmoid(logit.detach().double()).item()
        z_hat += int(p >= cfg.omega)
        hms.append(hm[0])  # line 11
        logits.append(logit[0])
        ts.append(t)
        last = _is_last(p, t, z, cfg)
        if _closes(p, t, last, cfg):  # line 12
            preds, lg = torch.stack(hms), torch.stack(logits)
            gt_rem = gt[remaining.to(gt.device)]
            hm1, st, pi, gi = chunk_losses(  # lines 13-14
                preds, lg, torch.tensor(ts), gt_rem, z,
                omega=cfg.omega, scale=cfg.scale, config=cfg.loss_config,
            )  # fmt: skip
            hm2 = hm1.new_zeros(())
            if model.lstm2 is not None and len(pi) > 0:
                matched, target = preds[pi.to(preds.device)], gt_rem[gi.to(gt.device)]
                probs = torch.sigmoid(lg.detach()[pi.to(lg.device)]).cpu()
                perm = order(cfg.ordering, matched, probs, _order_generator(seed, chunks))
                perm = perm.to(matched.device)
                out, s2 = model.lstm2.sequence(feat, matched[perm], s2)
                hm2 = heatmap_loss(out, target[perm], cfg.scale)
            total = hm1 + st + hm2
            if backward:
                total.backward()  # line 15
            sums["heatmap1"] += hm1.item()
            sums["stop"] += st.item()
            sums["heatmap2"] += hm2.item()
            keep = torch.ones(len(remaining), dtype=torch.bool)
            keep[gi] = False
            remaining = remaining[keep]  # line 17
            s1, s2 = detach_states(s1), detach_states(s2)
            feat = model.norm(features)
            hms, logits, ts = [], [], []
            chunks += 1
        if last:  # line 16
            break
    return _result(sums, t, z_hat, chunks)


def batched_step(
    model: RMPP,
    features: torch.Tensor,
    gts: list[torch.Tensor],
    cfg: StepConfig,
    *,
    seeds: list[int] | None = None,
    backward: bool = True,
) -> dict[str, Any]:
    """Algorithm 1 on ``B`` images in lock-step: ``features [B,C,H,W]``, ``gts[b] [z_b,J,H,W]``.

    Each image keeps its own chunking, matching, GT removal and stop; LSTM1 runs on the images
    still decoding as one batch. A chunk's end is a gradient cut for that image only (its rows
    of the hidden state are detached); ``backward()`` runs whenever every running image has
    just closed a chunk (at least every T iterations), on the sum of the pending chunk losses --
    by linearity the same gradients as the literal per-chunk calls. Returns the losses summed
    over the images and the summed ``iterations``/``z_hat``/``chunks``; ``per_image`` holds
    each image's ``(iterations, z_hat)``.
    """
    b_all = features.shape[0]
    seeds = list(seeds) if seeds is not None else [0] * b_all
    if len(gts) != b_all or len(seeds) != b_all:
        raise ValueError("features, gts and seeds must have the same batch size")
    dev = features.device
    shape = (model.joints, features.shape[2], features.shape[3])
    zs = [g.shape[0] for g in gts]
    remaining = [torch.arange(z) for z in zs]
    s2: list[list[State] | None] = [None] * b_all
    chunk_no = [0] * b_all
    z_hat = [0] * b_all
    iters = [0] * b_all
    # per image: the open chunk's (t, heatmaps [J,H,W], logit, p)
    buf: list[list[tuple[int, torch.Tensor, torch.Tensor, float]]] = [[] for _ in range(b_all)]
    sums = {"heatmap1": 0.0, "stop": 0.0, "heatmap2": 0.0}
    feat = model.norm(features)
    active = list(range(b_all))
    s1: list[State] | None = None
    pending: torch.Tensor | None = None
    t = 0
    while active:
        t += 1
        rows = torch.tensor(active, device=dev)
        feat_a = feat if len(active) == b_all else feat.index_select(0, rows)
        init = init_heatmaps([seeds[b] for b in active], t, shape, dev)
        hm, logit, s1 = model.lstm1(feat_a, s1, init)
        probs = torch.sigmoid(logit.detach().double()).cpu().tolist()
        closing: list[int] = []
        finished: list[int] = []
        for r, b in enumerate(active):
            p = probs[r]
            z_hat[b] += int(p >= cfg.omega)
            buf[b].append((t, hm[r], logit[r], p))
            last = _is_last(p, t, zs[b], cfg)
            if last:
                finished.append(b)
                iters[b] = t
            if _closes(p, t, last, cfg):
                closing.append(b)
        if closing:
            loss = _close_chunks(model, feat, gts, closing, buf, remaining, s2, chunk_no,
                                 seeds, zs, cfg, sums)  # fmt: skip
            pending = loss if pending is None else pending + loss
            mask = torch.tensor([b in closing for b in active], device=dev).view(-1, 1, 1, 1)
            s1 = [(torch.where(mask, h.detach(), h), torch.where(mask, c.detach(), c))
                  for h, c in s1]  # fmt: skip
        if len(closing) == len(active) and pending is not None:
            if backward:
                pending.backward()
            pending = None
            s1 = detach_states(s1)
            s2 = [detach_states(s) for s in s2]
            feat = model.norm(features)
        if finished:
            keep = [r for r, b in enumerate(active) if b not in finished]
            active = [active[r] for r in keep]
            if active:
                idx = torch.tensor(keep, device=dev)
                s1 = [(h.index_select(0, idx), c.index_select(0, idx)) for h, c in s1]
    out = _result(sums, sum(iters), sum(z_hat), sum(chunk_no))
    out["per_image"] = list(zip(iters, z_hat, strict=True))
    return out


def _close_chunks(
    model: RMPP,
    feat: torch.Tensor,
    gts: list[torch.Tensor],
    closing: list[int],
    buf: list[list[tuple[int, torch.Tensor, torch.Tensor, float]]],
    remaining: list[torch.Tensor],
    s2: list[list[State] | None],
    chunk_no: list[int],
    seeds: list[int],
    zs: list[int],
    cfg: StepConfig,
    sums: dict[str, float],
) -> torch.Tensor:
    """Losses of the chunks closing now (one batched op per term); updates GT lists and LSTM2."""
    pred_pairs, gt_pairs, all_logits, all_targets = [], [], [], []
    seqs, seq_targets, seq_images = [], [], []
    for b in closing:
        ts = torch.tensor([e[0] for e in buf[b]])
        preds = torch.stack([e[1] for e in buf[b]])
        probs = torch.tensor([e[3] for e in buf[b]], dtype=torch.float64)
        all_logits.append(torch.stack([e[2] for e in buf[b]]))
        all_targets.append(stop_targets_at(ts, zs[b]))
        cand = torch.nonzero(loss_candidates(ts, probs, zs[b], cfg.omega, cfg.loss_config))
        cand = cand.flatten()
        gt_rem = gts[b][remaining[b].to(gts[b].device)]
        pi, gi = hungarian_match(preds.detach()[cand.to(preds.device)], gt_rem)
        pred_idx = cand[pi]
        matched = preds[pred_idx.to(preds.device)]
        target = gt_rem[gi.to(gt_rem.device)]
        pred_pairs.append(matched)
        gt_pairs.append(target)
        if model.lstm2 is not None and len(pred_idx) > 0:
            perm = order(cfg.ordering, matched, probs[pred_idx].float(),
                         _order_generator(seeds[b], chunk_no[b])).to(matched.device)  # fmt: skip
            seqs.append(matched[perm])
            seq_targets.append(target[perm])
            seq_images.append(b)
        keep = torch.ones(len(remaining[b]), dtype=torch.bool)
        keep[gi] = False
        remaining[b] = remaining[b][keep]
        chunk_no[b] += 1
        buf[b] = []
    hm1 = heatmap_loss(torch.cat(pred_pairs), torch.cat(gt_pairs), cfg.scale)
    st = stop_loss(torch.cat(all_logits), torch.cat(all_targets))
    hm2 = hm1.new_zeros(())
    if seqs:
        idx = torch.tensor(seq_images, device=feat.device)
        outs, new_states = model.lstm2.ragged(feat.index_select(0, idx), seqs,
                                              [s2[b] for b in seq_images])  # fmt: skip
        for b, s in zip(seq_images, new_states, strict=True):
            s2[b] = detach_states(s)
        hm2 = heatmap_loss(torch.cat(outs), torch.cat(seq_targets), cfg.scale)
    sums["heatmap1"] += hm1.item()
    sums["stop"] += st.item()
    sums["heatmap2"] += hm2.item()
    return hm1 + st + hm2
