"""``rnnpose import-ae``: an AE run folder from a pose-ae-train checkpoint (section 3.3).

The paper trains its decoder on "the extracted features" of the *pretrained* Associative
Embedding network (Newell et al. 2017), whose implementation is pose-ae-train. Its released
COCO model (about 0.59 AP single scale there) is a ``PoseNet(nstack=4, inp_dim=256,
oup_dim=68, increase=128)`` without BatchNorm. This module turns such a checkpoint into a run
folder of method ``ae`` and profile ``paper`` that ``train rmpp --ae``, ``eval``, ``predict``
and the notebooks (``ae_run`` parameter) read like an AE run trained here.

What carries over, and how:

* **The function.** rnnpose's :class:`~rnnpose.models.hourglass.PoseNet` with ``bn=False`` and
  the ``paper`` profile is pose-ae-train's network layer for layer: the stem, four recursive
  hourglasses (each level adds 128 channels), two 3x3 convs and the 1x1 output per stack, and
  ``x + merge_preds(pred) + merge_features(feature)`` between stacks
  (``tests/test_ae_import.py`` checks the output against the network computed from the raw
  tensors). Their inner hourglass levels always add 128 channels, whatever ``increase`` the
  outer one got, while rnnpose's pass ``hg_increase`` down; the two coincide only at 128, so
  a checkpoint whose first level adds another number is refused (the ``cpu``/``tiny``
  profiles are untouched).
* **Names.** The wrappers' prefixes (pose-ae-train's trainer module ``model.``, then
  ``DataParallel``'s ``module.``; any such prefix shared by every key) are cut; their
  ``Merge`` wraps a ``Conv``, so ``merge_*.N.conv.conv.*`` becomes ``merge_*.N.conv.*``; every
  other name is ours already. BatchNorm layers, when the checkpoint has them (their ``bn``
  switch, off by default), load as ours; a BatchNorm without ``num_batches_tracked`` (files
  of PyTorch < 0.4) gets 0, which no evaluation-mode forward reads.
* **The input.** pose-ae-train feeds RGB in [0, 1], NHWC, and permutes to NCHW at the
  network's door; rnnpose feeds RGB in [0, 1], NCHW: the same tensor after the permutation,
  so the run records ``input_convention: "rgb01"`` (what :func:`rnnpose.train.ae.load_ae`
  accepts) and nothing is rescaled. Both letterbox the image into the square input
  (centred, longer side fitted); sub-pixel placement follows rnnpose's convention.
* **The outputs.** Each stack's 68 channels are read as rnnpose reads its own: 17 heatmaps,
  17 tags, then 34 channels no loss touches. Those 34 channels of each of the 4 stacks are
  the decoder's features (c = 4 * 34 = 136, f = 34 in section 3.3), exactly as for an AE
  trained here.
* **Not carried over:** the optimiser state (the AE is frozen downstream), so an imported
  run cannot be continued with ``train ae --resume`` (refused, its ``bn`` differs); pose-ae-
  train's own multi-scale test (scales 2, 1, 0.5) -- ``eval --flip --scales`` chooses here.

The file is read with ``torch.load(weights_only=True)`` (a file carrying pickled code is
refused, never run); every key and shape is checked before anything is written; the first
one that does not fit is named in one line.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path
from typing import Any

import torch

from rnnpose import cli_types
from rnnpose.checkpoint import CheckpointError, read_torch_file, save_checkpoint
from rnnpose.config import Profile, get_profile
from rnnpose.io import PathLike
from rnnpose.models.hourglass import PoseNet
from rnnpose.train.ae import INPUT_CONVENTION
from rnnpose.train.common import RunDir

#: channels every inner hourglass level of pose-ae-train adds (its ``Hourglass`` default)
POSE_AE_INCREASE: int = 128
#: the name of pose-ae-train's first convolution, which locates the wrappers' prefix
_ANCHOR = "pre.0.conv.weight"
_MERGE = re.compile(r"^(merge_features|merge_preds)\.(\d+)\.conv\.conv\.")


def _state_dict(payload: Any, path: Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """The name -> tensor map of a pose-ae-train checkpoint (``{'state_dict', 'epoch',
    'optimizer'}``) or of a bare state dict, and the epoch where recorded."""
    if isinstance(payload, dict) and payload.get("format") == "rnnpose-checkpoint-1":
        raise CheckpointError(f"{path}: an rnnpose checkpoint, not pose-ae-train's: its run "
                              f"folder is an AE run already (field 'format')")  # fmt: skip
    epoch = None
    state = payload
    if isinstance(payload, dict) and "state_dict" in payload:
        state = payload["state_dict"]
        e = payload.get("epoch")
        epoch = e if isinstance(e, int) and not isinstance(e, bool) and e >= 0 else None
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: no state dict (expected a pose-ae-train checkpoint with "
                              f"a 'state_dict' field, or a state dict)")  # fmt: skip
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{path}: key {str(k)[:80]!r} does not hold a tensor "
                                  f"(a {type(v).__name__}): not a state dict")  # fmt: skip
    return state, epoch


def their_prefix(state: dict[str, torch.Tensor], path: Path) -> str:
    """The wrappers' prefix of every key (``''``, ``'module.'``, ``'model.module.'``, ...)."""
    hits = [k for k in state if k == _ANCHOR or k.endswith("." + _ANCHOR)]
    if len(hits) != 1:
        what = "no key" if not hits else f"{len(hits)} keys"
        raise CheckpointError(f"{path}: {what} ending in {_ANCHOR!r} (pose-ae-train's first "
                              f"convolution): not one pose-ae-train PoseNet; first key "
                              f"{next(iter(state))!r}")  # fmt: skip
    prefix = hits[0][: -len(_ANCHOR)]
    for k in state:
        if not k.startswith(prefix):
            raise CheckpointError(f"{path}: key {k!r} lies outside the network (the others "
                                  f"start with {prefix!r})")  # fmt: skip
    return prefix


