"""Any COCO-format person-keypoint file plus an image folder, as network samples.

Works for COCO val2017, OCHuman's COCO-format files and the synthetic benchmark alike. Each
image is letterboxed (aspect kept, centred, padded) to the network input (section 3.3), the
affine is kept per sample so predictions map back to original pixels, and an ignore mask at
heatmap resolution zeroes crowd regions and people without keypoints, as the AE loss does.
The file is validated on load: every problem raises :class:`rnnpose.io.DataError` naming the
file, the annotation and the field.
"""

from __future__ import annotations

import contextlib
import io
import math
import numbers
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from rnnpose.data.transforms import (
    apply_affine,
    get_affine,
    letterbox_affine,
    scale_affine,
    warp_image,
)
from rnnpose.io import DataError, PathLike, read_json
from rnnpose.skeleton import FLIP_INDEX, NUM_JOINTS, person_category

#: Augmentation ranges (pose-ae-train's defaults): scale factor, rotation in degrees,
#: translation as a fraction of the input size, flip probability.
AUG_SCALE = (0.75, 1.25)
AUG_ROTATION = 30.0
AUG_SHIFT = 40.0 / 512.0
AUG_FLIP = 0.5


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def validate_coco(
    data: Any, path: PathLike, *, need_area: bool = False
) -> dict[str, Any]:
    """Check a parsed COCO keypoint file; return it with defaults filled in.

    Defaults: ``iscrowd`` 0, ``category_id`` 1, ``num_keypoints`` = labelled joints,
    ``categories`` = the person category. With ``need_area`` (evaluation) every annotation
    must also have ``area`` and ``bbox``, which COCOeval reads.
    """
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if key not in data:
            raise DataError(f"{path}: missing key {key!r}")
        if not isinstance(data[key], list):
            raise DataError(f"{path}: {key!r} must be a list")
    ids: set[int] = set()
    for k, img in enumerate(data["images"]):
        if not isinstance(img, dict):
            raise DataError(f"{path}: images[{k}] is not an object")
        for key in ("id", "file_name", "height", "width"):
            if key not in img:
                raise DataError(f"{path}: images[{k}] (id {img.get('id')}): missing key {key!r}")
        if not isinstance(img["id"], int) or isinstance(img["id"], bool):
            raise DataError(f"{path}: images[{k}]: field 'id' must be an integer")
        if img["id"] in ids:
            raise DataError(f"{path}: images[{k}]: duplicate image id {img['id']}")
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            raise DataError(f"{path}: images[{k}] (id {img['id']}): field 'file_name' must be "
                            f"a non-empty string")  # fmt: skip
        for key in ("height", "width"):
            v = img[key]
            if not (_is_number(v) and v >= 1 and float(v).is_integer()):
                raise DataError(f"{path}: images[{k}] (id {img['id']}): field {key!r} must be "
                                f"a whole number of pixels >= 1, got {v!r}")  # fmt: skip
        ids.add(img["id"])
    ann_ids: set[Any] = set()
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise DataError(f"{path}: annotations[{k}] is not an object")
        where = f"{path}: annotation {ann.get('id', f'#{k}')}"
        required = ["id", "image_id", "keypoints"] + (["area", "bbox"] if need_area else [])
        for key in required:
            if key not in ann:
                raise DataError(f"{where}: missing key {key!r}")
        if ann["id"] in ann_ids:
            raise DataError(f"{where}: duplicate annotation id")
        ann_ids.add(ann["id"])
        if isinstance(ann["image_id"], bool) or ann["image_id"] not in ids:  # True == 1
            raise DataError(f"{where}: field 'image_id' names unknown image id {ann['image_id']}")
        kp = ann["keypoints"]
        if not isinstance(kp, list) or len(kp) != 3 * NUM_JOINTS:
            n = len(kp) if isinstance(kp, list) else type(kp).__name__
            raise DataError(
                f"{where}: field 'keypoints' must hold {3 * NUM_JOINTS} numbers "
                f"({NUM_JOINTS} joints x (x, y, v)), got {n}"
            )
        if not all(_is_number(x) for x in kp):
            raise DataError(f"{where}: field 'keypoints' holds a non-number")
        if any(v not in (0, 1, 2) for v in kp[2::3]):
            raise DataError(f"{where}: field 'keypoints' has a visibility flag outside 0, 1, 2")
        crowd = ann.setdefault("iscrowd", 0)
        if not isinstance(crowd, int) or isinstance(crowd, bool) or crowd not in (0, 1):
            raise DataError(f"{where}: field 'iscrowd' must be 0 or 1, got {crowd!r}")
        if need_area:
            if not _is_number(ann["area"]):
                raise DataError(f"{where}: field 'area' must be a number")
            if ann["area"] <= 0 and any(v > 0 for v in kp[2::3]) and not ann.get("iscrowd"):
                # OKS divides by the area: <= 0 overflows and scores any error as a match
                raise DataError(f"{where}: field 'area' must be > 0 for a person with "
                                f"keypoints, got {ann['area']!r}")  # fmt: skip
            bb = ann["bbox"]
            if not isinstance(bb, list) or len(bb) != 4 or not all(_is_number(x) for x in bb):
                raise DataError(f"{where}: field 'bbox' must be 4 numbers [x, y, w, h]")
        ann.setdefault("category_id", 1)
        ann.setdefault("num_keypoints", int(sum(1 for v in kp[2::3] if v > 0)))
    if not data.get("categories"):
        data["categories"] = [person_category()]
    return data


