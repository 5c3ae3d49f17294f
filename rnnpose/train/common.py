"""What every training loop shares: seeding, the run folder, the NaN guard
(progress bars: :mod:`rnnpose.progress`).

A run folder holds ``config.json`` (profile, command-line options, environment stamp),
``last.pt`` (the newest checkpoint, written atomically after every epoch), ``epoch_NNN.pt``
and ``log.jsonl`` (one JSON line per epoch). ``--resume`` continues from ``last.pt``.
"""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnpose.checkpoint import load_checkpoint
from rnnpose.io import DataError, PathLike, atomic_write_json, env_stamp, read_json

#: the files that make a folder a run folder (any of them)
RUN_FILES: tuple[str, ...] = ("config.json", "last.pt", "log.jsonl")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the last good checkpoint is kept untouched."""


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) so reruns give the same numbers."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (seed the legacy global state too)
    torch.manual_seed(seed)


def check_finite(loss: torch.Tensor, *, step: int, epoch: int, run_dir: PathLike | None) -> None:
    """Raise :class:`NonFiniteLossError` naming the step if ``loss`` is NaN or infinite."""
    if not torch.isfinite(loss.detach()).all():
        where = ""
        if run_dir:
            last = Path(run_dir) / "last.pt"
            where = (f" (last good checkpoint: {last})" if last.is_file()
                     else " (no checkpoint was written)")  # fmt: skip
        raise NonFiniteLossError(
            f"non-finite loss {loss.item()} at epoch {epoch}, step {step}; training stopped{where}"
        )


class RunDir:
    """The folder of one training run."""

    def __init__(self, path: PathLike):
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    def epoch_path(self, epoch: int) -> Path:
        return self.path / f"epoch_{epoch:03d}.pt"

    def write_config(self, config: dict[str, Any], device: str | None = None) -> None:
        """Store the config beside the weights, stamped with the environment."""
        atomic_write_json(self.config_path, {**config, "env": env_stamp(device)})

    def read_config(self) -> dict[str, Any]:
        """``config.json`` of the run: a JSON object naming its ``method``."""
        if not self.config_path.is_file():
            raise DataError(f"{self.path}: not a run folder (no config.json)")
        config = read_json(self.config_path)
        if not isinstance(config, dict):
            raise DataError(f"{self.config_path}: expected a JSON object, got a "
                            f"{type(config).__name__}")  # fmt: skip
        if not isinstance(config.get("method"), str):
            raise DataError(f"{self.config_path}: field 'method' must be a string")
        return config

    def holds_run(self) -> bool:
        """Whether the folder holds (part of) a run: ``config.json``, ``last.pt``, a log or an
        ``epoch_NNN.pt``."""
        if not self.path.is_dir():
            return False
        return (any((self.path / name).exists() for name in RUN_FILES)
                or any(self.path.glob("epoch_*.pt")))  # fmt: skip

    def check_target(self, method: str, resume: bool) -> None:
        """Refuse, before anything is written, a folder this run cannot be written to: not a
        writable folder; holding a run while ``resume`` is off (no run is overwritten); holding
        a run of another method with ``resume`` on. A compatible ``--resume`` passes (its
        settings are compared with the checkpoint's by the training loop)."""
        from rnnpose.io import check_output_dir

        check_output_dir(self.path)
        if not self.holds_run():
            return
        if not resume:
            kind = "a"
            if self.config_path.is_file():
                with contextlib.suppress(DataError):
                    kind = f"an {self.read_config()['method']}"
            raise DataError(f"{self.path}: already holds {kind} run; pass --resume or choose "
                            f"another --out")  # fmt: skip
        if self.config_path.is_file():
            other = self.read_config()["method"]
            if other != method:
                raise DataError(f"{self.path}: cannot resume: it holds an {other} run, not "
                                f"{method}")  # fmt: skip

    def commit(self, payload: dict[str, Any], record: dict[str, Any], *,
               config: dict[str, Any] | None = None, device: str | None = None) -> None:
        """End an epoch as one step: ``last.pt`` and ``epoch_NNN.pt`` (the checkpoint
        ``payload``, :func:`rnnpose.checkpoint.checkpoint_payload`), the ``log.jsonl`` line
        ``record`` and, when given, ``config.json`` (this invocation's first epoch: a new run, or
        a resume that changes ``epochs``) are each written to a temp file first and renamed
        into place only when all are written, so ``config.json`` never describes another
        checkpoint than ``last.pt``. A failed write (disk full, a file-size limit) raises one
        :class:`OSError` naming the file, and the run's files are left as they were (a new
        run's folder is removed again)."""
        from rnnpose.checkpoint import payload_writer
        from rnnpose.io import atomic_write_all

        created = not self.path.exists()
        log = self.path / "log.jsonl"
        old = log.read_text() if log.exists() else ""
        text = old + json.dumps(record) + "\n"
        # the log so far travels in the checkpoint too: the renames below are not one
        # operation, and a run killed between them is made whole again on resume
        payload = {**payload, "extra": {**(payload.get("extra") or {}),
                                        "log": [*self.read_log(), record]}}  # fmt: skip
        writes: list[tuple[PathLike, Any, str]] = [
            (self.epoch_path(int(payload["epoch"])), payload_writer(payload), "wb"),
            (self.last, payload_writer(payload), "wb"),
            (log, lambda fh: fh.write(text), "w"),
        ]
        if config is not None:
            stamped = json.dumps({**config, "env": env_stamp(device)}, indent=1) + "\n"
            writes.append((self.config_path, lambda fh: fh.write(stamped), "w"))
        try:
            atomic_write_all(writes)
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    self.path.rmdir()  # empty again: the temp files are gone
            raise

    def read_log(self) -> list[dict[str, Any]]:
        """The records of ``log.jsonl`` (one per epoch)."""
        path = self.path / "log.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def resume_payload(self, resume: bool) -> dict[str, Any] | None:
        """The checkpoint to continue from, or None for a fresh run. ``log.jsonl`` is made to
        agree with it (the records the checkpoint carries: a run killed between the renames
        of :meth:`commit` may have its checkpoint without its log line, or the reverse)."""
        if not (resume and self.last.exists()):
            return None
        payload = load_checkpoint(self.last)
        records = (payload.get("extra") or {}).get("log")
        if isinstance(records, list) and records != self.read_log():
            from rnnpose.io import atomic_write_text

            atomic_write_text(self.path / "log.jsonl",
                              "".join(json.dumps(r) + "\n" for r in records))  # fmt: skip
        return payload
