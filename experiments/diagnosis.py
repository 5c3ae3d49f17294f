"""Why does the RMPP decoder trail AE's grouping? Training runs of the diagnosis (issue 16).

Each named setting below is one RMPP training run on a FIXED frozen AE network (the `cpu`
profile's, trained once by ``ae``), evaluated after the epochs asked for on both synthetic
splits. One JSON file per (setting, seed) is written to ``experiments/results/`` and read by the
book's diagnosis chapter; the runs themselves live under ``--root`` (any folder: the AE runs,
``ROOT/artifacts`` with the data, ``ROOT/runs``; required by every subcommand that trains or
evaluates). ``--results DIR`` writes (and ``table`` reads) the records elsewhere: a campaign on
another CPU model belongs in its own folder (e.g. ``experiments/results/epyc-avx512``), since the
same setting trains to other weights there and its runs need their own frozen AE. Bad input is
one line ``experiments/diagnosis.py: error: ...`` and exit 2.

    python experiments/diagnosis.py ae --seed 0 --root ROOT     # the frozen AE (cpu profile)
    python experiments/diagnosis.py run b1-400 --seed 0 --root ROOT   # one setting
    python experiments/diagnosis.py list                        # the registry
    python experiments/diagnosis.py table                       # every results file, one line each

Budgets are stated per setting: training images x epochs, Adam steps, wall time, threads, CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rnnpose import cli_types  # noqa: E402
from rnnpose.analysis import count_errors, joint_errors  # noqa: E402
from rnnpose.checkpoint import CheckpointError  # noqa: E402
from rnnpose.config import get_profile  # noqa: E402
from rnnpose.evaluate import evaluate_keypoints  # noqa: E402
from rnnpose.experiments import Experiment, check_resume_machine  # noqa: E402
from rnnpose.io import DataError, atomic_write_json, cpu_model, env_stamp, read_json  # noqa: E402
from rnnpose.predict import predict_split  # noqa: E402
from rnnpose.results import is_number  # noqa: E402
from rnnpose.train.common import RunDir  # noqa: E402

RESULTS = ROOT / "experiments" / "results"
#: ``--root``/artifacts: set by :func:`main` from ``--root`` for every subcommand that uses it
ROOT_ARTIFACTS: Path | None = None
#: the subcommands that read or write under ``--root`` (the AE runs, the data, the runs)
NEEDS_ROOT = ("ae", "ae-eval", "ae-grid", "run", "relog")
#: ``val`` (held-out images drawn like ``train``) chooses settings; the other two are reported
SPLITS = ("val", "sparse", "occluded")

#: what every setting starts from: the `cpu` profile as its main run was trained when the
#: settings were registered, with the repository's per-person heatmap-loss scale, pinned so
#: that each record keeps the meaning it was made with whatever scale the profiles train with
#: (issue 22 chose the plain sum: ``cpu-sum``)
BASE: dict[str, Any] = {"rmpp_heatmap_norm": "person"}

#: setting -> what changes against the `cpu` profile's main run (on :data:`BASE`). ``profile``:
#: profile fields; ``options``: `rnnpose train rmpp` options; ``images``: the first N training
#: images (None: all).
SETTINGS: dict[str, dict[str, Any]] = {
    # (b) optimiser steps: lock-step batch size
    "b8-400": {"desc": "cpu profile as it was (lock-step batch 8), 400 images",
               "options": {"batch_size": 8}, "images": 400, "epochs": 3},
    "b1-400": {"desc": "batch 1 (the paper's), 400 images",
               "options": {"batch_size": 1}, "images": 400, "epochs": 3},
    "b2p-400": {"desc": "batch 2 as two one-thread processes, 400 images",
                "options": {"batch_size": 2}, "procs": 2, "images": 400, "epochs": 3},
    # (c) width: LSTM1 68 -> 34 -> 17, LSTM2 34 -> 17 (every last layer keeps J = 17 channels)
    "b1w-400": {"desc": "batch 1, LSTM1 68-34-17 and LSTM2 34-17, 400 images",
                "profile": {"lstm1_hidden": 68, "lstm2_hidden": 34},
                "options": {"batch_size": 1}, "images": 400, "epochs": 3},
    # (d) aids for picking ONE person (beyond the paper)
    "b1-emit-400": {"desc": "batch 1 + emitted-heatmap memory input (beyond the paper), 400",
                    "profile": {"rmpp_emitted": True},
                    "options": {"batch_size": 1}, "images": 400, "epochs": 3},
    "b1-ctx-400": {"desc": "batch 1 + 8 global-context channels (beyond the paper), 400",
                   "profile": {"rmpp_context": 8},
                   "options": {"batch_size": 1}, "images": 400, "epochs": 3},
    "b1-xy-400": {"desc": "batch 1 + coordinate channels (beyond the paper), 400 images",
                  "profile": {"rmpp_coords": True},
                  "options": {"batch_size": 1}, "images": 400, "epochs": 3},
    "b1-tags-400": {"desc": "batch 1 + AE's last-stack tags as input (beyond the paper), 400",
                    "profile": {"rmpp_input": "features+tags"},
                    "options": {"batch_size": 1}, "images": 400, "epochs": 3},
    "b1-ce-400": {"desc": "batch 1 + global context + emitted memory (beyond the paper), 400",
                  "profile": {"rmpp_context": 8, "rmpp_emitted": True},
                  "options": {"batch_size": 1}, "images": 400, "epochs": 3},
    # (b) equal wall time on all 1,200 training images: quiet 2-core throughputs measured with
    # benchmarks/train_throughput.py -- batch 1 on one thread 2.38 images/s, lock-step batch 8
    # on two threads 3.57, batch 2 as two one-thread processes 4.63 -- give b8 1.5x and b2p 1.9x
    # the images of b1 in the same time (rounded up to whole epochs: 5 and 6 against 3).
    "b1-1200": {"desc": "batch 1, all 1,200 images, 3 epochs",
                "options": {"batch_size": 1}, "epochs": 3},
    "b8-1200": {"desc": "lock-step batch 8, all images, 5 epochs (b1's wall time x1.5)",
                "options": {"batch_size": 8}, "epochs": 5},
    "b2p-1200": {"desc": "batch 2 as two one-thread processes, all images, 6 epochs "
                 "(b1's wall time x1.9)", "options": {"batch_size": 2}, "procs": 2, "epochs": 6,
                 "eval_splits": ("sparse", "occluded")},
    # the cpu profile's main run as the book trains it (batch 2 shared by two one-thread
    # processes, 1,200 images x 3 epochs, lr drop at epoch 3): seeds 0, 1, 2 give the main
    # comparison's seed-to-seed spread (rnnpose.diagnosis.seed_spread)
    "cpu-main": {"desc": "cpu profile main run (per-person heatmap scale, the profile's until "
                 "issue 22): batch 2 as two one-thread processes, all images, 2 epochs at lr 1e-3",
                 "options": {"batch_size": 2}, "procs": 2,
                 "epochs": 2, "lr_drop": 3},
    # the same with the learning rate x0.1 in epoch 2 (what the profile first had): val chose
    # the schedule without the drop (4.7 vs 4.1 AP, seed 0)
    "cpu-drop2": {"desc": "the same, lr x0.1 in epoch 2", "options": {"batch_size": 2},
                  "procs": 2, "epochs": 2},
    # longer budgets of the same setting: 3 epochs (lr drop at 3), continued to 5 epochs
    # (epochs 4-5 at the dropped rate; the paper's schedule has the same shape: 9 epochs,
    # drop at 4). Trained while the ablation budget was 120 images (no effect on these runs;
    # the profile field is kept so the continuation resumes the same run)
    "cpu-e3": {"desc": "the same, 3 epochs (lr drop at 3)", "options": {"batch_size": 2},
               "procs": 2, "epochs": 3, "profile": {"rmpp_ablation_images": 120,
                                                    "rmpp_ablation_eval": 0}},
    "cpu-e5": {"desc": "the same, continued to 5 epochs (epochs 4-5 at the dropped rate)",
               "options": {"batch_size": 2}, "procs": 2, "epochs": 5, "lr_drop": 3,
               "profile": {"rmpp_ablation_images": 120, "rmpp_ablation_eval": 0},
               "curve_from": "cpu-e3"},
    # learning rate (the cpu profile's 1e-3; the paper's 1e-4 at batch 1 on 576k steps)
    "b1-lr3e-4-400": {"desc": "batch 1, Adam lr 3e-4 (cpu profile: 1e-3), 400 images",
                      "profile": {"rmpp_lr": 3e-4},
                      "options": {"batch_size": 1}, "images": 400, "epochs": 3},
    "b1-lr3e-3-400": {"desc": "batch 1, Adam lr 3e-3, 400 images", "profile": {"rmpp_lr": 3e-3},
                      "options": {"batch_size": 1}, "images": 400, "epochs": 3},
    # can the decoder fit a few images at all? (training loss only; capacity vs. budget)
    "b1-fit16": {"desc": "batch 1 on the first 16 images for 60 epochs (can it fit them?)",
                 "options": {"batch_size": 1}, "images": 16, "epochs": 60, "lr_drop": 50},
    "b1w-fit16": {"desc": "same, LSTM1 68-34-17 and LSTM2 34-17",
                  "profile": {"lstm1_hidden": 68, "lstm2_hidden": 34},
                  "options": {"batch_size": 1}, "images": 16, "epochs": 60, "lr_drop": 50},
    # the weight of the heatmap terms against the stop term (the repository's normalisation
    # makes an empty person cost 1, like the stop BCE at chance; the paper's plain pixel sum
    # makes it J pi sigma^2 = 53 times more)
    "b1-fit16-joint": {"desc": "fit 16 images, heatmap loss normalised per joint (x17)",
                       "profile": {"rmpp_heatmap_norm": "joint"},
                       "options": {"batch_size": 1}, "images": 16, "epochs": 60, "lr_drop": 50},
    "b1-fit16-sum": {"desc": "fit 16 images, heatmap loss = plain pixel sum (x53, the paper)",
                     "profile": {"rmpp_heatmap_norm": "sum"},
                     "options": {"batch_size": 1}, "images": 16, "epochs": 60, "lr_drop": 50},
    "b1-sum-400": {"desc": "batch 1, heatmap loss = plain pixel sum (the paper's l2), 400",
                   "profile": {"rmpp_heatmap_norm": "sum"},
                   "options": {"batch_size": 1}, "images": 400, "epochs": 3},
    "b1-joint-400": {"desc": "batch 1, heatmap loss normalised per joint (x17), 400 images",
                     "profile": {"rmpp_heatmap_norm": "joint"},
                     "options": {"batch_size": 1}, "images": 400, "epochs": 3},
    # the same question on the cpu profile's main run (all 1,200 images, batch 2 in two
    # one-thread processes, 2 epochs at lr 1e-3): compare with cpu-main's seeds (issue 22)
    "cpu-sum": {"desc": "cpu-main with the heatmap loss = plain pixel sum (the paper's l2)",
                "profile": {"rmpp_heatmap_norm": "sum"}, "options": {"batch_size": 2},
                "procs": 2, "epochs": 2, "lr_drop": 3},
    "cpu-joint": {"desc": "cpu-main with the heatmap loss normalised per joint (x17)",
                  "profile": {"rmpp_heatmap_norm": "joint"}, "options": {"batch_size": 2},
                  "procs": 2, "epochs": 2, "lr_drop": 3},
    # the long budget (issue 22): the long profile's decoder schedule (8 epochs, 4,800 Adam
    # steps, constant rate) on this script's frozen AE, evaluated after every epoch (--curve):
    # the paper's setting, and beside it the aid chapter 10 found most promising and the
    # loss scales of section 7 (two seeds each)
    "long-main": {"desc": "the long budget: cpu-main for 8 epochs (4,800 Adam steps)",
                  "options": {"batch_size": 2}, "procs": 2, "epochs": 8, "lr_drop": 9},
    "long-emit": {"desc": "long-main + emitted-heatmap memory input (beyond the paper)",
                  "profile": {"rmpp_emitted": True}, "options": {"batch_size": 2},
                  "procs": 2, "epochs": 8, "lr_drop": 9},
    "long-sum": {"desc": "long-main with the heatmap loss = plain pixel sum (the paper's l2)",
                 "profile": {"rmpp_heatmap_norm": "sum"}, "options": {"batch_size": 2},
                 "procs": 2, "epochs": 8, "lr_drop": 9},
    "long-joint": {"desc": "long-main with the heatmap loss normalised per joint (x17)",
                   "profile": {"rmpp_heatmap_norm": "joint"}, "options": {"batch_size": 2},
                   "procs": 2, "epochs": 8, "lr_drop": 9},
    # the aid at the long budget on the scale the profiles train with since issue 22 (item 6)
    "long-sum-emit": {"desc": "long-sum + emitted-heatmap memory input (beyond the paper)",
                      "profile": {"rmpp_heatmap_norm": "sum", "rmpp_emitted": True},
                      "options": {"batch_size": 2}, "procs": 2, "epochs": 8, "lr_drop": 9},
    # selection needs something non-local: AE's tags (a per-person code) + global context (a
    # broadcast maximum) + the emitted memory, together
    "b1-fit16-tce": {"desc": "fit 16 images, + tags input, global context, emitted memory",
                     "profile": {"rmpp_input": "features+tags", "rmpp_context": 8,
                                 "rmpp_emitted": True},
                     "options": {"batch_size": 1}, "images": 16, "epochs": 60, "lr_drop": 50},
    "b1-fit16-tcej": {"desc": "fit 16 images, tags + context + memory, per-joint heatmap norm",
                      "profile": {"rmpp_input": "features+tags", "rmpp_context": 8,
                                  "rmpp_emitted": True, "rmpp_heatmap_norm": "joint"},
                      "options": {"batch_size": 1}, "images": 16, "epochs": 60, "lr_drop": 50},
    "b1-tce-400": {"desc": "batch 1 + tags input, global context, emitted memory, 400",
                   "profile": {"rmpp_input": "features+tags", "rmpp_context": 8,
                               "rmpp_emitted": True},
                   "options": {"batch_size": 1}, "images": 400, "epochs": 3},
}  # fmt: skip


#: AE variants for the fair-baseline question (``ae --variant``): profile fields changed.
AE_VARIANTS: dict[str, dict[str, Any]] = {
    "cpu": {},
    "tw05": {"ae_tag_weight_late": 0.05, "ae_tag_late_epoch": 11},  # stronger push/pull late
    "e30": {"ae_epochs": 30, "ae_lr_drop_epoch": 26},  # 1.5x the training
}


def ae_dir(root: Path, seed: int, variant: str = "cpu") -> Path:
    return root / (f"ae-s{seed}" if variant == "cpu" else f"ae-{variant}-s{seed}")


def split_metrics(run: Path, exp: Experiment, split: str, method: str | None = None,
                  checkpoint: str | None = None) -> dict[str, Any]:  # fmt: skip
    sp = exp.split(split)
    results = predict_split(run, sp.ann_file, sp.image_root, method=method, quiet=True,
                            checkpoint=checkpoint)  # fmt: skip
    m = evaluate_keypoints(sp.ann_file, results)
    errs = count_errors(sp.ann_file, results, 0.1 if method == "ae" else 0.0)
    n = sum(errs.values())
    joints = joint_errors(sp.ann_file, results, unit=float(exp.profile.stride))
    return {"AP": m["AP"], "AP50": m["AP50"], "AP75": m["AP75"], "AR": m["AR"],
            "count_exact": errs.get(0, 0) / n, "count_over": sum(v for k, v in errs.items()
                                                                 if k > 0) / n,
            "count_under": sum(v for k, v in errs.items() if k < 0) / n,
            "joints": joints}  # fmt: skip


def train_ae_run(args: argparse.Namespace) -> None:
    from rnnpose.train.ae import train_ae

    exp = Experiment("cpu", artifacts=args.root / "artifacts", quiet=True)
    tr = exp.split("train")
    out = ae_dir(args.root, args.seed, args.variant)
    prof = get_profile("cpu", **AE_VARIANTS[args.variant])
    check_resume_machine(out)  # an interrupted run resumes on its own CPU model only
    t0 = time.perf_counter()
    train_ae(prof, None, out, seed=args.seed, quiet=True, ann_file=tr.ann_file,
             image_root=tr.image_root, resume=(out / "last.pt").exists())  # fmt: skip
    record = {"setting": "ae", "variant": args.variant, "changes": AE_VARIANTS[args.variant],
              "seed": args.seed, "train_seconds": time.perf_counter() - t0,
              "splits": {s: split_metrics(out, exp, s, "ae") for s in SPLITS},
              "threads": torch.get_num_threads(), "cpu": cpu_model(),
              "env": env_stamp("cpu")}  # fmt: skip
    atomic_write_json(RESULTS / f"{out.name}.json", record)
    print(json.dumps(record["splits"]))


def eval_ae(args: argparse.Namespace) -> None:
    """AE's grouping next to the same heatmaps grouped by the ground truth, and its tag quality
    (the fair-baseline question of issue 16), per split; written to ``ae-sSEED-eval.json``."""
    from rnnpose.analysis import oracle_results, tag_quality

    exp = Experiment("cpu", artifacts=args.root / "artifacts", quiet=True)
    ae = args.run or ae_dir(args.root, args.seed, args.variant)
    record: dict[str, Any] = {"run": str(ae), "seed": args.seed, "splits": {},
                              "threads": torch.get_num_threads(), "cpu": cpu_model()}  # fmt: skip
    for split in SPLITS:
        sp = exp.split(split)
        ann = sp.ann_file
        ora = oracle_results(ae, ann, sp.image_root, quiet=True)
        res = predict_split(ae, ann, sp.image_root, method="ae", quiet=True)
        record["splits"][split] = {
            "ae": evaluate_keypoints(ann, res), "oracle": evaluate_keypoints(ann, ora),
            "tags": tag_quality(ae, ann, sp.image_root),
            "ae_joints": joint_errors(ann, res, unit=4.0),
        }  # fmt: skip
        print(split, json.dumps(record["splits"][split]), flush=True)
    name = args.name or ae.name
    atomic_write_json(RESULTS / f"{name}-eval.json", record)


def grid_ae(args: argparse.Namespace) -> None:
    """AE's grouping thresholds chosen on ``val`` (tag threshold x detection threshold), then the
    chosen pair on the reported splits; written to ``ae-sSEED-grid.json``."""
    exp = Experiment("cpu", artifacts=args.root / "artifacts", quiet=True)
    ae = args.run or ae_dir(args.root, args.seed, args.variant)
    val = exp.split("val")
    grid = []
    for tag_t in (0.5, 1.0, 1.5, 2.0):
        for det_t in (0.05, 0.1, 0.2):
            res = predict_split(ae, val.ann_file, val.image_root, method="ae", quiet=True,
                                tag_threshold=tag_t, detection_threshold=det_t)  # fmt: skip
            m = evaluate_keypoints(val.ann_file, res)
            grid.append({"tag_threshold": tag_t, "detection_threshold": det_t, "val_AP": m["AP"]})
            print(grid[-1], flush=True)
    best = max(grid, key=lambda g: g["val_AP"])
    kw = {k: best[k] for k in ("tag_threshold", "detection_threshold")}
    chosen = {}
    for split in ("sparse", "occluded"):
        sp = exp.split(split)
        res = predict_split(ae, sp.ann_file, sp.image_root, method="ae", quiet=True, **kw)
        chosen[split] = evaluate_keypoints(sp.ann_file, res)
    name = args.name or ae.name
    atomic_write_json(RESULTS / f"{name}-grid.json", {"run": str(ae), "grid": grid,
                                                      "chosen": kw, "splits": chosen})  # fmt: skip
    print(kw, json.dumps(chosen))


def setting_profile(spec: dict[str, Any]) -> Any:
    """The `cpu` profile a setting trains with: :data:`BASE`, then the setting's changes."""
    return get_profile("cpu", **{**BASE, **spec.get("profile", {})})


