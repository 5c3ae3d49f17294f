"""``rnnpose train ae``: train the stacked-hourglass AE network (the first stage, section 3.3).

Adam at ``profile.ae_lr`` on AE's loss (:mod:`rnnpose.losses.ae`), shared heatmaps and tag
indices built per batch from the dataset's keypoints (:mod:`rnnpose.targets`). The run folder
gets ``config.json``, ``last.pt`` and ``epoch_NNN.pt`` after every epoch and ``log.jsonl``.
The data order and the augmentation of epoch ``e`` depend only on ``(seed, e)``, so ``--resume``
after an interruption ends with the same weights as an uninterrupted run (on the same device).
A NaN/inf loss stops training and names the step; the last checkpoint (the previous epoch's)
is left as it was.

Push and pull carry AE's weights (1e-3) by default. Every tag starts near one value, where
push sits at its ceiling (~0.45) with a vanishing gradient; AE trains for hundreds of thousands
of steps, the CPU profiles for hundreds, so they raise the weight (``profile.ae_tag_weight``,
``--tag-weight``; recorded in ``config.json``). Measured on the cpu profile (1,200 synthetic
images, batch 16): at 0.1 the tags separate in epochs 6-8 and the heatmaps get worse while they
do (heatmap loss 0.0070 -> 0.0095; AP with ground-truth grouping of the heatmaps 19.4 -> 2.6 on
``sparse``); at 0.01 they separate in epochs 8-10 while the heatmap loss keeps falling (0.0063
at epoch 8). The learning rate drops x0.1 from ``profile.ae_lr_drop_epoch``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from rnnpose import cli_types
from rnnpose.checkpoint import checkpoint_payload, load_checkpoint, restore_training_state
from rnnpose.config import PROFILES, Profile, get_profile
from rnnpose.data.coco import CocoPoseDataset, collate
from rnnpose.io import DataError, PathLike
from rnnpose.losses.ae import ae_loss
from rnnpose.models.hourglass import PoseNet
from rnnpose.progress import progress
from rnnpose.targets import shared_heatmaps, tag_indices, to_heatmap
from rnnpose.train.accel import (
    SWITCH,
    all_reduce_sum,
    autocast,
    barrier,
    memory_format,
    resolve_switch,
    setup_distributed,
)
from rnnpose.train.common import NonFiniteLossError, RunDir, check_finite, seed_everything


def data_paths(
    data_dir: PathLike | None, ann_file: PathLike | None = None, image_root: PathLike | None = None
) -> tuple[Path, Path]:
    """``(annotations, image folder)``: ``DIR/annotations.json`` and ``DIR/images`` unless given."""
    if ann_file is None or image_root is None:
        if data_dir is None:
            raise DataError("give --data DIR (annotations.json, images/) or --ann and --images")
        data_dir = Path(data_dir)
        ann_file = ann_file or data_dir / "annotations.json"
        image_root = image_root or data_dir / "images"
    ann_file, image_root = Path(ann_file), Path(image_root)
    if not ann_file.is_file():
        raise DataError(f"{ann_file}: annotation file not found")
    if not image_root.is_dir():
        raise DataError(f"{image_root}: image folder not found")
    return ann_file, image_root


def batch_targets(batch: dict[str, Any], profile: Profile) -> tuple[torch.Tensor, torch.Tensor]:
    """AE targets of a collated batch: shared heatmaps [B,17,M,M] and tag indices [B,P,17,2]."""
    m = profile.output_size
    heat, idx = [], []
    for kps, n in zip(batch["keypoints"], batch["num_people"].tolist(), strict=True):
        k = to_heatmap(kps[:n], profile.stride)
        heat.append(shared_heatmaps(k, m, profile.sigma))
        idx.append(tag_indices(k, m, profile.max_people))
    return torch.stack(heat), torch.stack(idx)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The sample order of one epoch, a function of ``(seed, epoch)`` only."""
    return np.random.default_rng([seed, epoch]).permutation(n).tolist()