def our_name(their_key: str, prefix: str) -> str:
    """pose-ae-train's parameter name -> rnnpose's (wrappers cut, ``Merge``'s conv unwrapped)."""
    return _MERGE.sub(r"\1.\2.conv.", their_key[len(prefix):])


def _check_layout(state: dict[str, torch.Tensor], prefix: str, profile: Profile,
                  path: Path) -> None:  # fmt: skip
    """Name the layout choices that differ from ``profile`` before comparing every key."""
    key = f"{prefix}features.0.0.low1.conv.weight"
    w = state.get(key)
    if w is not None and w.dim() == 4:
        increase = int(w.shape[0] - w.shape[1])
        if increase != POSE_AE_INCREASE:
            raise CheckpointError(
                f"{path}: key {key!r} has shape {tuple(w.shape)}: its hourglass adds {increase} "
                f"channels at the first level; pose-ae-train's inner levels always add "
                f"{POSE_AE_INCREASE}, so only increase={POSE_AE_INCREASE} is rnnpose's network "
                f"(profile {profile.name!r})"
            )
    stacks = {m.group(1) for k in state if (m := re.match(re.escape(prefix) + r"outs\.(\d+)\.", k))}
    if stacks and len(stacks) != profile.nstack:
        raise CheckpointError(f"{path}: {len(stacks)} stacks ('{prefix}outs.N'), profile "
                              f"{profile.name!r} has {profile.nstack}")  # fmt: skip


def convert_state_dict(
    state: dict[str, torch.Tensor], profile: Profile, path: PathLike = "checkpoint"
) -> tuple[PoseNet, dict[str, Any]]:
    """rnnpose's PoseNet carrying the weights of pose-ae-train's ``state`` (eval mode) and what
    the import found (``prefix``, ``bn``). :class:`CheckpointError` names the first key or
    shape that does not fit ``profile``'s network."""
    path = Path(path)
    if profile.hg_increase != POSE_AE_INCREASE:
        raise CheckpointError(f"{path}: profile {profile.name!r} has hg_increase "
                              f"{profile.hg_increase}; pose-ae-train's hourglass is rnnpose's "
                              f"only at {POSE_AE_INCREASE} (the paper profile)")  # fmt: skip
    prefix = their_prefix(state, path)
    _check_layout(state, prefix, profile, path)
    bn = any(k.endswith(".bn.running_mean") for k in state)
    model = PoseNet(profile, bn=bn)
    ours = model.state_dict()
    theirs_by_ours: dict[str, str] = {}
    for k in state:
        name = our_name(k, prefix)
        if name not in ours:
            raise CheckpointError(f"{path}: key {k!r} is not part of pose-ae-train's PoseNet in "
                                  f"profile {profile.name!r} (bn={bn})")  # fmt: skip
        theirs_by_ours[name] = k
    converted: dict[str, torch.Tensor] = {}
    for name, ref in ours.items():
        k = theirs_by_ours.get(name)
        if k is None:
            if name.endswith(".num_batches_tracked"):  # PyTorch < 0.4 did not save it
                converted[name] = torch.zeros_like(ref)
                continue
            raise CheckpointError(f"{path}: key {prefix + name!r} is missing (profile "
                                  f"{profile.name!r}, bn={bn})")  # fmt: skip
        t = state[k]
        if t.shape != ref.shape:
            raise CheckpointError(f"{path}: key {k!r} has shape {tuple(t.shape)}, profile "
                                  f"{profile.name!r} expects {tuple(ref.shape)}")  # fmt: skip
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{path}: key {k!r} holds NaN or infinite values")
        converted[name] = t.to(ref.dtype)
    model.load_state_dict(converted)
    return model.eval(), {"prefix": prefix, "bn": bn}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def import_ae(checkpoint: PathLike, out_dir: PathLike, profile: str | Profile = "paper") -> Path:
    """Write the AE run ``out_dir`` (``config.json``, ``last.pt``) from pose-ae-train's
    ``checkpoint``; everything is checked before the folder is touched. Returns ``out_dir``."""
    path = Path(checkpoint)
    prof = get_profile(profile)
    run = RunDir(out_dir)
    run.check_target("ae", resume=False)  # an existing run is never overwritten
    state, epoch = _state_dict(read_torch_file(path), path)
    model, found = convert_state_dict(state, prof, path)
    config = {
        "method": "ae",
        "profile": prof.to_dict(),
        "seed": 0,
        "epochs": epoch or 0,
        "bn": found["bn"],
        "input_convention": INPUT_CONVENTION,
        "imported": {"from": "pose-ae-train", "checkpoint": str(path.resolve()),
                     "sha256": _sha256(path), "epoch": epoch, "prefix": found["prefix"]},
    }  # fmt: skip
    save_checkpoint(run.last, model=model, config=config, epoch=epoch or 0, step=0)
    run.write_config(config, "cpu")
    return run.path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=cli_types.existing_file,
                        help="pose-ae-train checkpoint (e.g. exp/pretrained/checkpoint.pth.tar)")
    parser.add_argument("--out", required=True, type=cli_types.output_folder,
                        help="the AE run folder to write")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    out = import_ae(args.checkpoint, args.out)
    print(f"AE run (imported from pose-ae-train, profile paper): {out}")
    return 0