def run_setting(args: argparse.Namespace) -> None:
    from rnnpose.train.rmpp import train_rmpp

    spec = SETTINGS[args.name]
    exp = Experiment("cpu", artifacts=args.root / "artifacts", quiet=True)
    tr = exp.split("train")
    ae = ae_dir(args.root, args.ae_seed)
    prof = setting_profile(spec)
    epochs = int(args.epochs or spec["epochs"])
    prof = prof.replace(rmpp_epochs=epochs, rmpp_lr_drop_epoch=spec.get("lr_drop", epochs))
    out = args.root / "runs" / f"{args.name}-s{args.seed}"
    check_resume_machine(out)  # an interrupted run resumes on its own CPU model only
    t0 = time.perf_counter()
    kwargs = dict(profile=prof, ae_run=ae, data_dir=None, out_dir=out, seed=args.seed,
                  quiet=True, ann_file=tr.ann_file, image_root=tr.image_root,
                  resume=(out / "last.pt").exists(), max_images=spec.get("images"),
                  **spec.get("options", {}))  # fmt: skip
    procs = int(spec.get("procs", 1))
    if procs > 1:  # torchrun's layout from Python: the batch split over one-thread processes
        from rnnpose.train.accel import run_processes

        run_processes(train_rmpp, procs, threads=1, **kwargs)
    else:
        train_rmpp(**kwargs)
    wall = time.perf_counter() - t0
    log = RunDir(out).read_log()
    curve = []
    every = set(range(1, epochs + 1)) if args.curve else {epochs}
    if "curve_from" in spec:  # the epochs an earlier record of this run evaluated
        earlier_path = RESULTS / f"{spec['curve_from']}-s{args.seed}.json"
        earlier = read_json(earlier_path)
        if not isinstance(earlier, dict) or not isinstance(earlier.get("curve"), list):
            raise DataError(f"{earlier_path}: field 'curve' must be a list")
        curve = list(earlier["curve"])
        every -= {p["epoch"] for p in curve}
    for rec in log:
        if rec["epoch"] not in every:
            continue
        ck = f"epoch_{rec['epoch']:03d}.pt"
        curve.append({"epoch": rec["epoch"], "step": rec["step"], "loss": rec["total"],
                      "train_count_exact": rec["count_exact"],
                      "images_per_s": rec["images_per_s"],
                      "splits": {s: split_metrics(out, exp, s, checkpoint=ck)
                                 for s in spec.get("eval_splits", SPLITS)}})  # fmt: skip
        print(rec["epoch"], {s: round(v["AP"], 1) for s, v in curve[-1]["splits"].items()},
              flush=True)
    images = min(spec.get("images") or prof.n_train, prof.n_train)
    record = {"setting": args.name, "desc": spec["desc"], "seed": args.seed,
              "ae_seed": args.ae_seed, "profile_changes": spec.get("profile", {}),
              "options": spec.get("options", {}), "procs": procs, "images": images,
              "epochs": epochs,
              "adam_steps": log[-1]["step"], "train_seconds": wall,
              "seconds_per_epoch": [round(1 / r["images_per_s"] * images, 1) for r in log],
              "curve": curve, "final": curve[-1]["splits"], "log": log,
              "threads": torch.get_num_threads(), "cpu": cpu_model(),
              "env": env_stamp("cpu")}  # fmt: skip
    record["loss_levels"] = loss_levels(images, spec.get("profile", {}))
    atomic_write_json(RESULTS / f"{args.name}-s{args.seed}.json", record)


