"""One configuration dataclass and its presets (``tiny``, ``cpu``, ``long``, ``gpu``, ``paper``).

Every size, threshold and schedule in the package comes from a :class:`Profile`, so a run is
fully described by its profile (plus the command-line overrides recorded beside its weights).
The ``paper`` preset follows section 3.3 of the paper; ``cpu`` and ``tiny`` shrink it so the
book and the tests run on two CPU cores.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from rnnpose.skeleton import NUM_JOINTS

#: The stop threshold of the paper: omega = sigmoid(-1) ~ 0.269 (section 3.1.1).
OMEGA_DEFAULT: float = 1.0 / (1.0 + math.exp(1.0))
#: The joint threshold of the paper's decoding, tau (section 3.2).
TAU_DEFAULT: float = 0.015


@dataclass(frozen=True)
class Profile:
    """All knobs of a run. Field comments name the paper's symbol where there is one."""

    name: str
    # --- input / output geometry
    input_size: int  # square network input, pixels (paper: 512)
    output_size: int  # heatmap size m = n (paper: 128, stride 4)
    sigma: float  # Gaussian sigma of GT heatmaps, in heatmap pixels
    # --- stacked hourglass (Associative Embedding)
    nstack: int  # hourglass stacks (paper: 4)
    hg_channels: int  # channels inside the hourglass (AE: 256)
    hg_increase: int  # extra channels per hourglass level (AE: 128)
    hg_depth: int  # down-samplings per hourglass (AE: 4)
    feat_channels: int  # f: unsupervised feature maps per stack (paper: 34)
    tag_dim: int  # embedding dimension per joint (AE: 1)
    max_people: int  # most people per image kept for targets (AE: 30)
    # --- RMPP decoder (section 3.1, 3.3)
    lstm1_hidden: int  # hidden channels of LSTM1's first layer, halved after each layer
    lstm1_depth: int  # ConvLSTM layers in LSTM1 (paper: 3)
    lstm2_hidden: int  # hidden channels of LSTM2's first layer
    lstm2_depth: int  # ConvLSTM layers in LSTM2 (paper: 2; table 7 varies it)
    loop: int  # feedback-loop passes per person (paper: 2; table 5: 0, 2, 3)
    T: int  # within-image batch size of A-SGD (paper: 8; table 6)
    max_iterations: int  # hard cap on decoder iterations per image
    # beyond the paper (off in ``paper``; see rnnpose.models.rmpp.Decoder): LSTM1 also reads
    # the running max of the heatmaps emitted so far / G broadcast global-context channels /
    # two coordinate channels
    # heatmap-loss normalisation (see rnnpose.losses.rmpp.heatmap_scale): "sum" (the plain
    # pixel sum of squares, the paper's literal squared l2 of eq. 2; every profile's),
    # "joint" (an empty prediction costs 1 per labelled joint), "person" (1 per labelled
    # person: the profiles' scale until issue 22, whose campaigns had val choose sum at 1,200
    # and 4,800 decoder steps on two CPU models: book chapter 10, sections 7-8)
    rmpp_heatmap_norm: str = "sum"
    rmpp_input: str = "features"  # "features" (paper) | "features+tags" | "features+maps"
    rmpp_emitted: bool = False
    rmpp_context: int = 0
    rmpp_coords: bool = False
    omega: float = OMEGA_DEFAULT  # stop threshold
    tau: float = TAU_DEFAULT  # joint threshold at decoding
    # --- schedules
    ae_epochs: int = 1
    ae_lr: float = 2e-4
    ae_batch_size: int = 8
    ae_lr_drop_epoch: int = 0  # AE lr x 0.1 from this epoch (1-based) on; 0: never
    # push/pull weight of AE's tag loss (AE: 1e-3). The short CPU schedules raise it: with
    # 1e-3 the tags stay at one value for their few hundred steps; with 0.1 separating them
    # spoils the heatmaps (measured: rnnpose/train/ae.py, book chapter 2).
    ae_tag_weight: float = 1e-3
    # beyond AE: push/pull weight from epoch ``ae_tag_late_epoch`` (1-based) on; 0: never
    ae_tag_weight_late: float = 0.0
    ae_tag_late_epoch: int = 0
    rmpp_epochs: int = 1
    rmpp_lr: float = 1e-4
    rmpp_lr_drop_epoch: int = 4  # lr x 0.1 from this epoch on (paper: epoch 4)
    rmpp_batch_size: int = 1  # images per optimiser step (paper: 1)
    # one-thread processes that share each batch when the Experiment trains on the CPU
    # (torchrun's layout, rnnpose.train.accel.run_processes; gradients summed, so the numbers
    # are those of one process decoding the batch in lock-step). 2 on 2 cores: batch-1
    # convolutions are too small to split over threads (benchmarks/RESULTS.md)
    rmpp_procs: int = 1
    rmpp_ablation_epochs: int = 0  # epochs of each ablation run (0: rmpp_epochs)
    rmpp_ablation_images: int = 0  # training images of each ablation run (0: all)
    rmpp_ablation_eval: int = 0  # evaluation images per split of each ablation run (0: all)
    # decoder seeds of the main run (chapter 9 shows each, their mean and range); the same AE
    rmpp_seeds: int = 1
    # evaluate the main run after every epoch, not only after the last (the learning curve)
    rmpp_curve: bool = False
    # the preset whose AE network this profile uses ("": its own). Builds that differ only in
    # the decoder's budget share one AE training, so their comparison isolates the decoder
    ae_from: str = ""
    # --- synthetic benchmark sizes (ignored on real data)
    n_train: int = 0
    n_eval: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Profile:
        """A copy with some fields changed; unknown names raise ``TypeError``."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """A profile read back from a file: unknown fields, wrong types and values out of
        range (see :func:`check_profile_values`) raise ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"a profile must be an object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown profile field(s): {', '.join(unknown)}")
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.name not in data and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)  # fmt: skip
        if missing:
            raise ValueError(f"missing profile field(s): {', '.join(missing)}")
        check_profile_values(data)
        return cls(**data)

    def digest(self) -> str:
        """A short stable hash of every field (cache keys, run names)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def stride(self) -> int:
        return self.input_size // self.output_size

    @property
    def num_joints(self) -> int:
        return NUM_JOINTS

    @property
    def ae_out_channels(self) -> int:
        """Channels each hourglass stack predicts: J heatmaps, J*tag_dim tags, f features."""
        return NUM_JOINTS + NUM_JOINTS * self.tag_dim + self.feat_channels

    @property
    def rmpp_in_channels(self) -> int:
        """Decoder input: the f features of every stack (paper: 4 * 34 = 136); beyond the
        paper, ``rmpp_input`` adds the last stack's tags (J * tag_dim) or heatmaps and tags."""
        extra = {"features": 0, "features+tags": NUM_JOINTS * self.tag_dim,
                 "features+maps": NUM_JOINTS * (1 + self.tag_dim)}[self.rmpp_input]  # fmt: skip
        return self.nstack * self.feat_channels + extra


