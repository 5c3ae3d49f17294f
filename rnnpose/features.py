"""The frozen AE's features for RMPP training, cached, and their dataset statistics (section 3.3).

RMPP trains on the intermediate features of a FROZEN AE network (``rmpp_features``: the f
feature maps of every stack). They are computed once per (AE checkpoint, dataset, profile) on
the un-augmented images and cached as float16 (written atomically); the per-channel mean and
variance over every pixel of every training image (accumulated in float64 from the float32
features) feed :class:`rnnpose.models.rmpp.FeatureNorm`.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rnnpose.config import Profile
from rnnpose.io import PathLike, atomic_write
from rnnpose.progress import progress

#: bump when the cached content changes meaning
CACHE_VERSION = 1


@dataclass
class FeatureSet:
    """Cached features ``[N,C,M,M]`` (float16), keypoints per image (INPUT pixels, [Z,17,3]),
    image ids, and the per-channel ``mean``/``var`` (float32, [C])."""

    features: torch.Tensor
    keypoints: list[torch.Tensor]
    image_ids: list[int]
    mean: torch.Tensor
    var: torch.Tensor

    def __len__(self) -> int:
        return self.features.shape[0]

    def to_payload(self) -> dict:
        return {"version": CACHE_VERSION, "features": self.features, "keypoints": self.keypoints,
                "image_ids": list(self.image_ids), "mean": self.mean, "var": self.var}  # fmt: skip

    @classmethod
    def from_payload(cls, p: dict) -> FeatureSet:
        return cls(p["features"], list(p["keypoints"]), [int(i) for i in p["image_ids"]],
                   p["mean"], p["var"])  # fmt: skip


def file_digest(path: PathLike) -> str:
    """sha256 of a file's bytes (16 hex digits)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def cache_key(
    ae_checkpoint: PathLike, data_path: PathLike, profile: Profile, inputs: str = "features",
    subset: int | None = None,
) -> str:
    """AE checkpoint hash + dataset path + profile digest (+ the decoder's inputs, cache
    version, and ``subset``: the first N images of the file only, a cache of its own)."""
    parts = [file_digest(ae_checkpoint), str(Path(data_path).resolve()), profile.digest(),
             str(CACHE_VERSION)] + ([inputs] if inputs != "features" else [])  # fmt: skip
    if subset is not None:
        parts.append(f"first{int(subset)}")
    blob = "|".join(parts)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class ChannelStats:
    """Running per-channel mean/variance over all pixels (float64 sums)."""

    def __init__(self) -> None:
        self.n = 0
        self.s: torch.Tensor | None = None
        self.ss: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().double()
        s, ss = x.sum(dim=(0, 2, 3)).cpu(), x.pow(2).sum(dim=(0, 2, 3)).cpu()
        self.s = s if self.s is None else self.s + s
        self.ss = ss if self.ss is None else self.ss + ss
        self.n += x.shape[0] * x.shape[2] * x.shape[3]

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.n == 0 or self.s is None or self.ss is None:
            raise ValueError("no features seen: cannot compute statistics")
        mean = self.s / self.n
        var = (self.ss / self.n - mean**2).clamp(min=0.0)
        return mean.float(), var.float()


def _default_features(ae_model: nn.Module, images: torch.Tensor,
                      inputs: str = "features") -> torch.Tensor:  # fmt: skip
    from rnnpose.models.hourglass import rmpp_features

    return rmpp_features(ae_model(images), inputs)


@torch.no_grad()
def extract_features(
    ae_model: nn.Module,
    dataset: torch.utils.data.Dataset,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    *,
    cache_file: PathLike | None = None,
    quiet: bool = True,
    features_fn: Callable[..., torch.Tensor] = _default_features,
    inputs: str = "features",
) -> FeatureSet:
    """Run the frozen AE over every sample of ``dataset`` (dicts with ``image``, ``keypoints``,
    ``image_id``), or load ``cache_file`` when it exists; the result is written there atomically.
    """
    if cache_file is not None and Path(cache_file).is_file():
        try:
            cached = load_feature_set(cache_file)
        except ValueError:
            cached = None  # stale, unreadable or not a feature cache: recompute and overwrite
        ids = getattr(dataset, "image_ids", None)
        if cached is not None and (ids is None or cached.image_ids == [int(i) for i in ids]):
            return cached
    ae_model.eval()
    feats: list[torch.Tensor] = []
    kps: list[torch.Tensor] = []
    ids: list[int] = []
    stats = ChannelStats()
    n = len(dataset)
    bar = progress(range(0, n, batch_size), quiet=quiet, desc="AE features", unit="batch")
    for start in bar:
        samples = [dataset[i] for i in range(start, min(n, start + batch_size))]
        images = torch.stack([s["image"] for s in samples]).to(device)
        f = (features_fn(ae_model, images, inputs) if inputs != "features"
             else features_fn(ae_model, images)).float()  # fmt: skip
        stats.update(f)
        feats.append(f.half().cpu())
        kps.extend(s["keypoints"].float().cpu() for s in samples)
        ids.extend(int(s["image_id"]) for s in samples)
    mean, var = stats.result()
    fs = FeatureSet(torch.cat(feats), kps, ids, mean, var)
    if cache_file is not None:
        try:
            atomic_write(cache_file, lambda fh: torch.save(fs.to_payload(), fh))
        except OSError as exc:  # a read-only AE run: go on without the cache
            print(f"note: {cache_file}: feature cache not written ({exc.strerror or exc})",
                  file=sys.stderr)  # fmt: skip
    return fs


def load_feature_set(path: PathLike) -> FeatureSet:
    """A cached :class:`FeatureSet`; ``ValueError`` if the file cannot be read, is of another
    cache version, or does not hold a feature set of consistent shapes."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError,
            zipfile.BadZipFile) as exc:  # fmt: skip
        raise ValueError(f"{path}: unreadable feature cache ({type(exc).__name__})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: not a feature cache (a {type(payload).__name__})")
    if payload.get("version") != CACHE_VERSION:
        raise ValueError(f"{path}: feature cache version {payload.get('version')} is stale")
    feats, kps, ids = payload.get("features"), payload.get("keypoints"), payload.get("image_ids")
    mean, var = payload.get("mean"), payload.get("var")
    ok = (isinstance(feats, torch.Tensor) and feats.dim() == 4
          and isinstance(kps, list) and len(kps) == feats.shape[0]
          and all(isinstance(k, torch.Tensor) and k.dim() == 3 for k in kps)
          and isinstance(ids, list) and len(ids) == feats.shape[0]
          and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
          and all(isinstance(t, torch.Tensor) and t.shape == (feats.shape[1],)
                  for t in (mean, var)))  # fmt: skip
    if not ok:
        raise ValueError(f"{path}: not a feature cache of consistent shapes")
    return FeatureSet.from_payload(payload)