def loss_levels(images: int, changes: dict[str, Any] | None = None) -> dict[str, float]:
    """Reference levels of the per-image heatmap loss (LSTM1's term, the profile's
    normalisation) on the first ``images`` training images, from their targets: an empty
    prediction for every person (``zero``), and the same map -- the mean of all people's --
    emitted for every person (``hedge``: the decoder draws everyone at 1/Z amplitude instead
    of picking one)."""
    from rnnpose.data.coco import CocoPoseDataset
    from rnnpose.losses.rmpp import heatmap_loss, heatmap_scale
    from rnnpose.train.rmpp import person_targets

    prof = get_profile("cpu", **{**BASE, **(changes or {})})  # the setting's normalisation
    if ROOT_ARTIFACTS is None:
        raise DataError("--root: not set (main() sets it for every subcommand that needs it)")
    tr = Experiment("cpu", artifacts=ROOT_ARTIFACTS, quiet=True).split("train")
    ds = CocoPoseDataset(tr.ann_file, tr.image_root, prof.input_size, prof.output_size,
                         train=False, max_people=prof.max_people)  # fmt: skip
    scale = heatmap_scale(prof.sigma, prof.num_joints, prof.rmpp_heatmap_norm)
    zero = hedge = people = 0.0
    for i in range(images):
        gt = person_targets(ds[i]["keypoints"].float(), prof)
        mean = gt.mean(0, keepdim=True).expand_as(gt)
        zero += float(heatmap_loss(torch.zeros_like(gt), gt, scale))
        hedge += float(heatmap_loss(mean, gt, scale))
        people += gt.shape[0]
    return {"zero": zero / images, "hedge": hedge / images, "people": people / images}