def epoch_lr(profile: Profile, epoch: int) -> float:
    """Adam's rate in epoch number ``epoch`` (1-based): ``ae_lr``, x0.1 from epoch
    ``ae_lr_drop_epoch`` on (0: never), as RMPP's ``rmpp_lr_drop_epoch``."""
    drop = profile.ae_lr_drop_epoch
    return profile.ae_lr * (0.1 if drop and epoch >= drop else 1.0)


def loss_weights(profile: Profile, tag_weight: float | None = None) -> dict[str, float]:
    """Push and pull weights: ``profile.ae_tag_weight`` (AE's 1e-3 in the paper profile) unless
    ``profile.extra`` (``ae_push_weight``, ``ae_pull_weight``) or ``tag_weight`` (both) say
    otherwise."""
    push = float(profile.extra.get("ae_push_weight", profile.ae_tag_weight))
    pull = float(profile.extra.get("ae_pull_weight", profile.ae_tag_weight))
    if tag_weight is not None:
        push = pull = float(tag_weight)
    return {"push_weight": push, "pull_weight": pull}


def epoch_loss_weights(profile: Profile, weights: dict[str, float], epoch: int) -> dict[str, float]:
    """The push/pull weights of epoch ``epoch`` (1-based): ``weights`` until
    ``profile.ae_tag_late_epoch``, ``profile.ae_tag_weight_late`` for both from then on."""
    late = profile.ae_tag_late_epoch
    if late and epoch >= late:
        return {**weights, "push_weight": profile.ae_tag_weight_late,
                "pull_weight": profile.ae_tag_weight_late}  # fmt: skip
    return weights


def _device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda requested but no CUDA device is available")
    return dev


def _check_resume_config(old: dict[str, Any], new: dict[str, Any], path: Path) -> None:
    for key in ("method", "profile", "seed", "bn", "loss_weights"):
        if old.get(key) != new.get(key):
            raise DataError(
                f"{path}: cannot resume: the run was started with a different {key!r} "
                f"({old.get(key)!r} vs {new.get(key)!r})"
            )


