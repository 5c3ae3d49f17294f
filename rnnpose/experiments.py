"""Named, cached runs for the notebooks: train-or-load, evaluate, sweep.

A run's folder name carries a hash of everything that determines its weights: the profile,
the options, the seed, the training data and the version of the training code. Asking for the
same run again loads it; asking after an interrupt resumes it from its last checkpoint (the
training loops write one atomically after every epoch). Evaluations are cached the same way,
stamped with the environment. A GPU papermill run with the same parameters fills the same
cache that the book reads.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rnnpose.config import Profile, ae_fields, get_profile
from rnnpose.io import DataError, atomic_write_json, env_stamp, read_json

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"

#: Modules that do not change what a training run learns (presentation and orchestration).
_NOT_TRAINING = {"viz.py", "book.py", "paper.py", "experiments.py", "cli.py", "predict.py",
                 "decode.py", "grouping.py", "evaluate.py", "inference.py",
                 "progress.py", "results.py", "diagnosis.py", "analysis.py", "tables.py",
                 "charts.py", "curves.py"}  # fmt: skip
#: Modules that do not change what an evaluation measures.
_NOT_EVALUATION = {"viz.py", "book.py", "paper.py", "experiments.py", "cli.py", "progress.py",
                   "results.py", "diagnosis.py", "tables.py", "charts.py",
                   "curves.py"}  # fmt: skip


def check_resume_machine(run: Path, device: str = "cpu") -> None:
    """Refuse (:class:`DataError`, before anything is written) to resume an interrupted CPU
    training run on another CPU model than the one it started on (its ``config.json`` names
    it): the same commit trains to other weights on each, so a run resumed there would be
    neither machine's. A finished run (``done.json``), a folder without a run and a CUDA
    device pass."""
    from rnnpose.io import cpu_model

    cfg = run / "config.json"
    if not str(device).startswith("cpu") or (run / "done.json").exists() or not cfg.is_file():
        return
    config = read_json(cfg)
    env = config.get("env") if isinstance(config, dict) else None
    then = env.get("cpu") if isinstance(env, dict) else None
    now = cpu_model()
    if then and then != now:
        raise DataError(f"{cfg}: field 'env.cpu': this interrupted run started on {then}, and "
                        f"this machine is {now}; resuming it here would mix two CPU models' "
                        "training. Finish it on that machine, or delete the folder to train "
                        "it again here")  # fmt: skip


def check_resumable_runs(device: str = "cpu", artifacts: Path | None = None) -> None:
    """:func:`check_resume_machine` for every run in the cache (``artifacts/runs``; default
    :data:`ARTIFACTS`): a book build checks them all before executing any notebook, so a
    build interrupted on another CPU model stops with one line, not inside a notebook."""
    for run in sorted(((artifacts or ARTIFACTS) / "runs").glob("*/")):
        check_resume_machine(run, device)


def samples_dir() -> Path:
    """The real COCO val2017 and OCHuman samples shipped with the repository (``data/samples``:
    4 and 3 images with their annotation files, provenance and licence notes)."""
    return ROOT / "data" / "samples"


def _source_hash(exclude: set[str]) -> str:
    h = hashlib.sha256()
    for path in sorted((ROOT / "rnnpose").rglob("*.py")):
        if path.name in exclude and path.parent.name == "rnnpose":
            continue
        h.update(path.relative_to(ROOT).as_posix().encode() + path.read_bytes())
    return h.hexdigest()[:12]


def training_code() -> str:
    """Hash of the code that decides what a training run learns (part of every run's key)."""
    return _source_hash(_NOT_TRAINING)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Split:
    """An evaluation or training split: a COCO-format file and its image folder."""

    name: str
    ann_file: Path
    image_root: Path

    def key(self) -> dict[str, str]:
        return {"name": self.name, "ann": str(self.ann_file), "images": str(self.image_root)}


#: Real-data layout under ``data_root`` (see README): split -> (annotation file, image folder)
REAL_LAYOUT: dict[str, tuple[str, str]] = {
    "train": ("coco/annotations/person_keypoints_train2017.json", "coco/train2017"),
    "sparse": ("coco/annotations/person_keypoints_val2017.json", "coco/val2017"),
    "occluded": ("ochuman/ochuman_coco_format_val_range_0.00_1.00.json", "ochuman/images"),
    "occluded_test": ("ochuman/ochuman_coco_format_test_range_0.00_1.00.json", "ochuman/images"),
}


#: The ablation tables: table -> {row as the paper names it: RMPP options}.
ABLATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "table3_ordering": {o: {"ordering": o}
                        for o in ("learned", "random", "confidence", "inverse", "canonical")},
    "table4_loss_config": {c: {"loss_config": c} for c in ("aa'", "ab'", "ba'", "bb'")},
    "table5_loop": {str(n): {"loop": n} for n in (0, 2, 3)},
    "table6_T": {str(T): {"T": T} for T in (1, 2, 4, 6)},
    "table7_lstm2_depth": {f"{d}-{o}": {"lstm2_depth": d, "ordering": o}
                           for d in (2, 3, 4) for o in ("learned", "random")},
}  # fmt: skip


