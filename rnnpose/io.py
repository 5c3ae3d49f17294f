"""Small file helpers: atomic writes, JSON with clear errors, and the environment stamp.

Every results file the package writes goes through :func:`atomic_write_json` (temp file in
the same folder, fsync, rename), so an interrupted run never leaves half a file behind, and
carries :func:`env_stamp` so a number can be traced to the code and machine that made it.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike


class DataError(ValueError):
    """Bad input: the message names the file and the field at fault."""


def atomic_write(path: PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(fh)`` on a temp file beside ``path``, then rename it over ``path``."""
    return atomic_write_all([(path, write, mode)])[0]


def _write_failed(path: Path, exc: BaseException) -> OSError:
    """One :class:`OSError` naming ``path`` for a write the file system refused (disk full, a
    file-size limit): Python raises ``OSError``, ``torch.save`` a ``RuntimeError``."""
    if isinstance(exc, OSError):
        code, reason = exc.errno or errno.EIO, exc.strerror or str(exc)
    else:  # torch's writer: "[enforce fail at inline_container.cc:N] . unexpected pos A vs B"
        code = errno.EIO
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        line = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", line)[:120]
        reason = f"the file system refused the write, e.g. a full disk or a file-size limit: {line}"
    return OSError(code, f"cannot be written ({reason}); nothing was replaced", str(path))


def atomic_write_all(writes: Sequence[tuple[PathLike, Callable[[Any], None], str]]) -> list[Path]:
    """Write several files as one step: each ``(path, write, mode)`` goes to a temp file beside
    ``path`` (``write(fh)``, flushed and fsynced); only when every one is written are they
    renamed into place, in order. A failed write (disk full, a file-size limit) removes the
    temp files and raises one :class:`OSError` naming the file: no file is replaced, so files
    that describe each other (a run's ``config.json`` and its checkpoint) never disagree."""
    done: list[tuple[str, Path]] = []
    try:
        for path, write, mode in writes:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            done.append((tmp, path))
            try:
                with os.fdopen(fd, mode) as fh:
                    write(fh)
                    fh.flush()
                    os.fsync(fh.fileno())
            except (OSError, RuntimeError) as exc:
                raise _write_failed(path, exc) from None
        for tmp, path in done:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in done:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise
    return [path for _, path in done]


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text), mode="w")


def atomic_write_json(path: PathLike, obj: Any, indent: int | None = 1) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def read_json(path: PathLike) -> Any:
    """Load a JSON file; a missing or malformed file raises :class:`DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to read") from None
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        raise DataError(f"{path}: unreadable JSON ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def check_output_dir(path: PathLike) -> Path:
    """Refuse, before anything is written, an output folder that cannot be one: an existing
    file, a path under a file, or a folder (or its nearest existing parent) that is not
    writable (no permission, read-only file system). Returns ``path`` as a ``Path``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: is a file, not a folder")
    probe = path
    while not probe.exists() and probe.parent != probe:  # the nearest existing ancestor
        probe = probe.parent
    if not probe.is_dir():
        raise DataError(f"{path}: cannot be created: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "" if probe == path else f"cannot be created: {probe}: "
        raise DataError(
            f"{path}: {where}not writable (no write permission or a read-only file system)"
        )
    return path


def git_commit(cwd: PathLike | None = None) -> str:
    """The current git commit (with ``-dirty`` if the tree has changes), or ``unknown``."""
    cwd = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``) and the vector instructions torch's kernels use
    on it (e.g. ``"AMD EPYC, AVX512 kernels"``): the same commit trains to other weights on
    another CPU model, and a virtual machine's model name alone does not tell an AVX2 host from
    an AVX-512 one, so every figure made on a CPU names both."""
    import torch

    name = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {torch.backends.cpu.get_cpu_capability()} kernels"


def env_stamp(device: str | None = None) -> dict[str, str]:
    """Versions, device and git commit, stamped into every results file."""
    import numpy
    import torch

    from rnnpose import __version__

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    name = device
    if str(device).startswith("cuda") and torch.cuda.is_available():
        name = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return {
        "rnnpose": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": name,
        "threads": str(torch.get_num_threads()),
        "cpu": cpu_model(),
        "git_commit": git_commit(),
    }
