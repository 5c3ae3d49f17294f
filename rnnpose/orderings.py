"""Orderings of LSTM1's persons on LSTM2's input (section 4.1, table 3).

``order(name, heatmaps, probs, generator) -> perm``: LSTM2 reads ``heatmaps[perm]`` and is
trained to reproduce the GT in that same order (eq. 4).

* ``learned``    -- identity: the order LSTM1 chose.
* ``random``     -- a random permutation drawn from ``generator`` (seeded by the caller).
* ``confidence`` -- p_t descending (stable: ties keep LSTM1's order).
* ``inverse``    -- LSTM1's order reversed.
* ``canonical``  -- by location: each person's position is the argmax of the SUM of its J
  heatmaps; persons are sorted by that position in raster order (row y ascending, then column
  x ascending; ties keep LSTM1's order).
"""

from __future__ import annotations

import torch

ORDERINGS: tuple[str, ...] = ("learned", "random", "confidence", "inverse", "canonical")


def order(
    name: str,
    heatmaps: torch.Tensor,
    probs: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A LongTensor permutation of the ``Z`` persons in ``heatmaps [Z,J,H,W]`` (on the CPU)."""
    z = heatmaps.shape[0]
    if name == "learned":
        return torch.arange(z)
    if name == "inverse":
        return torch.arange(z - 1, -1, -1)
    if name == "random":
        return torch.randperm(z, generator=generator)
    if name == "confidence":
        if probs is None:
            raise ValueError("ordering 'confidence' needs the stop probabilities p_t")
        return torch.sort(-probs.detach().cpu().double(), stable=True).indices
    if name == "canonical":
        flat = heatmaps.detach().sum(1).flatten(1).argmax(1).cpu()  # y * W + x
        return torch.sort(flat, stable=True).indices
    raise ValueError(f"unknown ordering {name!r}; choose one of {', '.join(ORDERINGS)}")