class Experiment:
    """The context a notebook works in: profile, data, device, seed, cache folder."""

    def __init__(
        self,
        profile: str | Profile = "cpu",
        data_root: str | Path = "",
        device: str = "cpu",
        seed: int = 0,
        artifacts: str | Path | None = None,
        quiet: bool = False,
        ae_run: str | Path = "",
    ):
        self.profile = get_profile(profile)
        # an AE run given from outside (e.g. ``rnnpose import-ae`` of pose-ae-train's released
        # network): used instead of training one; checked by :meth:`ae`
        self.ae_run = Path(ae_run) if ae_run else None
        self._ae_key: str | None = None
        self.data_root = Path(data_root) if data_root else None
        self.device = device
        self.seed = int(seed)
        # RNNPOSE_ARTIFACTS moves the cache (the test suite uses a temporary one)
        self.artifacts = Path(artifacts or os.environ.get("RNNPOSE_ARTIFACTS") or ARTIFACTS)
        self.quiet = quiet
        # most processes one RMPP run may use (a row trained inside a worker of
        # :meth:`ablation_runs` trains in one process); not part of any run's key
        self.max_procs = 0

    # ------------------------------------------------------------------ data
    def split(self, name: str, limit: int = 0) -> Split:
        """A split by name: ``train``, ``sparse`` (COCO-like), ``occluded`` (OCHuman-like),
        ``val`` (synthetic only: held-out images drawn like ``train``, for choosing settings).
        ``limit``: only its first ``limit`` images (by id), as a file of their own."""
        full = self._split(name)
        if not limit:
            return full
        out = self.artifacts / "subsets" / f"{name}-{_digest(full.key())}-first{limit}.json"
        if not out.exists():
            data = read_json(full.ann_file)
            ids = {im["id"] for im in sorted(data["images"], key=lambda im: im["id"])[:limit]}
            atomic_write_json(out, {**data, "images": [im for im in data["images"]
                                                       if im["id"] in ids],
                                    "annotations": [a for a in data["annotations"]
                                                    if a["image_id"] in ids]}, indent=None)
        return Split(name, out, full.image_root)

    def _split(self, name: str) -> Split:
        if self.data_root is not None:
            if name not in REAL_LAYOUT:
                raise DataError(f"{self.data_root}: no real-data split called {name!r}")
            ann, images = REAL_LAYOUT[name]
            ann_path, image_root = self.data_root / ann, self.data_root / images
            for p in (ann_path, image_root):
                if not p.exists():
                    raise DataError(f"{p}: not found (expected layout: see README 'Real data')")
            return Split(name, ann_path, image_root)
        from rnnpose.data.synthetic import ensure_dataset

        prof = self.profile
        presets = {"train": ("train", prof.n_train, self.seed),
                   "sparse": ("sparse", prof.n_eval, self.seed + 1000),
                   "occluded": ("occluded", prof.n_eval, self.seed + 2000),
                   "occluded_test": ("occluded", prof.n_eval, self.seed + 3000),
                   # held-out images of the training distribution, to choose settings on
                   "val": ("train", prof.n_eval, self.seed + 4000)}  # fmt: skip
        if name not in presets:
            raise DataError(f"no synthetic split called {name!r}; choose from {list(presets)}")
        preset, num, seed = presets[name]
        folder = ensure_dataset(preset, num, seed, prof.input_size, root=self.artifacts / "data")
        return Split(name, folder / "annotations.json", folder / "images")

    def label(self, split: str) -> str:
        """A split's name for tables: the dataset it is or stands for."""
        if self.data_root is not None:
            return {"sparse": "COCO val", "occluded": "OCHuman val",
                    "occluded_test": "OCHuman test"}.get(split, split)  # fmt: skip
        return {"sparse": "sparse (COCO-like)", "occluded": "occluded (OCHuman-like)"}.get(
            split, split
        )

    @property
    def eval_splits(self) -> list[str]:
        """The evaluation splits of this setting (OCHuman has val and test on real data)."""
        return ["sparse", "occluded"] + (["occluded_test"] if self.data_root else [])

    # ------------------------------------------------------------------ runs
    def _run_dir(self, stage: str, spec: dict[str, Any], name: str = "") -> Path:
        key = _digest({**spec, "code": training_code()})
        return self.artifacts / "runs" / f"{stage}-{name or self.profile.name}-{key}"

    @property
    def ae_profile(self) -> Profile:
        """The profile the AE network is trained with: this one's, or the preset named by
        ``ae_from`` (the long build shares the cpu build's AE), which must agree with this
        one on everything the AE and the data depend on."""
        if not self.profile.ae_from:
            return self.profile
        base = get_profile(self.profile.ae_from)
        own = self.profile.to_dict()
        differ = [k for k, v in ae_fields(base.to_dict()).items() if own[k] != v]
        if differ:
            raise ValueError(f"profile {self.profile.name!r} takes its AE from "
                             f"{base.name!r} but differs from it on {', '.join(differ)}")
        return base

    def ae(self) -> Path:
        """The AE run: the one given as ``ae_run``, else the trained AE run for this profile
        and seed (trained now if not cached); a profile with ``ae_from`` uses (and fills) that
        preset's cache entry."""
        from rnnpose.train.ae import train_ae

        if self.ae_run is not None:
            return self._given_ae()
        prof = self.ae_profile
        train = self.split("train")
        spec = {"stage": "ae", "profile": prof.to_dict(), "seed": self.seed,
                "data": train.key()}  # fmt: skip
        out = self._run_dir("ae", spec, name=prof.name)
        if not (out / "done.json").exists():
            check_resume_machine(out, self.device)
            train_ae(prof, train.ann_file.parent, out, resume=True, seed=self.seed,
                     quiet=self.quiet, device=self.device, ann_file=train.ann_file,
                     image_root=train.image_root)  # fmt: skip
            atomic_write_json(out / "done.json", {"spec": spec, "env": env_stamp(self.device)})
        return out

    def _given_ae(self) -> Path:
        """``ae_run`` after checking it: an AE run of this experiment's profile with weights."""
        from rnnpose.train.common import RunDir

        run = RunDir(self.ae_run)
        config = run.read_config()
        if config["method"] != "ae":
            raise DataError(f"{run.config_path}: not an AE run (method {config['method']!r})")
        given = config.get("profile")
        want = self.ae_profile.to_dict()
        if not isinstance(given, dict) or ae_fields({**want, **given}) != ae_fields(want):
            name = given.get("name") if isinstance(given, dict) else None
            raise DataError(f"{run.config_path}: field 'profile' ({name!r}) is not this "
                            f"experiment's profile {self.profile.name!r}")  # fmt: skip
        if not run.last.is_file():
            raise DataError(f"{run.last}: the AE run has no weights")
        return run.path

    def _ae_name(self, ae_run: Path) -> str:
        """The AE run's part of an RMPP run's key: its folder name (which carries its own key
        when trained here); for a given ``ae_run``, plus the sha256 of its weights."""
        if self.ae_run is None:
            return ae_run.name
        if self._ae_key is None:
            h = hashlib.sha256()
            with open(ae_run / "last.pt", "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            self._ae_key = h.hexdigest()[:12]
        return f"{ae_run.name}-{self._ae_key}"

    def rmpp(self, seed: int | None = None, **options: Any) -> Path:
        """A trained RMPP run with the given options (see ``rnnpose train rmpp --help``);
        ``seed``: the decoder's seed (default: the experiment's), on the same AE and data."""
        from rnnpose.train.rmpp import DEFAULT_OPTIONS, train_rmpp

        unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
        if unknown:
            raise ValueError(f"unknown RMPP option(s): {unknown}; known: {sorted(DEFAULT_OPTIONS)}")
        opts = {**DEFAULT_OPTIONS, **options}
        ae_run = self.ae()
        train = self.split("train")
        seed = self.seed if seed is None else int(seed)
        spec = {"stage": "rmpp", "profile": self.profile.to_dict(), "seed": seed,
                "data": train.key(), "ae": self._ae_name(ae_run), "options": opts}  # fmt: skip
        out = self._run_dir("rmpp", spec)
        if not (out / "done.json").exists():
            check_resume_machine(out, self.device)
            kwargs = dict(profile=self.profile, ae_run=ae_run, data_dir=train.ann_file.parent,
                          out_dir=out, resume=True, seed=seed, quiet=self.quiet,
                          device=self.device, ann_file=train.ann_file,
                          image_root=train.image_root, **opts)  # fmt: skip
            procs = min(self.profile.rmpp_procs, self.profile.rmpp_batch_size,
                        self.max_procs or self.profile.rmpp_procs)  # fmt: skip
            if procs > 1 and self.device == "cpu":  # the batch shared by one-thread processes
                from rnnpose.train.accel import run_processes

                run_processes(train_rmpp, procs, threads=1, **kwargs)
            else:
                train_rmpp(**kwargs)
            atomic_write_json(out / "done.json", {"spec": spec, "env": env_stamp(self.device)})
        return out

    def main_runs(self) -> dict[int, Path]:
        """The main run for each of the profile's ``rmpp_seeds`` decoder seeds (the
        experiment's seed, +1, ...), on the same AE and data: ``{seed: run}``."""
        seeds = [self.seed + k for k in range(self.profile.rmpp_seeds)]
        return self.sweep(seeds, lambda s: self.rmpp(seed=s), desc="main runs")

    def curve(self, run: Path, splits: Iterable[str] | None = None) -> pd.DataFrame:
        """AP of a main run after each epoch it evaluates -- every epoch where the profile
        sets ``rmpp_curve``, else the last -- on ``splits`` (default: ``val`` on synthetic
        data, then the evaluation splits). One row per (epoch, split): ``epoch``, ``step``
        (Adam steps so far), ``split``, AP, AP50, AP75. The last epoch's evaluation is the
        run's own (:meth:`evaluate` of method ``rmpp`` without a checkpoint), shared with the
        tables of chapter 9."""
        from rnnpose.train.common import RunDir

        splits = list(splits or ((["val"] if self.data_root is None else []) + self.eval_splits))
        log = RunDir(run).read_log()
        if not log:
            raise DataError(f"{run}: no training log (log.jsonl) to draw a curve from")
        last = log[-1]["epoch"]
        rows = []
        for rec in log:
            if rec["epoch"] != last and not self.profile.rmpp_curve:
                continue
            kw = {} if rec["epoch"] == last else {"checkpoint": f"epoch_{rec['epoch']:03d}.pt"}
            for split in splits:
                m = self.evaluate(run, split, method="rmpp", **kw)["metrics"]
                rows.append({"epoch": rec["epoch"], "step": rec["step"], "split": split,
                             **{k: m[k] for k in ("AP", "AP50", "AP75")}})  # fmt: skip
        return pd.DataFrame(rows)

    def ablation(self, seed: int | None = None, **options: Any) -> Path:
        """An RMPP run on the ablation budget: where the profile sets one
        (``rmpp_ablation_epochs`` over the first ``rmpp_ablation_images`` training images), it
        starts from the main run's weights (:meth:`rmpp`, default options; the weights that fit,
        e.g. all but the extra LSTM2 layers) and trains that much more with its own setting.
        Every row of an ablation table, its default-settings row included, is trained the same
        way, and evaluated on the first ``rmpp_ablation_eval`` images of each split where the
        profile sets that (:meth:`evaluate`). Without a budget (``paper``) each row is a full
        run from scratch, as in the paper."""
        prof = self.profile
        if not (prof.rmpp_ablation_epochs or prof.rmpp_ablation_images):
            return self.rmpp(seed=seed, **options)
        budget = {"epochs": prof.rmpp_ablation_epochs or prof.rmpp_epochs,
                  "max_images": prof.rmpp_ablation_images or None,
                  "init": str(self.rmpp())}  # fmt: skip
        return self.rmpp(seed=seed, **{**budget, **options})

    def ablation_spread(self, seeds: int = 3) -> dict[str, Any]:
        """The seed-to-seed spread of one ablation row: the default-settings row trained with
        ``seeds`` decoder seeds (the experiment's, +1, +2: their own image order and
        orderings) on the same budget, evaluated on every split. ``spread`` is the largest
        range over the splits (AP points): ablation rows closer than it decide nothing."""
        runs = self.ablation_rows({self.seed + k: {"seed": self.seed + k} for k in range(seeds)},
                                  desc="ablation spread")  # fmt: skip
        ap = self.ap_table({f"seed {s}": r for s, r in runs.items()})
        spread = float((ap.max() - ap.min()).max())
        return {"AP": ap, "spread": spread}

    def ablation_runs(self, table: str) -> dict[str, Path]:
        """Every run of an ablation table (trained now where not cached), with a progress bar.

        Where the profile shares a batch between processes (``rmpp_procs`` > 1, on the CPU),
        the rows are trained and evaluated that many at a time instead, each in a one-thread
        worker decoding its batch in lock-step (the same numbers up to float rounding; the
        runs are the same cache entries)."""
        return self.ablation_rows(ABLATIONS[table], desc=table)

    def ablation_rows(self, rows: dict[Any, dict[str, Any]], desc: str) -> dict[Any, Path]:
        """``{name: ablation run}`` for ``{name: options}`` (see :meth:`ablation_runs`)."""
        jobs = self.profile.rmpp_procs if self.device == "cpu" else 1
        if jobs > 1 and not self.max_procs:
            self.rmpp()  # the main run every row starts from (it writes the feature cache)
            self.parallel_rows(list(rows.values()), jobs, desc=desc)
            return {name: self.ablation(**opts) for name, opts in rows.items()}
        return self.sweep(rows, lambda name: self.ablation(**rows[name]), desc=desc)

    def parallel_rows(self, rows: list[dict[str, Any]], jobs: int, desc: str) -> None:
        """Train and evaluate ablation rows (option dicts, ``seed`` allowed) ``jobs`` at a
        time in spawned one-thread workers; the results land in the cache."""
        import multiprocessing as mp

        from rnnpose.progress import progress

        args = [(self.profile, self.data_root, self.device, self.seed, self.artifacts, row,
                 self.ae_run or "") for row in rows]  # fmt: skip
        with mp.get_context("spawn").Pool(min(jobs, len(rows))) as pool:
            done = pool.imap_unordered(_train_and_evaluate_row, args)
            for _ in progress(done, total=len(rows), quiet=self.quiet, desc=desc):
                pass

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, run: Path, split: str, method: str | None = None,
                 **predict_kw: Any) -> dict[str, Any]:
        """AP table (and AP by crowding level) of a run on a split, cached beside the run."""
        from rnnpose.evaluate import ap_by_crowding, evaluate_keypoints
        from rnnpose.predict import predict_split

        sp = self.split(split, limit=self._eval_limit(run))
        key = _digest({"split": sp.key(), "method": method, "kw": predict_kw,
                       "code": _source_hash(_NOT_EVALUATION)})  # fmt: skip
        cache = run / f"eval-{split}-{method or 'default'}-{key}.json"
        if cache.exists():
            return read_json(cache)
        results_file = cache.with_suffix(".results.json")
        results = predict_split(run, sp.ann_file, sp.image_root, method=method,
                                device=self.device, quiet=self.quiet, **predict_kw)  # fmt: skip
        record = {
            "run": run.name, "split": split, "method": method, "options": predict_kw,
            "metrics": evaluate_keypoints(sp.ann_file, results),
            "by_crowding": ap_by_crowding(sp.ann_file, results),
            "num_results": len(results), "results_file": results_file.name,
            "env": env_stamp(self.device),
        }  # fmt: skip
        atomic_write_json(results_file, results, indent=None)
        atomic_write_json(cache, record)
        return record

    def oracle(self, ae_run: Path, split: str) -> dict[str, Any]:
        """AP of the AE run's single-scale heatmaps grouped by the ground truth on a split
        (:func:`rnnpose.analysis.oracle_results`: what any grouping of these heatmaps could
        reach), cached beside the run like :meth:`evaluate`."""
        from rnnpose.analysis import oracle_results
        from rnnpose.evaluate import evaluate_keypoints

        sp = self.split(split)
        key = _digest({"split": sp.key(), "code": _source_hash(_NOT_EVALUATION)})
        cache = ae_run / f"oracle-{split}-{key}.json"
        if cache.exists():
            return read_json(cache)["metrics"]
        results = oracle_results(ae_run, sp.ann_file, sp.image_root, device=self.device,
                                 quiet=True)  # fmt: skip
        metrics = evaluate_keypoints(sp.ann_file, results)
        atomic_write_json(cache, {"run": ae_run.name, "split": split, "metrics": metrics,
                                  "env": env_stamp(self.device)})  # fmt: skip
        return metrics

    def _eval_limit(self, run: Path) -> int:
        """Evaluation images per split for ``run``: the profile's ablation-evaluation budget
        for a run on the ablation budget (warm-started from the main run), else all."""
        if not self.profile.rmpp_ablation_eval or not (run / "done.json").exists():
            return 0
        options = read_json(run / "done.json").get("spec", {}).get("options") or {}
        return self.profile.rmpp_ablation_eval if options.get("init") else 0

    def results(self, run: Path, split: str, method: str | None = None,
                **predict_kw: Any) -> list[dict[str, Any]]:  # fmt: skip
        """The COCO results behind :meth:`evaluate` (computed and cached with it)."""
        record = self.evaluate(run, split, method=method, **predict_kw)
        return read_json(run / record["results_file"])

    def ap_table(self, runs: dict[str, Path], metric: str = "AP",
                 method: str | None = None) -> pd.DataFrame:  # fmt: skip
        """``metric`` of each run on every evaluation split: rows = runs, columns = splits."""
        rows = {
            name: {self.label(s): self.evaluate(run, s, method=method)["metrics"][metric]
                   for s in self.eval_splits}
            for name, run in runs.items()
        }  # fmt: skip
        return pd.DataFrame(rows).T

    def sweep(self, values: Iterable[Any], fn: Callable[[Any], Any], desc: str) -> dict[Any, Any]:
        """Run ``fn`` over ``values`` with a progress bar; returns ``{value: fn(value)}``."""
        from rnnpose.progress import progress

        values = list(values)
        out: dict[Any, Any] = {}
        bar = progress(values, quiet=self.quiet, desc=desc)
        for v in bar:
            bar.set_postfix_str(str(v))
            out[v] = fn(v)
        return out


def _train_and_evaluate_row(args: tuple) -> None:
    """One worker of :meth:`Experiment.parallel_rows`: one thread, one process."""
    import torch

    profile, data_root, device, seed, artifacts, row, ae_run = args
    torch.set_num_threads(1)
    exp = Experiment(profile, data_root=data_root or "", device=device, seed=seed,
                     artifacts=artifacts, quiet=True, ae_run=ae_run)  # fmt: skip
    exp.max_procs = 1
    run = exp.ablation(**row)
    for split in exp.eval_splits:
        exp.evaluate(run, split)