def train_ae(
    profile: str | Profile,
    data_dir: PathLike | None,
    out_dir: PathLike,
    resume: bool = False,
    seed: int = 0,
    quiet: bool = False,
    epochs: int | None = None,
    device: str | torch.device = "cpu",
    ann_file: PathLike | None = None,
    image_root: PathLike | None = None,
    num_workers: int = 0,
    tag_weight: float | None = None,
    amp: str | bool = "auto",
    channels_last: str | bool = "auto",
) -> Path:
    """Train (or continue) an AE run in ``out_dir``; returns ``out_dir``.

    ``epochs`` (default ``profile.ae_epochs``) is the total number of epochs of the run.
    ``tag_weight`` overrides the push and pull weights (see :func:`loss_weights`).
    Raises :class:`~rnnpose.train.common.NonFiniteLossError` on a NaN/inf loss.
    ``amp`` / ``channels_last``: ``auto`` (on for CUDA, off on the CPU), ``on`` or ``off``
    (:mod:`rnnpose.train.accel`). Under ``torchrun`` each process trains a
    DistributedDataParallel replica on its DistributedSampler share, with
    ``ae_batch_size // WORLD_SIZE`` images per process (the same global batch); only rank 0
    writes the run folder.
    """
    profile = get_profile(profile)
    dist_info, dev = setup_distributed(_device(device))
    use_amp, use_cl = resolve_switch(amp, dev), resolve_switch(channels_last, dev)
    fmt = memory_format(use_cl)
    run = RunDir(out_dir)
    run.check_target("ae", resume)  # no run is overwritten without --resume
    ann_file, image_root = data_paths(data_dir, ann_file, image_root)
    # the data is validated before the run folder is touched (uses no global RNG)
    dataset = CocoPoseDataset(
        ann_file, image_root, profile.input_size, profile.output_size,
        train=True, seed=seed, max_people=profile.max_people,
    )  # fmt: skip
    dataset.verify_images()
    epochs = profile.ae_epochs if epochs is None else int(epochs)
    if epochs < 1:
        raise DataError(f"--epochs must be >= 1, got {epochs}")
    weights = loss_weights(profile, tag_weight)
    config = {
        "method": "ae",
        "profile": profile.to_dict(),
        "seed": int(seed),
        "epochs": epochs,
        "bn": True,
        "loss_weights": weights,
        "data": {"annotations": str(ann_file), "images": str(image_root)},
    }
    if dist_info.distributed:
        config["world_size"] = dist_info.world
    payload = run.resume_payload(resume)
    if payload is not None:
        _check_resume_config(payload["config"], config, run.last)

    seed_everything(seed)
    model = PoseNet(profile, bn=True).to(dev, memory_format=fmt)
    optimizer = torch.optim.Adam(model.parameters(), lr=profile.ae_lr)
    start_epoch, step = 0, 0
    if payload is not None:
        restore_training_state(payload, model, optimizer, source=run.last)
        start_epoch, step = int(payload["epoch"]), int(payload["step"])
    net: torch.nn.Module = model
    if dist_info.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    config_written = False  # written with the first checkpoint: a failed epoch 1 leaves nothing
    batch_size = max(1, profile.ae_batch_size // dist_info.world)

    for epoch in range(start_epoch, epochs):
        for group in optimizer.param_groups:  # set per epoch, so --resume follows the schedule
            group["lr"] = epoch_lr(profile, epoch + 1)
        dataset.set_epoch(epoch)
        if dist_info.distributed:
            sampler: Any = torch.utils.data.DistributedSampler(
                dataset, num_replicas=dist_info.world, rank=dist_info.rank, seed=seed
            )
            sampler.set_epoch(epoch)
        else:
            sampler = epoch_order(len(dataset), seed, epoch)
        loader = DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate,
            num_workers=num_workers,
        )  # fmt: skip
        model.train()
        sums = {"total": 0.0, "heatmap": 0.0, "push": 0.0, "pull": 0.0}
        first = last = float("nan")
        n = 0
        t0 = time.perf_counter()
        bar = progress(loader, quiet=quiet or not dist_info.main,
                       desc=f"ae {epoch + 1}/{epochs}", unit="batch")  # fmt: skip
        for batch in bar:
            heat, idx = batch_targets(batch, profile)
            with autocast(dev, use_amp):
                out = net(batch["image"].to(dev).contiguous(memory_format=fmt))
            if use_amp:
                out = type(out)(*(o.float() for o in out))
            losses = ae_loss(out, heat.to(dev), batch["mask"].to(dev), idx.to(dev),
                             **epoch_loss_weights(profile, weights, epoch + 1))  # fmt: skip
            total = losses["total"].detach()
            if dist_info.distributed:  # every rank stops together: none waits in backward()
                total = torch.tensor(all_reduce_sum([total.item()], dist_info, dev)[0])
            check_finite(total, step=step + 1, epoch=epoch + 1, run_dir=run.path)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            step += 1
            n += 1
            values = {k: float(v.detach()) for k, v in losses.items()}
            for k in sums:
                sums[k] += values[k]
            first = values["total"] if n == 1 else first
            last = values["total"]
            bar.set_postfix(loss=f"{values['total']:.5f}")
        bar.close()
        if not dist_info.main:
            continue
        record = {"epoch": epoch + 1, "step": step, "batches": n}
        record.update({("loss" if k == "total" else k): s / max(n, 1) for k, s in sums.items()})
        record.update(
            {"loss_first_batch": first, "loss_last_batch": last,
             "seconds": round(time.perf_counter() - t0, 3)}
        )  # fmt: skip
        payload = checkpoint_payload(model=model, config=config, epoch=epoch + 1, step=step,
                                     optimizer=optimizer)  # fmt: skip
        # config.json with this invocation's first checkpoint, in one step (RunDir.commit)
        run.commit(payload, record, config=None if config_written else config, device=str(dev))
        config_written = True
    barrier(dist_info)
    return run.path


