"""RMPP training: overfitting a handful of images (features given), resume equality, CLI."""

import json

import pytest
import torch

from rnnpose.config import get_profile
from rnnpose.decode import decode
from rnnpose.features import FeatureSet
from rnnpose.io import DataError
from rnnpose.train.rmpp import fit_rmpp, load_rmpp, person_targets

PROF = get_profile("tiny", rmpp_lr=5e-3, loop=0, max_iterations=5, T=2)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny ops: one intra-op thread is ~10x faster on a busy 2-core machine (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic_features(zs, seed=0, channels=8, repeat=1):
    """Features that show where the people's joints are (joint groups, max over people)."""
    g = torch.Generator().manual_seed(seed)
    kps, feats = [], []
    for z in zs:
        kp = torch.zeros(z, 17, 3)
        for k in range(z):
            centre = torch.rand(2, generator=g) * 32 + 16
            kp[k, :, :2] = centre + (torch.rand(17, 2, generator=g) - 0.5) * 24
        kp[..., 2] = 2
        kps.append(kp)
        f = 0.05 * torch.randn(channels, 16, 16, generator=g)
        if z:
            shared = person_targets(kp, PROF).amax(0)
            f += torch.stack([shared[c::channels].amax(0) for c in range(channels)])
        feats.append(f)
    x = torch.stack(feats).repeat(repeat, 1, 1, 1)
    return FeatureSet(x.half(), kps * repeat, list(range(len(x))), x.mean((0, 2, 3)),
                      x.var((0, 2, 3)))  # fmt: skip


def test_overfits_to_the_right_number_of_people(tmp_path):
    zs = [1, 2, 0, 3]
    fs = synthetic_features(zs, repeat=6)
    out = fit_rmpp(fs, PROF, tmp_path / "run", options={"epochs": 16, "batch_size": 4, "T": 4},
                   quiet=True)  # fmt: skip
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["stop"] < log[0]["stop"] and log[-1]["total"] < log[0]["total"]
    model, ae, prof, opts = load_rmpp(out, with_ae=False)
    assert ae is None and opts["batch_size"] == 4 and prof.rmpp_epochs == 16
    torch.testing.assert_close(model.norm.mean, fs.mean)  # dataset statistics are kept
    res = decode(model, fs.features[:4].float(), prof.omega, max_iterations=prof.max_iterations)
    assert [len(r["p"]) for r in res] == zs


def test_resume_equals_uninterrupted(tmp_path):
    fs = synthetic_features([2, 1, 0], repeat=2)
    opts = {"batch_size": 3, "T": 1}
    straight = fit_rmpp(fs, PROF, tmp_path / "a", options={**opts, "epochs": 2}, quiet=True)
    fit_rmpp(fs, PROF, tmp_path / "b", options={**opts, "epochs": 1}, quiet=True)
    resumed = fit_rmpp(fs, PROF, tmp_path / "b", options={**opts, "epochs": 2}, quiet=True,
                       resume=True)  # fmt: skip
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(resumed / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    with pytest.raises(DataError, match="cannot resume"):
        fit_rmpp(fs, PROF, tmp_path / "b", options={**opts, "epochs": 3, "T": 2}, quiet=True,
                 resume=True)  # fmt: skip


def test_literal_batch_one_trains(tmp_path):
    fs = synthetic_features([1, 0])
    out = fit_rmpp(fs, PROF, tmp_path / "r", options={"batch_size": 1, "epochs": 1,
                   "sgd": "exact", "ordering": "random"}, quiet=True)  # fmt: skip
    rec = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert rec["step"] == 2 and rec["total"] > 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "rmpp" and cfg["options"]["sgd"] == "exact"