def relog(args: argparse.Namespace) -> None:
    """Add a finished run's per-epoch training log (losses, exact-count rate) to its record,
    and the reference levels of its heatmap loss (:func:`loss_levels`)."""
    path = RESULTS / f"{args.name}-s{args.seed}.json"
    record = read_json(path)
    if not isinstance(record, dict) or not _is_count(record.get("images")):
        raise DataError(f"{path}: field 'images' must be an integer >= 1")
    record["log"] = RunDir(args.root / "runs" / f"{args.name}-s{args.seed}").read_log()
    record["loss_levels"] = loss_levels(int(record["images"]), record.get("profile_changes"))
    atomic_write_json(path, record)


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 1


def table_row(path: Path) -> str | None:
    """One line of ``table`` for a results file (None: a record without AP per split, e.g. an
    ``-eval.json``); a file that is not JSON, or whose fields are of the wrong type, is a
    :class:`DataError` naming the file and the field."""
    r = read_json(path)
    if not isinstance(r, dict):
        raise DataError(f"{path}: expected a JSON object, got a {type(r).__name__}")
    key = "final" if r.get("final") else "splits"
    fin = r.get(key)
    if not fin:
        return None
    if not isinstance(fin, dict) or not all(isinstance(v, dict) for v in fin.values()):
        raise DataError(f"{path}: field {key!r} must map each split to an object of metrics")
    if "AP" not in next(iter(fin.values())):
        return None
    for split, v in fin.items():
        for metric in ("AP", "AP50", "AP75"):
            if not is_number(v.get(metric)):
                raise DataError(f"{path}: field '{key}.{split}.{metric}' must be a number, got "
                                f"{repr(v.get(metric))[:40]}")  # fmt: skip
        if "count_exact" in v and not is_number(v["count_exact"]):
            raise DataError(f"{path}: field '{key}.{split}.count_exact' must be a number")
    seconds = r.get("train_seconds", 0)
    if not is_number(seconds):
        raise DataError(f"{path}: field 'train_seconds' must be a number")
    cells = "  ".join(f"{s[:3]} {v['AP']:5.1f} ({v['AP50']:4.1f}/{v['AP75']:4.1f}) "
                      f"n={v.get('count_exact', float('nan')):.2f}"
                      for s, v in fin.items())  # fmt: skip
    return f"{path.stem:28s} {seconds:6.0f}s  {cells}"


