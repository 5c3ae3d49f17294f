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


@pytest.fixture
def one_thread():
    """Tiny ops run much faster with one intra-op thread on a busy 2-core machine; modules
    opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")`` (restored after)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