def load_coco(ann_file: PathLike, *, need_area: bool = False) -> COCO:
    """Read and validate a COCO keypoint file into a pycocotools ``COCO`` (silently)."""
    data = validate_coco(read_json(ann_file), ann_file, need_area=need_area)
    return coco_from_dict(data)


def coco_from_dict(data: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


#: what PIL raises on a file it cannot decode; a decompression bomb (a header claiming more
#: than ``Image.MAX_IMAGE_PIXELS`` pixels) counts as a corrupt image
_IMAGE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError,
                 Image.DecompressionBombError, Image.DecompressionBombWarning)  # fmt: skip


def _image_error(path: Path, exc: BaseException) -> DataError:
    why = str(exc).replace(f"'{path}'", "").replace(str(path), "").strip() or "no detail"
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        why = f"decompression-bomb guard: {why.rstrip('.')}"
    return DataError(f"{path}: unreadable or corrupt image ({' '.join(why.split())})")


@contextlib.contextmanager
def _open_image(path: PathLike) -> Any:
    """``Image.open`` with the checks every reader needs: a missing file, a file PIL cannot
    read and a decompression bomb (warning or error) all become one :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                yield im
    except _IMAGE_ERRORS as exc:
        raise _image_error(path, exc) from None


def image_size(path: PathLike) -> tuple[int, int]:
    """``(width, height)`` from the file's header (the pixels are not decoded)."""
    with _open_image(path) as im:
        return im.size


