"""Shared fixtures: the real COCO/OCHuman samples, the tiny profile, a tiny synthetic set."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnpose.config import Profile, get_profile


@pytest.fixture(scope="session")
def real_samples() -> Path:
    """The real COCO val2017 and OCHuman samples shipped in ``data/samples/`` (see its README)."""
    from rnnpose.experiments import samples_dir

    root = samples_dir()
    assert (root / "coco-val2017-sample" / "test_coco.json").is_file(), f"{root}: samples missing"
    return root


def pytest_configure(config: pytest.Config) -> None:
    """One intra-op thread per test process, and for the processes it starts (notebook
    kernels, torchrun workers, CLI children): ``make test`` runs two workers on 2 cores, and
    two threads each would only spin against each other on the suite's tiny tensors."""
    import os

    import torch

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_profile() -> Profile:
    return get_profile("tiny")


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-image, 64-px synthetic ``train`` dataset (seed 0), generated once per session.

    The folder holds ``annotations.json`` and ``images/``
    (see ``rnnpose.data.synthetic.dataset_files``).
    """
    from rnnpose.data.synthetic import generate

    return generate("train", 16, 0, 64, tmp_path_factory.mktemp("synth") / "tiny", quiet=True)
