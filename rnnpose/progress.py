"""Progress bars for every long loop of the package (data generation, feature extraction,
training, prediction, sweeps); a module of its own on the bottom floor so that any floor can
use it without importing a higher one."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress(iterable: Iterable | None = None, *, quiet: bool = False, **kwargs: Any) -> tqdm:
    """A tqdm bar that is silent with ``quiet``, when stderr is not a terminal, or when the
    environment variable ``RNNPOSE_QUIET`` is set."""
    disable = quiet or not sys.stderr.isatty() or bool(os.environ.get("RNNPOSE_QUIET"))
    return tqdm(iterable, disable=disable, dynamic_ncols=True, **kwargs)