def ae_fields(profile: dict[str, Any]) -> dict[str, Any]:
    """The fields of a profile (as a dict) that the AE network and the data depend on: all but
    the decoder's (``rmpp_*``), the name and ``ae_from``. Two profiles that agree on them can
    share one AE run."""
    return {k: v for k, v in profile.items()
            if not k.startswith("rmpp_") and k not in ("name", "ae_from")}


#: numeric profile fields that must be > 0; every other number must be >= 0
POSITIVE_FIELDS: frozenset[str] = frozenset({
    "input_size", "output_size", "sigma", "nstack", "hg_channels", "hg_depth",
    "feat_channels", "tag_dim", "max_people", "lstm1_hidden", "lstm1_depth", "lstm2_hidden",
    "lstm2_depth", "T", "max_iterations", "ae_epochs", "ae_lr", "ae_batch_size", "rmpp_epochs",
    "rmpp_lr", "rmpp_batch_size", "rmpp_procs", "rmpp_seeds",
})  # fmt: skip
_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,),
                                        "bool": (bool,)}  # fmt: skip


def check_profile_values(data: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first field of ``data`` (a profile as a dict) whose
    type is not its annotation's (no bools for numbers) or whose value is out of range:
    numbers finite and >= 0 (> 0 for :data:`POSITIVE_FIELDS`), omega in (0, 1), ``extra`` an
    object, ``input_size`` a multiple of ``output_size``."""
    for f in dataclasses.fields(Profile):
        if f.name not in data:
            continue
        v = data[f.name]
        kind = str(f.type)
        if kind.startswith("dict"):
            if not isinstance(v, dict):
                raise ValueError(f"field {f.name!r} must be an object")
            continue
        types = _TYPES.get(kind)
        if types is None:
            continue
        if not isinstance(v, types) or (kind != "bool" and isinstance(v, bool)):
            raise ValueError(f"field {f.name!r} must be of type {kind}, got {repr(v)[:40]}")
        if kind not in ("int", "float"):
            continue
        least = "> 0" if f.name in POSITIVE_FIELDS else ">= 0"
        if not math.isfinite(v) or v < 0 or (v == 0 and f.name in POSITIVE_FIELDS):
            raise ValueError(f"field {f.name!r} must be a finite number {least}, got {v}")
    for name, allowed in (("rmpp_input", ("features", "features+tags", "features+maps")),
                          ("rmpp_heatmap_norm", ("person", "joint", "sum"))):  # fmt: skip
        if name in data and data[name] not in allowed:
            raise ValueError(f"field {name!r} must be one of {', '.join(allowed)}, got "
                             f"{str(data[name])[:40]!r}")  # fmt: skip
    if data.get("ae_from") and data["ae_from"] not in PROFILES:
        raise ValueError(f"field 'ae_from' must name a profile ({', '.join(PROFILES)}), got "
                         f"{str(data['ae_from'])[:40]!r}")  # fmt: skip
    if "omega" in data and not 0 < data["omega"] < 1:
        raise ValueError(f"field 'omega' must lie in (0, 1), got {data['omega']}")
    if data.get("input_size", 1) % data.get("output_size", 1):
        raise ValueError(f"field 'input_size' ({data['input_size']}) must be a multiple of "
                         f"'output_size' ({data['output_size']})")  # fmt: skip


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny", input_size=64, output_size=16, sigma=1.0,
        nstack=1, hg_channels=32, hg_increase=0, hg_depth=3, feat_channels=8, tag_dim=1,
        max_people=12, lstm1_hidden=32, lstm1_depth=3, lstm2_hidden=16, lstm2_depth=2,
        loop=2, T=4, max_iterations=12,
        ae_epochs=2, ae_lr=1e-3, ae_batch_size=8, ae_tag_weight=0.1,
        rmpp_epochs=2, rmpp_lr=1e-3, rmpp_lr_drop_epoch=100, rmpp_batch_size=4,
        rmpp_ablation_epochs=1, rmpp_ablation_images=16,
        n_train=48, n_eval=16,
    ),
    "cpu": Profile(
        name="cpu", input_size=128, output_size=32, sigma=1.0,
        nstack=2, hg_channels=64, hg_increase=32, hg_depth=4, feat_channels=16, tag_dim=1,
        max_people=16, lstm1_hidden=32, lstm1_depth=3, lstm2_hidden=32, lstm2_depth=2,
        loop=2, T=4, max_iterations=16,
        ae_epochs=20, ae_lr=1e-3, ae_lr_drop_epoch=17, ae_batch_size=16, ae_tag_weight=0.01,
        # batch 2 shared by two one-thread processes for 2 epochs at lr 1e-3 (1,200 Adam steps;
        # the lock-step batch 8 it replaces took 450 steps in 3 epochs, at about twice the
        # images per second): per image and per step it learns far more; dropping the rate
        # in epoch 2 did worse on val (book chapter 10, issue 16). Ablation rows: 16 images,
        # evaluated on 30 per split (32 and 50 until the cold build passed 45 minutes)
        rmpp_epochs=2, rmpp_lr=1e-3, rmpp_lr_drop_epoch=3, rmpp_batch_size=2, rmpp_procs=2,
        rmpp_ablation_epochs=1, rmpp_ablation_images=16, rmpp_ablation_eval=30,
        n_train=1200, n_eval=200,
    ),
    # The published GPU build (issue 13): the cpu profile's networks on 5x the training
    # images, 1.5x the AE epochs and 2x the decoder epochs (>= 10x the decoder's training
    # images), lock-step batches for the GPU (batch 1 is launch-bound there:
    # benchmarks/RESULTS.md). Sized from the throughput benchmarks to fit one <= 8 minute
    # command on one H100-class GPU; NOT yet run end to end (no GPU was lent to the session
    # that wrote it), and the batch / learning-rate pair is not tuned.
    "gpu": Profile(
        name="gpu", input_size=128, output_size=32, sigma=1.0,
        nstack=2, hg_channels=64, hg_increase=32, hg_depth=4, feat_channels=16, tag_dim=1,
        max_people=16, lstm1_hidden=32, lstm1_depth=3, lstm2_hidden=32, lstm2_depth=2,
        loop=2, T=4, max_iterations=16,
        ae_epochs=30, ae_lr=1e-3, ae_lr_drop_epoch=26, ae_batch_size=32, ae_tag_weight=0.01,
        rmpp_epochs=6, rmpp_lr=1e-3, rmpp_lr_drop_epoch=6, rmpp_batch_size=16,
        rmpp_ablation_epochs=1, rmpp_ablation_images=1200,
        n_train=6000, n_eval=500,
    ),
    "paper": Profile(
        name="paper", input_size=512, output_size=128, sigma=2.0,
        nstack=4, hg_channels=256, hg_increase=128, hg_depth=4, feat_channels=34, tag_dim=1,
        max_people=30, lstm1_hidden=128, lstm1_depth=3, lstm2_hidden=128, lstm2_depth=2,
        loop=2, T=8, max_iterations=30,
        ae_epochs=100, ae_lr=2e-4, ae_batch_size=16,
        rmpp_epochs=9, rmpp_lr=1e-4, rmpp_lr_drop_epoch=4, rmpp_batch_size=1,
        # eq. 2 as printed: the squared l2 distance summed over pixels, joints and people,
        # weighted equally with the stop term (section 3.2)
        rmpp_heatmap_norm="sum",
        n_train=0, n_eval=0,
    ),
}  # fmt: skip


# The long CPU build (issue 22): the cpu profile's networks, data and AE network (one AE
# training serves both builds), the decoder trained 4x as long -- 8 epochs of batch 2 over the
# 1,200 images (4,800 Adam steps against the default's 1,200) at the same constant rate, so the
# two builds differ in the decoder's budget only -- with 2 decoder seeds, evaluated after every
# epoch; ablation rows on 4x their default budget (128 images instead of 32). Sized for <= 4
# hours on 2 cores; resumable (a killed build picks up at the last finished epoch).
PROFILES["long"] = PROFILES["cpu"].replace(
    name="long", rmpp_epochs=8, rmpp_lr_drop_epoch=9, rmpp_ablation_images=128,
    rmpp_seeds=2, rmpp_curve=True, ae_from="cpu",
)  # fmt: skip


def get_profile(name: str | Profile, **overrides: Any) -> Profile:
    """Look a preset up by name (or pass a Profile through), applying field overrides."""
    if isinstance(name, Profile):
        prof = name
    else:
        try:
            prof = PROFILES[name]
        except KeyError:
            raise ValueError(
                f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}"
            ) from None
    return prof.replace(**overrides) if overrides else prof
