"""Prediction with a trained run, on one image, a folder of images or a whole split.

``rnnpose predict IMAGE_OR_DIR... --run RUN [--method rmpp|ae] --out DIR`` writes, per input,
the image with the people drawn (one colour each, RMPP's stop probability printed), for RMPP
a strip of the per-iteration heatmaps (paper fig. 1), and one COCO-format results file.
An RMPP run also carries its AE network, so ``--method ae`` compares both on the same weights.
``--flip`` and ``--scales S...`` average AE's maps over the mirrored image and several input
scales; for RMPP they make the paper's multi-scale evaluation (:meth:`Predictor.decode_maps`).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnpose import cli_types
from rnnpose.config import Profile
from rnnpose.io import DataError, PathLike, atomic_write, atomic_write_json
from rnnpose.progress import progress
from rnnpose.train.common import RunDir

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class Prediction:
    """People of one image: COCO-style keypoints in original pixels, plus RMPP's iterations."""

    people: list[dict[str, Any]]  # {"keypoints": [17,3] (x, y, score), "score", ["p"]}
    maps: Any = None  # rnnpose.inference.AEMaps
    image: np.ndarray | None = None  # the input image (original pixels)
    decoded: dict[str, torch.Tensor] = field(default_factory=dict)  # RMPP: heatmaps, p, ...


class Predictor:
    """A trained run ready to predict: AE grouping or the RMPP decoder on AE features."""

    def __init__(self, run_dir: PathLike, method: str | None = None, device: str = "cpu",
                 checkpoint: str | None = None):  # fmt: skip
        self.run_dir = Path(run_dir)
        self.device = device
        config = RunDir(run_dir).read_config()
        kind = config.get("method")
        if kind == "ae":
            if method not in (None, "ae"):
                raise DataError(f"{self.run_dir}: an AE run cannot predict with {method!r}")
            from rnnpose.train.ae import load_ae

            self.ae, self.profile = load_ae(run_dir, device)
            self.rmpp, self.options, self.method = None, {}, "ae"
        elif kind == "rmpp":
            from rnnpose.train.rmpp import load_rmpp

            self.rmpp, self.ae, self.profile, self.options = load_rmpp(
                run_dir, device, checkpoint=checkpoint
            )
            self.method = method or "rmpp"
            if self.method not in ("ae", "rmpp"):
                raise DataError(f"unknown method {method!r}; choose rmpp or ae")
        else:
            raise DataError(f"{RunDir(run_dir).config_path}: unknown method {kind!r}")

    @property
    def train_profile(self) -> Profile:
        """The profile with the run's options applied (omega, loop, ... as trained)."""
        if self.rmpp is None:
            return self.profile
        from rnnpose.train.rmpp import apply_options

        return apply_options(self.profile, self.options)

    def check_scales(self, scales: Sequence[float]) -> tuple[float, ...]:
        """The scales as floats, in the order the maps are computed; :class:`DataError` if one
        is not a positive finite number, or if RMPP is asked for scales without 1 (its decoder
        reads the scale-1 features; scale 1 goes first so that the averaged maps lie on its
        grid)."""
        scales = tuple(float(s) for s in scales)
        if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
            raise DataError(f"scales must be positive finite numbers, got {list(scales)}")
        if self.method == "rmpp":
            if 1.0 not in scales:
                raise DataError(f"{self.run_dir}: RMPP's decoder reads the scale-1 features; "
                                f"the scales must include 1, got {list(scales)}")  # fmt: skip
            scales = (1.0, *(s for s in scales if s != 1.0))
        return scales

    @torch.no_grad()
    def predict(
        self, image: np.ndarray, *, flip: bool = False, scales: Sequence[float] = (1.0,),
        omega: float | None = None, refine: bool | None = None, **group_kw: Any,
    ) -> Prediction:  # fmt: skip
        """People in one HxWx3 uint8 image (original pixels).

        RMPP with ``flip`` or several ``scales`` is the paper's multi-scale evaluation
        (:meth:`decode_maps`); ``refine`` forces its refinement step on or off (default: on
        exactly when the maps average more than one pass).
        """
        from rnnpose.inference import ae_maps, people_to_results

        scales = self.check_scales(scales)
        maps = ae_maps(self.ae, image, self.profile, flip=flip, scales=scales, device=self.device)
        if self.method == "ae":
            from rnnpose.grouping import group

            group_kw.setdefault("max_people", self.profile.max_people)
            people, scores = group(maps.heatmaps, maps.tags, **group_kw)
            return Prediction(people_to_results(people, scores, maps), maps, image)
        if refine is None:
            refine = flip or scales != (1.0,)
        out = self.decode_maps([maps], omega=omega, refine=refine)[0]
        people = [{"keypoints": np.asarray(r["keypoints"], dtype=float).reshape(17, 3),
                   "score": float(r["score"])} for r in _rmpp_results(out, maps, 0)]  # fmt: skip
        return Prediction(people, maps, image, out)

    @torch.no_grad()
    def decode_maps(
        self, maps: Sequence[Any], *, omega: float | None = None, refine: bool = False
    ) -> list[dict[str, torch.Tensor]]:
        """RMPP's people of images whose AE maps (:class:`rnnpose.inference.AEMaps`) are
        given, decoded in lock-step (:func:`rnnpose.decode.decode`; keypoints in heatmap px).

        The decoder reads the scale-1 unflipped features it was trained on. With ``refine``
        (the paper's multi-scale evaluation, end of section 3.3) the joints it drops are then
        filled by AE's single-person refinement on the maps averaged over every pass
        (:func:`rnnpose.inference.refine_missing_joints`); ``"filled"`` [Z,17] marks them. The
        person scores stay the decoder's, as AE scores a person before its refinement.
        """
        from rnnpose.decode import decode
        from rnnpose.inference import refine_missing_joints

        prof = self.train_profile
        feats = torch.from_numpy(np.stack([m.features for m in maps])).to(self.device)
        outs = decode(
            self.rmpp, feats, omega=prof.omega if omega is None else omega, tau=prof.tau,
            use_lstm2=bool(self.options.get("use_lstm2", True)),
            max_iterations=prof.max_iterations, ordering=self.options.get("ordering", "learned"),
        )  # fmt: skip
        if refine:
            for out, m in zip(outs, maps, strict=True):
                decoded = out["keypoints"]
                out["keypoints"] = torch.from_numpy(refine_missing_joints(decoded.numpy(), m))
                out["filled"] = (decoded[..., 2] == 0) & (out["keypoints"][..., 2] > 0)
        return outs