def table(_: argparse.Namespace) -> None:
    """Every results file, one line each (all are checked before the first line is printed)."""
    rows = [table_row(path) for path in sorted(RESULTS.glob("*.json"))]
    for row in rows:
        if row is not None:
            print(row)


def build_parser() -> argparse.ArgumentParser:
    """The command line: errors are one line, ``experiments/diagnosis.py: error: ...``."""
    p = cli_types.OneLineParser(prog="experiments/diagnosis.py",
                                description=__doc__.splitlines()[0])  # fmt: skip
    p.add_argument("what", choices=["ae", "ae-eval", "ae-grid", "run", "relog", "list", "table"])
    p.add_argument("name", nargs="?")
    p.add_argument("--seed", type=cli_types.seed, default=0)
    p.add_argument("--ae-seed", type=cli_types.seed, default=0)
    p.add_argument("--epochs", type=cli_types.integer(1))
    p.add_argument("--curve", action="store_true", help="evaluate after every epoch")
    p.add_argument("--threads", type=cli_types.integer(1), default=1)
    p.add_argument("--root", type=Path,
                   help="the folder of the AE runs, the data (ROOT/artifacts) and the runs; "
                   "required by " + ", ".join(NEEDS_ROOT))  # fmt: skip
    p.add_argument("--results", type=cli_types.output_folder, default=RESULTS,
                   help="the folder of the records (default experiments/results; a campaign on "
                   "another CPU model: a folder of its own)")  # fmt: skip
    p.add_argument("--run", type=cli_types.run_folder,
                   help="ae-eval, ae-grid: another AE run folder")  # fmt: skip
    p.add_argument("--variant", default="cpu", choices=sorted(AE_VARIANTS), help="ae: AE variant")
    return p


