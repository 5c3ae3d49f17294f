"""``rnnpose train rmpp``: train the recurrent decoder on a frozen AE (section 3.3, Algorithm 1).

The AE run's network is loaded frozen; its features for every training image are computed
once and cached (:mod:`rnnpose.features`), their per-channel statistics set FeatureNorm.
Training uses Adam at ``profile.rmpp_lr``, x0.1 from epoch ``profile.rmpp_lr_drop_epoch``
(epochs counted from 1). ``batch_size`` images are decoded in lock-step
(:func:`rnnpose.algorithm1.batched_step`; 1 = the literal Algorithm-1 loop); the gradient of a
batch is the SUM over its images. The image order and all per-image noise of epoch ``e`` are
functions of ``(seed, e)``, so ``--resume`` ends with the same weights as an uninterrupted run
(same device). A NaN/inf loss stops training before the optimiser step and names the step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from rnnpose import cli_types
from rnnpose.algorithm1 import StepConfig, batched_step, literal_step
from rnnpose.checkpoint import checkpoint_payload, load_checkpoint, restore_training_state
from rnnpose.config import PROFILES, Profile, get_profile
from rnnpose.features import FeatureSet, cache_key, extract_features
from rnnpose.io import DataError, PathLike
from rnnpose.losses.rmpp import LOSS_CONFIGS
from rnnpose.models.rmpp import RMPP, mix_seed
from rnnpose.orderings import ORDERINGS
from rnnpose.progress import progress
from rnnpose.targets import person_heatmaps, to_heatmap
from rnnpose.train.accel import (
    SWITCH,
    DistInfo,
    all_reduce_grads,
    all_reduce_sum,
    autocast,
    barrier,
    main_first,
    memory_format,
    resolve_switch,
    setup_distributed,
)
from rnnpose.train.common import NonFiniteLossError, RunDir, check_finite

#: The ablation switches of section 4 (None = the profile's value).
DEFAULT_OPTIONS: dict[str, Any] = {
    "T": None,  # within-image batch size (table 6)
    "sgd": "approx",  # "approx" (A-SGD) or "exact" (E-SGD)
    "loop": None,  # feedback passes per person (table 5)
    "ordering": "learned",  # LSTM2 input ordering (table 3)
    "loss_config": "aa'",  # count-mismatch configuration (table 4)
    "omega": None,  # stop threshold in training (figure 6)
    "lstm2_depth": None,  # LSTM2 layers (table 7)
    "use_lstm2": True,
    "batch_size": None,  # images in lock-step (profile.rmpp_batch_size)
    "epochs": None,  # total epochs (profile.rmpp_epochs)
    "max_images": None,  # train on the first N images only (the ablation budget)
    # the first N images (by id) of the annotation file as the data set: its features, their
    # statistics (FeatureNorm) and the training (max_images keeps the whole file's statistics)
    "subset": None,
    "max_iterations": None,  # decoder iterations per image, training and decoding
    "init": None,  # a run folder whose weights start this run (same names and shapes)
}


#: the least value of each integer option (checked with the others by :func:`check_options`)
OPTION_LEAST: dict[str, int] = {"T": 1, "loop": 0, "lstm2_depth": 1, "batch_size": 1,
                                "epochs": 1, "max_images": 1, "subset": 1,
                                "max_iterations": 1}  # fmt: skip


def apply_options(profile: Profile, options: dict[str, Any]) -> Profile:
    """The profile with the options that change model or schedule sizes applied."""
    fields = {"T": "T", "loop": "loop", "omega": "omega", "lstm2_depth": "lstm2_depth",
              "batch_size": "rmpp_batch_size", "epochs": "rmpp_epochs",
              "max_iterations": "max_iterations"}  # fmt: skip
    return profile.replace(
        **{f: options[o] for o, f in fields.items() if options.get(o) is not None}
    )


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise DataError(f"unknown RMPP option(s): {', '.join(unknown)}")
    opts = {**DEFAULT_OPTIONS, **options}
    if opts["sgd"] not in ("approx", "exact"):
        raise DataError(f"--sgd must be approx or exact, got {opts['sgd']!r}")
    if opts["ordering"] not in ORDERINGS:
        raise DataError(f"--ordering must be one of {', '.join(ORDERINGS)}")
    if opts["loss_config"] not in LOSS_CONFIGS:
        raise DataError(f"--loss-config must be one of {', '.join(LOSS_CONFIGS)}")
    if opts["init"] is not None:
        opts["init"] = str(opts["init"])
    for name, least in OPTION_LEAST.items():
        v = opts.get(name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < least):
            raise DataError(f"--{name.replace('_', '-')} must be an integer >= {least}, got "
                            f"{v!r}")  # fmt: skip
    omega = opts["omega"]
    if omega is not None and not (isinstance(omega, (int, float)) and not isinstance(omega, bool)
                                  and 0 < omega < 1):  # fmt: skip
        raise DataError(f"--omega must be a number in (0, 1), got {omega!r}")
    return opts


def warm_start(model: RMPP, run_dir: PathLike, device: torch.device | str = "cpu") -> list[str]:
    """Copy into ``model`` every weight of the run ``run_dir`` whose name and shape match
    (another LSTM2 depth keeps LSTM1, the stop head and the layers that fit); returns the names
    copied. The feature normalisation is not copied: it comes from the features."""
    payload = load_checkpoint(RunDir(run_dir).last, map_location=device)
    own = model.state_dict()
    take = {k: v for k, v in payload["model"].items()
            if k in own and own[k].shape == v.shape and not k.startswith("norm.")}  # fmt: skip
    if not take:
        raise DataError(f"{RunDir(run_dir).last}: no weight fits this model (--init)")
    model.load_state_dict(take, strict=False)
    return sorted(take)


def person_targets(keypoints: torch.Tensor, profile: Profile) -> torch.Tensor:
    """GT person heatmaps ``[Z,J,M,M]`` of keypoints in INPUT pixels (section 3.1.1)."""
    return person_heatmaps(to_heatmap(keypoints, profile.stride), profile.output_size,
                           profile.sigma)  # fmt: skip


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The image order of one epoch, a function of ``(seed, epoch)`` only."""
    gen = torch.Generator().manual_seed(mix_seed(seed, epoch))
    return torch.randperm(n, generator=gen).tolist()