def read_image(path: PathLike) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB (greyscale, palette, RGBA converted)."""
    with _open_image(path) as im:
        im.load()
        rgb = im.convert("RGB")
    return np.asarray(rgb, dtype=np.uint8)


def ignore_mask(coco: COCO, anns: list[dict], height: int, width: int) -> np.ndarray:
    """HxW uint8: 0 inside crowd regions and people without keypoints, 1 elsewhere."""
    m = np.zeros((height, width), dtype=bool)
    for ann in anns:
        if not (ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) == 0):
            continue
        if ann.get("segmentation"):
            seg = ann["segmentation"]
            if isinstance(seg, list):
                rles = mask_utils.frPyObjects(seg, height, width)
                rle = mask_utils.merge(rles)
            elif isinstance(seg.get("counts"), list):
                rle = mask_utils.frPyObjects(seg, height, width)
            else:
                rle = seg
            with warnings.catch_warnings():  # pycocotools vs numpy 2 copy keyword
                warnings.simplefilter("ignore", DeprecationWarning)
                m |= mask_utils.decode(rle).astype(bool)
        elif ann.get("bbox"):
            x, y, w, h = ann["bbox"]
            x0, y0 = max(int(math.floor(x)), 0), max(int(math.floor(y)), 0)
            m[y0 : int(math.ceil(y + h)), x0 : int(math.ceil(x + w))] = True
    return (~m).astype(np.uint8)


def first_image_ids(coco: COCO, subset: int | None = None) -> list[int]:
    """The image ids of ``coco`` in increasing order; only the first ``subset`` if given (the
    ``--subset`` of ``train rmpp`` and ``eval``: a smaller data set, the same by every
    command)."""
    ids = sorted(coco.imgs)
    return ids if subset is None else ids[: int(subset)]


class CocoPoseDataset(torch.utils.data.Dataset):
    """Samples of a COCO-format keypoint file (see module docstring and the contract).

    ``__getitem__`` returns ``image`` [3,S,S] in [0,1], ``keypoints`` [Z,17,3] in input pixels
    (crowd people and people without keypoints left out; joints outside the input get v=0 and
    (0, 0)), ``mask`` [M,M], ``image_id``, ``affine`` (2x3, original -> input), ``orig_size``.
    With ``train`` a seeded random scale, rotation, shift and flip (joints swapped with
    FLIP_INDEX) are applied; the randomness depends on (seed, epoch, index) only.
    ``subset``: only the first ``subset`` images of the file by id (``--subset``).
    """

    def __init__(
        self,
        ann_file: PathLike,
        image_root: PathLike,
        input_size: int,
        output_size: int,
        train: bool = False,
        seed: int = 0,
        max_people: int = 30,
        subset: int | None = None,
    ):
        self.ann_file = Path(ann_file)
        self.image_root = Path(image_root)
        if input_size % output_size:
            raise ValueError(f"input_size {input_size} is not a multiple of {output_size}")
        self.input_size = int(input_size)
        self.output_size = int(output_size)
        self.train = train
        self.seed = int(seed)
        self.max_people = int(max_people)
        self.epoch = 0
        self.coco = load_coco(self.ann_file)
        self.image_ids: list[int] = first_image_ids(self.coco, subset)
        if not self.image_ids:
            raise DataError(f"{self.ann_file}: empty dataset (zero images)")
        if not self.image_root.is_dir():
            raise DataError(f"{self.image_root}: image folder not found (for {self.ann_file})")
        missing = [
            self.coco.imgs[i]["file_name"]
            for i in self.image_ids
            if not (self.image_root / self.coco.imgs[i]["file_name"]).is_file()
        ]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DataError(
                f"{self.ann_file}: {len(missing)} listed image(s) not found in {self.image_root}: "
                f"{', '.join(missing[:5])}{more}"
            )

    @property
    def stride(self) -> int:
        return self.input_size // self.output_size

    def __len__(self) -> int:
        return len(self.image_ids)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw (call once per epoch)."""
        self.epoch = int(epoch)

    def image_path(self, image_id: int) -> Path:
        return self.image_root / self.coco.imgs[image_id]["file_name"]

    def verify_images(self) -> None:
        """Read every image's header (not its pixels) and refuse, before training writes
        anything, a file that is not an image, a decompression bomb, or an image whose size is
        not the annotation's."""
        for image_id in self.image_ids:
            width, height = image_size(self.image_path(image_id))
            self._check_size(image_id, height, width)

    def _check_size(self, image_id: int, height: int, width: int) -> None:
        rec = self.coco.imgs[image_id]
        if (height, width) != (rec["height"], rec["width"]):
            raise DataError(
                f"{self.image_path(image_id)}: image is {width}x{height} but "
                f"{self.ann_file} (image id {image_id}) says {rec['width']}x{rec['height']}"
            )

    def load_image(self, image_id: int) -> np.ndarray:
        """The original image as HxWx3 uint8 RGB; a clear DataError if it cannot be read."""
        img = read_image(self.image_path(image_id))
        self._check_size(image_id, img.shape[0], img.shape[1])
        return img

    def people(self, image_id: int) -> np.ndarray:
        """[Z,17,3] original-pixel keypoints of the non-crowd people with keypoints."""
        anns = self.coco.imgToAnns.get(image_id, [])
        kps = [
            np.asarray(a["keypoints"], dtype=np.float64).reshape(NUM_JOINTS, 3)
            for a in anns
            if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0
        ]
        return np.stack(kps) if kps else np.zeros((0, NUM_JOINTS, 3))

    def sample_affine(self, index: int, height: int, width: int) -> tuple[np.ndarray, bool]:
        """The original -> input affine of sample ``index`` and whether it flips."""
        S = self.input_size
        if not self.train:
            return letterbox_affine(height, width, S), False
        rng = np.random.default_rng([self.seed, self.epoch, index])
        scale = max(height, width) / rng.uniform(*AUG_SCALE)
        rot = rng.uniform(-AUG_ROTATION, AUG_ROTATION)
        shift = rng.uniform(-AUG_SHIFT, AUG_SHIFT, size=2) * scale
        flip = bool(rng.random() < AUG_FLIP)
        center = np.array([(width - 1) / 2.0, (height - 1) / 2.0]) + shift
        return get_affine(center, scale, rot, S, flip=flip), flip

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.image_ids[index]
        img = self.load_image(image_id)
        h, w = img.shape[:2]
        S, M = self.input_size, self.output_size
        A, flip = self.sample_affine(index, h, w)

        image = warp_image(img, A, S)
        kps = self.people(image_id)
        if len(kps):
            kps = apply_affine(kps, A)
            if flip:
                kps = kps[:, list(FLIP_INDEX)]
            # inside = on one of the S x S pixels (pixel i spans [i - 0.5, i + 0.5))
            inside = (
                (kps[..., 0] >= -0.5) & (kps[..., 0] < S - 0.5)
                & (kps[..., 1] >= -0.5) & (kps[..., 1] < S - 0.5)
            )  # fmt: skip
            keep_joint = inside & (kps[..., 2] > 0)
            kps[~keep_joint] = 0.0
            kps = kps[keep_joint.any(axis=1)][: self.max_people]

        anns = self.coco.imgToAnns.get(image_id, [])
        mask = ignore_mask(self.coco, anns, h, w)
        mask = warp_image(mask, scale_affine(A, 1.0 / self.stride), M, fill=1, resample=0)

        return {
            "image": torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255,
            "keypoints": torch.from_numpy(kps.reshape(-1, NUM_JOINTS, 3)).float(),
            "mask": torch.from_numpy(mask.astype(np.float32)),
            "image_id": int(image_id),
            "affine": A,
            "orig_size": (h, w),
        }


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples; keypoints are zero-padded to the most people in the batch."""
    zmax = max(len(s["keypoints"]) for s in samples)
    kps = torch.zeros(len(samples), zmax, NUM_JOINTS, 3)
    for b, s in enumerate(samples):
        kps[b, : len(s["keypoints"])] = s["keypoints"]
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "keypoints": kps,
        "num_people": torch.tensor([len(s["keypoints"]) for s in samples], dtype=torch.long),
        "mask": torch.stack([s["mask"] for s in samples]),
        "image_id": [s["image_id"] for s in samples],
        "affine": [s["affine"] for s in samples],
        "orig_size": [s["orig_size"] for s in samples],
    }