def check_args(args: argparse.Namespace) -> None:
    """What argparse cannot check alone: --root where it is needed (a folder, or a path that
    can be made one), a known setting for ``run``, a name and its results file for ``relog``."""
    if args.what in NEEDS_ROOT:
        if args.root is None:
            raise DataError(f"--root: required by {args.what!r} (the folder that holds, or is "
                            "to hold, the AE runs, ROOT/artifacts and ROOT/runs)")  # fmt: skip
        try:
            cli_types.output_folder(str(args.root))
        except argparse.ArgumentTypeError as exc:
            raise DataError(f"--root: {exc}") from None
    if args.what in ("run", "relog"):
        if not args.name:
            raise DataError(f"{args.what}: name a setting (see `list`)")
        if args.name not in SETTINGS:
            raise DataError(f"{args.what}: unknown setting {args.name!r} (see `list`)")
    if args.what == "run" or (args.what in ("ae-eval", "ae-grid") and args.run is None):
        seed = args.ae_seed if args.what == "run" else args.seed
        RunDir(ae_dir(args.root, seed, "cpu" if args.what == "run" else args.variant)
               ).read_config()  # the frozen AE must be there before any data is made
    if args.what == "run" and "curve_from" in SETTINGS[args.name]:
        earlier = RESULTS / f"{SETTINGS[args.name]['curve_from']}-s{args.seed}.json"
        if not earlier.is_file():
            raise DataError(f"{earlier}: no such results file (setting {args.name!r} continues "
                            "its curve)")  # fmt: skip
    if args.what == "relog":
        path = RESULTS / f"{args.name}-s{args.seed}.json"
        if not path.is_file():
            raise DataError(f"{path}: no such results file (relog adds to a finished run's)")


def main(argv: list[str] | None = None) -> int:
    """Parse, check and run one subcommand; bad input is one line on stderr and exit 2."""
    global ROOT_ARTIFACTS, RESULTS
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # one line already printed (or --help)
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    try:
        RESULTS = args.results
        check_args(args)
        ROOT_ARTIFACTS = args.root / "artifacts" if args.root is not None else None
        torch.set_num_threads(args.threads)
        if args.what == "list":
            for k, v in SETTINGS.items():
                print(f"{k:20s} {v['desc']}")
        elif args.what == "table":
            table(args)
        elif args.what == "ae":
            train_ae_run(args)
        elif args.what == "ae-eval":
            eval_ae(args)
        elif args.what == "ae-grid":
            grid_ae(args)
        elif args.what == "relog":
            relog(args)
        else:
            run_setting(args)
    except (DataError, CheckpointError) as exc:
        print(f"{parser.prog}: error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
