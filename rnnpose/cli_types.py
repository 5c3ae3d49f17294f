"""Types of the command-line arguments, checked before anything is written.

Each subcommand's ``add_arguments`` passes these as argparse ``type=`` callables, so a bad
number or path ends in argparse's own error path: ONE line ``rnnpose COMMAND: error: argument
--X: what is wrong`` on stderr and exit status 2 (:class:`OneLineParser` drops the usage
lines argparse would print). Checks that need several arguments together (``--resume`` and a
run already in ``--out``) live with the command and raise :class:`rnnpose.io.DataError`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from rnnpose.io import DataError, check_output_dir

#: seeds reach numpy's legacy ``np.random.seed``, which takes 0 .. 2**32 - 1
SEED_MAX = 2**32 - 1


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``PROG: error: MESSAGE`` (exit 2).

    Sub-parsers made by ``add_subparsers`` inherit the class, so every subcommand gets it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.splitlines())}\n")


def integer(least: int, most: int | None = None) -> Callable[[str], int]:
    """An integer in ``[least, most]`` (``most`` None: no upper bound)."""
    bound = f">= {least}" if most is None else f"in {least}..{most}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {text!r}") from None
        if value < least or (most is not None and value > most):
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value

    parse.__name__ = f"integer {bound}"
    return parse


def number(least: float, most: float = math.inf, *, open_low: bool = False,
           open_high: bool = False) -> Callable[[str], float]:  # fmt: skip
    """A finite float in the interval from ``least`` to ``most`` (ends open as asked)."""
    if most == math.inf:
        bound = f"> {least:g}" if open_low else f">= {least:g}"
    else:
        bound = f"in {'(' if open_low else '['}{least:g}, {most:g}{')' if open_high else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
        low_ok = value > least if open_low else value >= least
        high_ok = value < most if open_high else value <= most
        if not (low_ok and high_ok):
            raise argparse.ArgumentTypeError(f"must be a number {bound}, got {value:g}")
        return value

    parse.__name__ = f"number {bound}"
    return parse


#: ``--seed``: numpy's legacy generator takes 0 .. 2**32 - 1
seed = integer(0, SEED_MAX)


def existing_file(text: str) -> Path:
    """A path to an existing regular file."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a folder, not a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{path}: no such file")
    return path


def existing_folder(text: str) -> Path:
    """A path to an existing folder."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a file, not a folder")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: no such folder")
    return path


def run_folder(text: str) -> Path:
    """An existing training run folder (one holding ``config.json``)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: not a run folder (a file, not a folder)")
    if not (path / "config.json").is_file():
        raise argparse.ArgumentTypeError(f"{path}: not a run folder (no config.json)")
    return path


def output_folder(text: str) -> Path:
    """A folder that can be written: not a file, not under a file, writable (or creatable)."""
    try:
        return check_output_dir(text)
    except DataError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def device(text: str) -> str:
    """A torch device string that parses and is present on this machine (cpu, cuda[:N], mps)."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise argparse.ArgumentTypeError(
            f"not a device: {text!r} (expected cpu, cuda, cuda:N or mps)"
        ) from None
    if dev.type == "cpu":
        return text
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: no CUDA device is available")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise argparse.ArgumentTypeError(f"{text}: this machine has {count} CUDA device(s)")
        return text
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text}: no MPS device is available")
        return text
    raise argparse.ArgumentTypeError(
        f"{text}: device type {dev.type!r} is not supported (cpu, cuda, cuda:N or mps)"
    )