#: the input every AE network here reads: RGB scaled to [0, 1], NCHW (pose-ae-train's too, NHWC
#: at its door); an AE run's ``config.json`` may state it as ``input_convention``
INPUT_CONVENTION: str = "rgb01"


def load_ae(run_dir: PathLike, device: str | torch.device = "cpu") -> tuple[PoseNet, Profile]:
    """The AE network of a run (eval mode, newest checkpoint) and its profile: trained here
    or imported from pose-ae-train (:mod:`rnnpose.train.ae_import`; ``bn`` false)."""
    run = RunDir(run_dir)
    config = run.read_config()
    if config.get("method") != "ae":
        raise DataError(f"{run.config_path}: not an AE run (method {config.get('method')!r})")
    try:
        profile = Profile.from_dict(config["profile"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{run.config_path}: bad 'profile' field ({exc})") from None
    convention = config.get("input_convention", INPUT_CONVENTION)
    if convention != INPUT_CONVENTION:  # every loader feeds RGB in [0, 1] (data.coco, inference)
        raise DataError(f"{run.config_path}: field 'input_convention' must be "
                        f"{INPUT_CONVENTION!r} (RGB in [0, 1]), got {str(convention)[:40]!r}")
    if not isinstance(config.get("bn", True), bool):
        raise DataError(f"{run.config_path}: field 'bn' must be true or false")
    dev = _device(device)
    payload = load_checkpoint(run.last, map_location=dev)
    model = PoseNet(profile, bn=config.get("bn", True))
    restore_training_state(payload, model, rng=False, source=run.last)
    return model.to(dev).eval(), profile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--data", type=cli_types.existing_folder,
                        help="dataset folder holding annotations.json and images/")  # fmt: skip
    parser.add_argument("--ann", type=cli_types.existing_file,
                        help="COCO keypoint annotation file (real data)")  # fmt: skip
    parser.add_argument("--images", type=cli_types.existing_folder, help="image folder for --ann")
    parser.add_argument("--out", required=True, type=cli_types.output_folder, help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    parser.add_argument("--epochs", type=cli_types.integer(1),
                        help="total epochs (default: the profile's)")  # fmt: skip
    parser.add_argument("--seed", type=cli_types.seed, default=0)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--device", type=cli_types.device,
                        default="cuda" if torch.cuda.is_available() else "cpu")  # fmt: skip
    parser.add_argument("--workers", type=cli_types.integer(0), default=0,
                        help="DataLoader worker processes")  # fmt: skip
    parser.add_argument(
        "--tag-weight", type=cli_types.number(0.0),
        help="push and pull loss weight (default: AE's 1e-3)",
    )  # fmt: skip
    parser.add_argument("--amp", choices=SWITCH, default="auto",
                        help="bf16 autocast (auto: on for CUDA, off on the CPU)")  # fmt: skip
    parser.add_argument("--channels-last", choices=SWITCH, default="auto",
                        help="NHWC memory format (auto: on for CUDA, off on the CPU)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    try:
        out = train_ae(
            args.profile, args.data, args.out, resume=args.resume, seed=args.seed,
            quiet=args.quiet, epochs=args.epochs, device=args.device,
            ann_file=args.ann, image_root=args.images, num_workers=args.workers,
            tag_weight=args.tag_weight, amp=args.amp, channels_last=args.channels_last,
        )  # fmt: skip
    except NonFiniteLossError as exc:
        print(f"rnnpose train ae: {exc}", file=sys.stderr)
        return 1
    print(f"AE run: {out}")
    return 0