def _resume_key(config: dict[str, Any]) -> dict[str, Any]:
    """What must not change on ``--resume`` (the epoch count may grow). The profile is compared
    with every field filled in, so a field added to ``Profile`` since the run started, at its
    default, does not block the resume."""
    prof = config.get("profile") or {}
    try:
        prof = Profile.from_dict(prof).to_dict()
    except (TypeError, ValueError, KeyError):
        pass  # compared as written
    prof = {k: v for k, v in prof.items() if k != "rmpp_epochs"}
    # an option added since the run started is compared at its default
    opts = {k: v for k, v in {**DEFAULT_OPTIONS, **(config.get("options") or {})}.items()
            if k != "epochs"}  # fmt: skip
    return {"method": config.get("method"), "profile": prof, "options": opts,
            "seed": config.get("seed")}  # fmt: skip


def _check_resume(payload: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """Refuse to resume a checkpoint whose settings differ from this run's."""
    old, new = _resume_key(payload["config"]), _resume_key(config)
    for key in new:
        if old.get(key) != new[key]:
            raise DataError(f"{path}: cannot resume: the run was started with a "
                            f"different {key!r}")  # fmt: skip


def _check_resume_features(old: dict[str, Any], ae_run: Path, cache: Path | None,
                           path: Path) -> None:
    """Refuse to resume a run on another AE network's features: another ``--ae`` folder, or
    the same folder whose weights (or the data) changed since (the feature cache's key hashes
    the AE checkpoint, the data path and the profile; ``cache`` None: the folder only, before
    anything is read). Runs written without these fields (by :func:`fit_rmpp` alone) are not
    compared."""
    if "ae_run" in old and old["ae_run"] != str(ae_run.resolve()):
        raise DataError(f"{path}: cannot resume: the run was started with a different 'ae_run' "
                        f"({old['ae_run']}, not {ae_run.resolve()})")  # fmt: skip
    if cache is None:  # called again once the cache key is known
        return
    if isinstance(old.get("features"), str) and Path(old["features"]).name != cache.name:
        raise DataError(f"{path}: cannot resume: the run was started with different "
                        "'features' (the AE run's weights or the data changed since)")  # fmt: skip


def _device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda requested but no CUDA device is available")
    return dev


def fit_rmpp(
    features: FeatureSet,
    profile: Profile,
    out_dir: PathLike,
    *,
    options: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    resume: bool = False,
    seed: int = 0,
    quiet: bool = False,
    device: str | torch.device = "cpu",
    amp: str | bool = "auto",
    channels_last: str | bool = "auto",
    dist_info: DistInfo | None = None,
) -> Path:
    """Train an RMPP decoder on cached features (the part of :func:`train_rmpp` after the AE).

    ``amp`` / ``channels_last``: ``auto`` (on for CUDA, off on the CPU), ``on`` or ``off``.
    Under ``torchrun`` (or with ``dist_info``) every batch is split over the processes
    (``batch[rank::world]``); each accumulates its images' gradients and the SUM over the
    processes (:func:`rnnpose.train.accel.all_reduce_grads`) is the batch's gradient, as in one
    process; only rank 0 writes the run folder.
    """
    opts = check_options(options or {})
    profile = apply_options(profile, opts)
    if dist_info is None:
        dist_info, dev = setup_distributed(_device(device))
    else:
        dev = _device(device)
    use_amp, use_cl = resolve_switch(amp, dev), resolve_switch(channels_last, dev)
    fmt = memory_format(use_cl)
    cfg = StepConfig.from_profile(profile, sgd=opts["sgd"], loss_config=opts["loss_config"],
                                  ordering=opts["ordering"])  # fmt: skip
    if features.features.shape[1] != profile.rmpp_in_channels:
        raise DataError(
            f"features have {features.features.shape[1]} channels, the profile expects "
            f"{profile.rmpp_in_channels} (nstack * feat_channels)"
        )
    run = RunDir(out_dir)
    run.check_target("rmpp", resume)  # no run is overwritten without --resume
    config = {"method": "rmpp", **(config or {}), "profile": profile.to_dict(),
              "options": opts, "seed": int(seed)}  # fmt: skip
    torch.manual_seed(seed)
    model = RMPP(profile, use_lstm2=bool(opts["use_lstm2"])).to(dev, memory_format=fmt)
    model.norm.set_stats(features.mean, features.var)
    opt = torch.optim.Adam(model.parameters(), lr=profile.rmpp_lr)
    start, step = 0, 0
    payload = run.resume_payload(resume)
    if payload is None and opts["init"]:
        config["init_weights"] = len(warm_start(model, opts["init"], dev))
    if payload is not None:
        _check_resume(payload, config, run.last)
        restore_training_state(payload, model, opt, source=run.last)
        start, step = int(payload["epoch"]), int(payload["step"])
    config_written = False  # written with the first checkpoint: a failed epoch 1 leaves nothing
    n, bsz = len(features), max(1, profile.rmpp_batch_size)
    if opts["max_images"]:
        n = min(n, int(opts["max_images"]))
    for epoch in range(start + 1, profile.rmpp_epochs + 1):
        lr = profile.rmpp_lr * (0.1 if epoch >= profile.rmpp_lr_drop_epoch else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        order = epoch_order(n, seed, epoch)
        sums = {"heatmap1": 0.0, "stop": 0.0, "heatmap2": 0.0, "total": 0.0}
        exact = 0
        t0 = time.perf_counter()
        batches = [order[i : i + bsz] for i in range(0, n, bsz)]
        bar = progress(batches, quiet=quiet or not dist_info.main, desc=f"rmpp epoch {epoch}",
                       unit="batch")  # fmt: skip
        for batch in bar:
            step += 1
            opt.zero_grad(set_to_none=True)
            idx = batch[dist_info.rank :: dist_info.world]  # this process's share
            res = {k: 0.0 for k in sums}
            n_exact = 0
            if idx:
                feats = features.features[idx].to(dev).float().contiguous(memory_format=fmt)
                gts = [person_targets(features.keypoints[i], profile).to(dev) for i in idx]
                seeds = [mix_seed(seed, epoch, i) for i in idx]
                with autocast(dev, use_amp):
                    if len(batch) == 1:
                        res = literal_step(model, feats, gts[0], cfg, seed=seeds[0])
                        per_image = [(res["iterations"], res["z_hat"])]
                    else:
                        res = batched_step(model, feats, gts, cfg, seeds=seeds)
                        per_image = res["per_image"]
                n_exact = sum(int(zh == g.shape[0])
                              for (_, zh), g in zip(per_image, gts, strict=True))  # fmt: skip
            *vals, n_exact = all_reduce_sum([*(res[k] for k in sums), n_exact], dist_info, dev)
            res = dict(zip(sums, vals, strict=True))
            check_finite(torch.tensor(res["total"]), step=step, epoch=epoch, run_dir=run.path)
            all_reduce_grads(model, dist_info)
            opt.step()
            for k in sums:
                sums[k] += res[k]
            exact += int(round(n_exact))
            bar.set_postfix(loss=f"{res['total'] / len(batch):.3f}")
        record = {"epoch": epoch, "step": step, "lr": lr,
                  **{k: v / n for k, v in sums.items()}, "count_exact": exact / n,
                  "images_per_s": n / max(time.perf_counter() - t0, 1e-9)}  # fmt: skip
        if not dist_info.main:
            continue
        payload = checkpoint_payload(model=model, config=config, epoch=epoch, step=step,
                                     optimizer=opt)  # fmt: skip
        # config.json with this invocation's first checkpoint, in one step (RunDir.commit)
        run.commit(payload, record, config=None if config_written else config, device=str(dev))
        config_written = True
    barrier(dist_info)
    return run.path


def train_rmpp(
    profile: str | Profile | None,
    ae_run: PathLike,
    data_dir: PathLike | None,
    out_dir: PathLike,
    resume: bool = False,
    seed: int = 0,
    quiet: bool = False,
    device: str | torch.device = "cpu",
    ann_file: PathLike | None = None,
    image_root: PathLike | None = None,
    amp: str | bool = "auto",
    channels_last: str | bool = "auto",
    **options: Any,
) -> Path:
    """Train (or continue) an RMPP run in ``out_dir`` on the frozen AE of ``ae_run``.

    ``profile`` None = the AE run's profile; a given profile must agree with the AE's on the
    feature geometry. ``options``: see :data:`DEFAULT_OPTIONS`. Returns ``out_dir``.
    """
    from rnnpose.data.coco import CocoPoseDataset
    from rnnpose.train.ae import data_paths, load_ae

    opts = check_options(options)
    dist_info, dev = setup_distributed(_device(device))
    run = RunDir(out_dir)
    run.check_target("rmpp", resume)  # before the features: no run is overwritten
    ae_model, ae_profile = load_ae(ae_run, dev)
    prof = ae_profile if profile is None else get_profile(profile)
    geometry = ("input_size", "output_size", "nstack", "feat_channels")
    bad = [g for g in geometry if getattr(prof, g) != getattr(ae_profile, g)]
    if bad:
        raise DataError(f"profile {prof.name!r} disagrees with the AE run {ae_run} on "
                        f"{', '.join(bad)}")  # fmt: skip
    payload = run.resume_payload(resume)  # a mismatched --resume is refused before extraction
    if payload is not None:
        _check_resume(payload, {"method": "rmpp", "profile": apply_options(prof, opts).to_dict(),
                                "options": opts, "seed": int(seed)}, run.last)  # fmt: skip
        _check_resume_features(payload["config"], Path(ae_run), None, run.last)
    if opts["init"]:
        RunDir(opts["init"]).read_config()
    ann_file, image_root = data_paths(data_dir, ann_file, image_root)
    dataset = CocoPoseDataset(ann_file, image_root, prof.input_size, prof.output_size,
                              train=False, max_people=prof.max_people,
                              subset=opts["subset"])  # fmt: skip
    dataset.verify_images()
    key = cache_key(RunDir(ae_run).last, ann_file, ae_profile, prof.rmpp_input,
                    subset=opts["subset"])  # fmt: skip
    cache = Path(ae_run) / "rmpp_features" / f"{key}.pt"
    if payload is not None:  # the decoder continues on the features it started on
        _check_resume_features(payload["config"], Path(ae_run), cache, run.last)
    with main_first(dist_info):  # rank 0 writes the cache, the others read it
        feats = extract_features(ae_model, dataset, batch_size=prof.ae_batch_size, device=dev,
                                 cache_file=cache, quiet=quiet or not dist_info.main,
                                 inputs=prof.rmpp_input)  # fmt: skip
    del ae_model
    config = {"ae_run": str(Path(ae_run).resolve()), "features": str(cache),
              "data": {"annotations": str(ann_file), "images": str(image_root)}}  # fmt: skip
    return fit_rmpp(feats, prof, out_dir, options=opts, config=config, resume=resume, seed=seed,
                    quiet=quiet, device=dev, amp=amp, channels_last=channels_last,
                    dist_info=dist_info)  # fmt: skip


def load_rmpp(
    run_dir: PathLike, device: str | torch.device = "cpu", *, with_ae: bool = True,
    checkpoint: str | None = None,
) -> tuple[RMPP, torch.nn.Module | None, Profile, dict[str, Any]]:
    """``(model, ae_model, profile, options)`` of a trained run (eval mode); the newest weights
    (``last.pt``) unless ``checkpoint`` names another file of the run (e.g. ``epoch_002.pt``)."""
    run = RunDir(run_dir)
    config = run.read_config()
    if config.get("method") != "rmpp":
        raise DataError(f"{run.config_path}: not an RMPP run (method {config.get('method')!r})")
    try:
        profile = Profile.from_dict(config["profile"])
        options = check_options(config.get("options", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{run.config_path}: bad config ({exc})") from None
    if with_ae and not isinstance(config.get("ae_run"), str):
        raise DataError(f"{run.config_path}: field 'ae_run' must name the AE run folder")
    dev = _device(device)
    model = RMPP(profile, use_lstm2=bool(options["use_lstm2"]))
    weights = run.path / checkpoint if checkpoint else run.last
    payload = load_checkpoint(weights, map_location=dev)
    restore_training_state(payload, model, rng=False, source=weights)
    ae_model = None
    if with_ae and config.get("ae_run"):
        from rnnpose.train.ae import load_ae

        ae_model = load_ae(config["ae_run"], dev)[0]
    return model.to(dev).eval(), ae_model, profile, options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ae", required=True, type=cli_types.run_folder,
                        help="the trained AE run folder")  # fmt: skip
    parser.add_argument("--profile", choices=sorted(PROFILES),
                        help="profile (default: the AE run's)")  # fmt: skip
    parser.add_argument("--data", type=cli_types.existing_folder,
                        help="dataset folder holding annotations.json and images/")  # fmt: skip
    parser.add_argument("--ann", type=cli_types.existing_file,
                        help="COCO keypoint annotation file (real data)")  # fmt: skip
    parser.add_argument("--images", type=cli_types.existing_folder, help="image folder for --ann")
    parser.add_argument("--out", required=True, type=cli_types.output_folder, help="run folder")
    parser.add_argument("--T", type=cli_types.integer(OPTION_LEAST["T"]),
                        help="within-image batch size of A-SGD (table 6)")  # fmt: skip
    parser.add_argument("--sgd", choices=("approx", "exact"), default="approx")
    parser.add_argument("--loop", type=cli_types.integer(OPTION_LEAST["loop"]),
                        help="feedback passes per person (table 5)")  # fmt: skip
    parser.add_argument("--ordering", choices=ORDERINGS, default="learned")
    parser.add_argument("--loss-config", choices=LOSS_CONFIGS, default="aa'")
    parser.add_argument("--omega", type=cli_types.number(0.0, 1.0, open_low=True, open_high=True),
                        help="stop threshold in training")  # fmt: skip
    parser.add_argument("--lstm2-depth", type=cli_types.integer(OPTION_LEAST["lstm2_depth"]),
                        help="LSTM2 layers (table 7)")  # fmt: skip
    parser.add_argument("--no-lstm2", action="store_true", help="LSTM1 only")
    parser.add_argument("--batch-size", type=cli_types.integer(OPTION_LEAST["batch_size"]),
                        help="images decoded in lock-step")  # fmt: skip
    parser.add_argument("--epochs", type=cli_types.integer(OPTION_LEAST["epochs"]),
                        help="total epochs (default: the profile's)")  # fmt: skip
    parser.add_argument("--max-images", type=cli_types.integer(OPTION_LEAST["max_images"]),
                        metavar="N", help="train on the first N images of the feature set "
                        "only; the features and their statistics still cover the whole "
                        "file (the ablation budget)")  # fmt: skip
    parser.add_argument("--subset", type=cli_types.integer(OPTION_LEAST["subset"]),
                        metavar="N", help="use only the first N images (by id) of the "
                        "annotation file: the AE features are computed for those alone "
                        "(cost and memory), their statistics and the training too")  # fmt: skip
    parser.add_argument("--max-iterations",
                        type=cli_types.integer(OPTION_LEAST["max_iterations"]), metavar="N",
                        help="most decoder iterations (people) per image, in training and "
                        "in every later eval/predict of the run (default: the profile's, "
                        "paper 30); recorded in the run's config.json")  # fmt: skip
    parser.add_argument("--init", type=cli_types.run_folder,
                        help="start from the weights of this RMPP run (warm start)")  # fmt: skip
    parser.add_argument("--seed", type=cli_types.seed, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--device", type=cli_types.device,
                        default="cuda" if torch.cuda.is_available() else "cpu")  # fmt: skip
    parser.add_argument("--amp", choices=SWITCH, default="auto",
                        help="bf16 autocast (auto: on for CUDA, off on the CPU)")  # fmt: skip
    parser.add_argument("--channels-last", choices=SWITCH, default="auto",
                        help="NHWC memory format (auto: on for CUDA, off on the CPU)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    options = {"T": args.T, "sgd": args.sgd, "loop": args.loop, "ordering": args.ordering,
               "loss_config": args.loss_config, "omega": args.omega,
               "lstm2_depth": args.lstm2_depth, "use_lstm2": not args.no_lstm2,
               "batch_size": args.batch_size, "epochs": args.epochs,
               "max_images": args.max_images, "init": args.init, "subset": args.subset,
               "max_iterations": args.max_iterations}  # fmt: skip
    try:
        out = train_rmpp(args.profile, args.ae, args.data, args.out, resume=args.resume,
                         seed=args.seed, quiet=args.quiet, device=args.device,
                         ann_file=args.ann, image_root=args.images, amp=args.amp,
                         channels_last=args.channels_last, **options)  # fmt: skip
    except NonFiniteLossError as exc:
        print(f"rnnpose train rmpp: {exc}", file=sys.stderr)
        return 1
    print(f"RMPP run: {out}")
    return 0
