"""Checkpoints that survive: atomic writes, safe loads, everything a resume needs.

A checkpoint holds the weights, the optimiser and scheduler state, the RNG states, the
epoch/step counters and the config. It is written to a temp file and renamed, so an interrupt
never leaves a half-written checkpoint, and it is read with ``torch.load(weights_only=True)``
so a file carrying pickled code is refused rather than executed.
"""

from __future__ import annotations

import pickle
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnpose.io import PathLike, atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and why."""


def capture_rng() -> dict[str, Any]:
    """The global RNG states (python, numpy legacy, torch CPU, and CUDA when present)."""
    py = random.getstate()
    np_state = np.random.get_state()  # noqa: NPY002 (global state others may use)
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state((npst[0], npst[1].numpy().astype(np.uint32), *npst[2:]))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_payload(
    *,
    model: torch.nn.Module,
    config: dict[str, Any],
    epoch: int,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A full training state: weights, optimiser, scheduler, RNG states, counters, config."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    return {
        "format": "rnnpose-checkpoint-1",
        "model": model.state_dict(),
        "config": config,
        "epoch": int(epoch),
        "step": int(step),
        "rng": capture_rng(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "extra": extra or {},
    }


def payload_writer(payload: dict[str, Any]) -> Callable[[Any], None]:
    """``write(fh)`` for :func:`rnnpose.io.atomic_write_all`: ``torch.save`` of ``payload``."""
    return lambda fh: torch.save(payload, fh)


def save_checkpoint(path: PathLike, **state: Any) -> Path:
    """Write a full training state (:func:`checkpoint_payload`'s arguments) atomically."""
    return atomic_write(path, payload_writer(checkpoint_payload(**state)))


def read_torch_file(path: PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` of any torch.save file (the zip format and the legacy
    one); a missing, truncated or code-carrying file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        code = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) (\S+)", str(exc))
        if code:  # a pickled class or function: refused, never run
            raise CheckpointError(
                f"{path}: refused: the file carries pickled Python objects that a weights-only "
                f"load does not run ({code.group(1)})"
            ) from None
        raise CheckpointError(  # not a torch.save file at all (text, JSON, random bytes, ...)
            f"{path}: truncated or corrupt checkpoint, cannot be read (not a torch.save file)"
        ) from None
    except Exception as exc:  # noqa: BLE001 (the unpickler fails on garbage in many ways)
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint, cannot be read ({_first_line(exc)})"
        ) from None
    return payload


def load_checkpoint(path: PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; a missing, truncated or code-carrying file gets a clear error."""
    path = Path(path)
    payload = read_torch_file(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != "rnnpose-checkpoint-1":
        raise CheckpointError(f"{path}: not an rnnpose checkpoint (no 'format' field)")
    for key in ("model", "config", "epoch", "step"):
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint lacks the field {key!r}")
    check_payload(payload, path)
    return payload


def check_payload(payload: dict[str, Any], path: PathLike) -> None:
    """The types of a checkpoint's fields: weights a name -> tensor map, ``config`` (and
    ``optimizer``, ``rng``, ``extra`` when present) objects, ``epoch``/``step`` counts."""
    model = payload["model"]
    if not isinstance(model, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()
    ):
        raise CheckpointError(f"{path}: field 'model' must map parameter names to tensors")
    check_finite_weights(model, path)
    for key in ("epoch", "step"):
        v = payload[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise CheckpointError(f"{path}: field {key!r} must be an integer >= 0, got "
                                  f"{repr(v)[:40]}")  # fmt: skip
    if not isinstance(payload["config"], dict):
        raise CheckpointError(f"{path}: field 'config' must be an object")
    for key in ("optimizer", "scheduler", "rng", "extra"):
        if payload.get(key) is not None and not isinstance(payload[key], dict):
            raise CheckpointError(f"{path}: field {key!r} must be an object")


def check_finite_weights(weights: dict[str, torch.Tensor], path: PathLike) -> None:
    """Refuse weights holding NaN or inf (a diverged run would otherwise evaluate as AP 0 and
    predict nobody, exit 0): the message names the file and the first such tensor."""
    for name, value in weights.items():
        if value.is_floating_point() or value.is_complex():
            finite = torch.isfinite(value)
            if not bool(finite.all()):
                kind = "nan" if bool(torch.isnan(value).any()) else "inf"
                raise CheckpointError(
                    f"{path}: field 'model': tensor {name!r} holds non-finite values ({kind}, "
                    f"{int((~finite).sum())} of {value.numel()}); the run diverged or the file "
                    "is damaged"
                )


def _load_optimizer(optimizer: torch.optim.Optimizer, saved: Any, source: PathLike) -> None:
    """``optimizer.load_state_dict`` that refuses, at load, a state torch would accept but the
    first ``step()`` would crash on: another optimiser's settings, or per-parameter state
    shaped unlike the parameters."""
    where = f"{source}: field 'optimizer'"
    known = {k for g in optimizer.param_groups for k in g}
    try:
        foreign = sorted({k for g in saved["param_groups"] for k in g} - known)
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: not an optimiser state ({exc!r})") from None
    if foreign:
        raise CheckpointError(
            f"{where}: saved by another optimiser (its settings {', '.join(foreign)} are not "
            f"{type(optimizer).__name__}'s)"
        )
    try:
        optimizer.load_state_dict(saved)
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for k, p in enumerate(params):
        for name, value in optimizer.state.get(p, {}).items():
            if torch.is_tensor(value) and value.dim() > 0 and value.shape != p.shape:
                raise CheckpointError(
                    f"{where}: state {name!r} of parameter #{k} has shape "
                    f"{tuple(value.shape)}, the parameter {tuple(p.shape)}"
                )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def restore_training_state(
    payload: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    rng: bool = True,
    source: PathLike = "checkpoint",
) -> None:
    """Load weights (and optimiser, scheduler, RNG) from a :func:`load_checkpoint` payload.

    Weights that do not fit the model (another profile, another architecture) raise
    :class:`CheckpointError` naming ``source`` (the file) and the first mismatches.
    """
    try:
        getattr(model, "module", model).load_state_dict(payload["model"])
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()][:3]
        raise CheckpointError(
            f"{source}: field 'model': the weights do not fit this model (was it trained with "
            f"another profile?): {' '.join(lines) or exc}"
        ) from None
    bad_state = (ValueError, KeyError, TypeError, IndexError, RuntimeError)
    if optimizer is not None and payload.get("optimizer") is not None:
        _load_optimizer(optimizer, payload["optimizer"], source)
    if scheduler is not None and payload.get("scheduler") is not None:
        try:
            scheduler.load_state_dict(payload["scheduler"])
        except bad_state as exc:
            raise CheckpointError(f"{source}: field 'scheduler': {exc}") from None
    if rng and payload.get("rng") is not None:
        try:
            restore_rng(payload["rng"])
        except bad_state as exc:
            raise CheckpointError(f"{source}: field 'rng': cannot restore ({exc})") from None