def _rmpp_results(out: dict[str, torch.Tensor], maps: Any, image_id: int) -> list[dict[str, Any]]:
    """COCO records (original pixels) of one image decoded on ``maps``' grid."""
    from rnnpose.data.transforms import scale_affine
    from rnnpose.decode import to_coco_results

    affine = scale_affine(maps.to_heatmap, maps.stride)
    return to_coco_results(out, affine, maps.stride, image_id=image_id)


def coco_results(people: list[dict[str, Any]], image_id: int) -> list[dict[str, Any]]:
    """``[{"keypoints": [17,3], "score"}]`` of one image -> COCO keypoint result records."""
    return [
        {"image_id": int(image_id), "category_id": 1, "score": float(p["score"]),
         "keypoints": [float(v) for v in np.asarray(p["keypoints"]).reshape(-1)]}
        for p in people
    ]  # fmt: skip


def predict_split(
    run_dir: PathLike, ann_file: PathLike, image_root: PathLike, *, method: str | None = None,
    device: str = "cpu", quiet: bool = False, checkpoint: str | None = None,
    batch_size: int = 32, subset: int | None = None, **predict_kw: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    """COCO results of a run on every image of a COCO-format split (an RMPP run's
    ``checkpoint``: another weights file of the run than ``last.pt``, e.g. ``epoch_002.pt``;
    ``subset``: its first N images by id only).

    RMPP at a single scale without flip takes the fast path: the frozen AE's features of the
    split are extracted once per AE run (cached beside it, as for training) and the decoder
    runs on batches of images in lock-step. RMPP multi-scale (flip or several scales) computes
    each image's AE maps, then decodes them ``batch_size`` images at a time in lock-step
    (:meth:`Predictor.decode_maps`).
    """
    from rnnpose.data.coco import first_image_ids, load_coco, read_image

    predictor = Predictor(run_dir, method=method, device=device, checkpoint=checkpoint)
    if "scales" in predict_kw:
        predict_kw["scales"] = predictor.check_scales(predict_kw["scales"])
    plain = (not predict_kw.get("flip") and not predict_kw.get("refine")
             and tuple(predict_kw.get("scales", (1.0,))) == (1.0,))  # fmt: skip
    if predictor.method == "rmpp" and plain:
        return _rmpp_split(predictor, ann_file, image_root, quiet=quiet,
                           omega=predict_kw.get("omega"), subset=subset)  # fmt: skip
    coco = load_coco(ann_file)
    results: list[dict[str, Any]] = []
    ids = first_image_ids(coco, subset)
    if predictor.method == "rmpp":
        from rnnpose.inference import ae_maps

        flip, scales = bool(predict_kw.get("flip")), predict_kw.get("scales", (1.0,))
        refine = predict_kw.get("refine")
        refine = (flip or tuple(scales) != (1.0,)) if refine is None else refine
        bar = progress(range(0, len(ids), batch_size), quiet=quiet, desc="predict (rmpp)",
                       unit="batch")  # fmt: skip
        for start in bar:
            chunk = ids[start : start + batch_size]
            maps = [ae_maps(predictor.ae, read_image(Path(image_root) / coco.imgs[i]["file_name"]),
                            predictor.profile, flip=flip, scales=scales, device=device)
                    for i in chunk]  # fmt: skip
            outs = predictor.decode_maps(maps, omega=predict_kw.get("omega"), refine=refine)
            for image_id, out, m in zip(chunk, outs, maps, strict=True):
                results.extend(_rmpp_results(out, m, image_id))
        return results
    bar = progress(ids, quiet=quiet, desc=f"predict ({predictor.method})")
    for image_id in bar:
        image = read_image(Path(image_root) / coco.imgs[image_id]["file_name"])
        results.extend(coco_results(predictor.predict(image, **predict_kw).people, image_id))
    return results


@torch.no_grad()
def _rmpp_split(
    predictor: Predictor, ann_file: PathLike, image_root: PathLike, *, quiet: bool,
    omega: float | None = None, batch_size: int = 32, subset: int | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    from rnnpose.data.coco import CocoPoseDataset
    from rnnpose.decode import decode, to_coco_results
    from rnnpose.features import cache_key, extract_features

    prof = predictor.train_profile
    ae_run = Path(RunDir(predictor.run_dir).read_config()["ae_run"])
    dataset = CocoPoseDataset(ann_file, image_root, prof.input_size, prof.output_size,
                              train=False, max_people=prof.max_people,
                              subset=subset)  # fmt: skip
    # keyed as ``train rmpp`` keys it (the AE run's profile: the features do not depend on the
    # decoder's options), so a split trained on is not extracted again
    ae_profile = Profile.from_dict(RunDir(ae_run).read_config()["profile"])
    key = cache_key(RunDir(ae_run).last, ann_file, ae_profile, prof.rmpp_input, subset=subset)
    feats = extract_features(predictor.ae, dataset, batch_size=prof.ae_batch_size,
                             device=predictor.device, cache_file=ae_run / "rmpp_features" /
                             f"{key}.pt", quiet=quiet, inputs=prof.rmpp_input)  # fmt: skip
    results: list[dict[str, Any]] = []
    n = len(feats)
    bar = progress(range(0, n, batch_size), quiet=quiet, desc="decode (rmpp)", unit="batch")
    for start in bar:
        chunk = feats.features[start : start + batch_size].float().to(predictor.device)
        outs = decode(
            predictor.rmpp, chunk, omega=prof.omega if omega is None else omega, tau=prof.tau,
            use_lstm2=bool(predictor.options.get("use_lstm2", True)),
            max_iterations=prof.max_iterations,
            ordering=predictor.options.get("ordering", "learned"),
        )  # fmt: skip
        for k, out in enumerate(outs):
            image_id = feats.image_ids[start + k]
            rec = dataset.coco.imgs[image_id]
            affine = dataset.sample_affine(start + k, rec["height"], rec["width"])[0]
            results.extend(to_coco_results(out, affine, prof.stride, image_id))
    return results


def predict_run(run_dir: PathLike, data_dir: PathLike, **kw: Any) -> tuple[Path, list[dict]]:
    """``(ground-truth file, results)`` of a run on ``DIR/annotations.json`` + ``DIR/images``."""
    from rnnpose.train.ae import data_paths

    ann_file, image_root = data_paths(data_dir)
    return ann_file, predict_split(run_dir, ann_file, image_root, **kw)


def collect_images(inputs: Sequence[PathLike]) -> list[Path]:
    """Image files named directly or found (non-recursively) in the named folders."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{item}: no image files (looked for {sorted(IMAGE_SUFFIXES)})")
            paths.extend(found)
        elif item.is_file():
            paths.append(item)
        else:
            raise DataError(f"{item}: no such file or folder")
    return paths


def check_images(paths: Sequence[Path]) -> None:
    """Refuse, before any output is written, a file that is not an image PIL can identify
    (or whose header claims more pixels than PIL's decompression-bomb limit)."""
    from rnnpose.data.coco import image_size

    for path in paths:
        image_size(path)


def output_names(paths: Sequence[Path]) -> list[str]:
    """One output name per input, unique even when inputs from different folders share a
    file name: the stem, then ``stem-2``, ``stem-3``, ... in input order. Names are compared
    case-blind (case-insensitive file systems) and never meet another's ``_iterations``
    strip."""
    used: set[str] = set()
    names = []
    for path in paths:
        name, k = path.stem, 1
        while name.casefold() in used or f"{name}_iterations".casefold() in used:
            k += 1
            name = f"{path.stem}-{k}"
        used.update({name.casefold(), f"{name}_iterations".casefold()})
        names.append(name)
    return names


def parse_scales(values: Sequence[str] | None) -> tuple[float, ...]:
    """``--scales`` of the command line -> floats; :class:`DataError` naming the bad value."""
    if not values:
        return (1.0,)
    out = []
    for v in values:
        try:
            s = float(v)
        except ValueError:
            s = math.nan
        if not (math.isfinite(s) and s > 0):
            raise DataError(f"--scales: {v!r} is not a positive finite number")
        out.append(s)
    return tuple(out)


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    """``--flip`` and ``--scales`` (shared by ``predict`` and ``eval --run``)."""
    parser.add_argument("--flip", action="store_true",
                        help="average the AE maps with the mirrored image's")  # fmt: skip
    parser.add_argument(
        "--scales", nargs="+", metavar="S",
        help="AE input scales whose maps are averaged (default: 1). With rmpp, --flip or "
        "several scales fill the joints the decoder drops by AE's single-person refinement "
        "(the paper's multi-scale rows); the scales must include 1",
    )  # fmt: skip


def _save_figure(fig: Any, path: Path) -> None:
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=100))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    parser.add_argument("--run", required=True, type=cli_types.run_folder,
                        help="a trained AE or RMPP run folder")  # fmt: skip
    parser.add_argument("--method", choices=["rmpp", "ae"], help="default: the run's own")
    parser.add_argument("--out", required=True, type=cli_types.output_folder,
                        help="output folder")  # fmt: skip
    add_scale_arguments(parser)
    parser.add_argument("--device", type=cli_types.device,
                        default="cuda" if torch.cuda.is_available() else "cpu")  # fmt: skip
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from rnnpose.data.coco import read_image
    from rnnpose.viz import iteration_strip, prediction_figure

    if RunDir(args.out).holds_run():  # results.json and figures never land in a run folder
        raise DataError(f"{args.out}: holds a run (config.json, last.pt, log.jsonl or "
                        "epoch_NNN.pt); choose another --out")  # fmt: skip
    scales = parse_scales(args.scales)
    images = collect_images(args.inputs)
    check_images(images)
    names = output_names(images)
    predictor = Predictor(args.run, method=args.method, device=args.device)
    scales = predictor.check_scales(scales)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, files = [], []
    pairs = list(zip(images, names, strict=True))
    for i, (path, name) in enumerate(progress(pairs, quiet=args.quiet, desc="predict"), start=1):
        image = read_image(path)
        pred = predictor.predict(image, flip=args.flip, scales=scales)
        results.extend(coco_results(pred.people, i))
        record = {"id": i, "file_name": str(path), "height": image.shape[0],
                  "width": image.shape[1], "figure": f"{name}.png"}  # fmt: skip
        _save_figure(prediction_figure(image, pred, title=f"{path.name} ({predictor.method})"),
                     out / record["figure"])  # fmt: skip
        if pred.decoded:
            record["iterations"] = f"{name}_iterations.png"
            _save_figure(iteration_strip(pred), out / record["iterations"])
        files.append(record)
    atomic_write_json(out / "results.json", results)
    atomic_write_json(out / "images.json", files)
    for path, name in pairs:
        if name != path.stem:
            print(f"{path}: file name taken by an earlier input; figure {name}.png")
    print(f"{len(images)} image(s), {len(results)} people -> {out} (images.json maps inputs "
          f"to figures)")  # fmt: skip
    return 0
