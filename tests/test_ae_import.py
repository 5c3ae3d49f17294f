"""``rnnpose import-ae``: a pose-ae-train checkpoint becomes an AE run computing its function.

The reference network (``tests/pose_ae_reference.py``) is pose-ae-train's, written from its
architecture with ``torch.nn.functional`` on the raw tensors; the imported run is loaded the
way every command loads an AE run (:func:`rnnpose.train.ae.load_ae`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pose_ae_reference as ref
import pytest
import torch

from rnnpose.cli import main
from rnnpose.config import get_profile
from rnnpose.models.hourglass import rmpp_features
from rnnpose.train.ae import load_ae
from rnnpose.train.ae_import import import_ae


def _save_theirs(path: Path, state: dict, *, legacy: bool = False, epoch: int = 7) -> Path:
    """A checkpoint as pose-ae-train's ``save()`` writes it (optimizer state included)."""
    opt_state = {"state": {0: {"step": 3, "exp_avg": torch.zeros(2)}},
                 "param_groups": [{"lr": 2e-4, "params": [0]}]}  # fmt: skip
    torch.save({"state_dict": state, "optimizer": opt_state, "epoch": epoch}, path,
               _use_new_zipfile_serialization=not legacy)  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("prefix", "bn", "legacy"),
    [("model.module.", False, False),  # the released model: trainer + DataParallel, no BN
     ("module.", True, True)],  # BatchNorm on, PyTorch<0.4-style file without num_batches
)  # fmt: skip
def test_imported_network_computes_pose_ae_train(tmp_path, prefix, bn, legacy):
    state = ref.random_state(ref.their_shapes(bn=bn), seed=1, prefix=prefix)
    ckpt = _save_theirs(tmp_path / "checkpoint.pth.tar", state, legacy=legacy)
    run = import_ae(ckpt, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    assert config["bn"] is bn and config["input_convention"] == "rgb01"
    assert config["imported"]["prefix"] == prefix and config["imported"]["epoch"] == 7
    model, profile = load_ae(run)
    assert profile == get_profile("paper")
    # RGB in [0, 1], NHWC at their door; ours NCHW. 128 px (the hourglass's 4 levels down to
    # 2 x 2) keeps it fast: the net is conv-only, so its function does not depend on the size
    imgs = torch.rand(1, 128, 128, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        theirs = ref.forward(state, imgs, prefix=prefix)
        ours = model.forward_raw(imgs.permute(0, 3, 1, 2))
    out = model.split(ours)
    assert ours.shape == theirs.shape == (1, 4, 68, 32, 32)
    assert theirs.abs().max() > 0.1  # a network that computes something
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * float(theirs.abs().max()))
    # the decoder's features: channels 34..67 of every stack's output, stacks concatenated
    feats = rmpp_features(out)
    assert feats.shape == (1, 136, 32, 32)
    torch.testing.assert_close(feats, theirs[:, :, 34:68].reshape(1, 136, 32, 32),
                               rtol=1e-4, atol=1e-4 * float(theirs.abs().max()))  # fmt: skip
    torch.testing.assert_close(out.heatmaps, theirs[:, :, :17], rtol=1e-4,
                               atol=1e-4 * float(theirs.abs().max()))  # fmt: skip


def _zeros(prefix: str = "model.module.", **layout) -> dict[str, torch.Tensor]:
    return {prefix + k: torch.zeros(s) for k, s in ref.their_shapes(**layout).items()}


class _Code:  # a pickled object: a weights-only load must refuse it
    def __reduce__(self):
        return (print, ("this ran",))


def _truncated(path: Path) -> Path:
    torch.save({"state_dict": {"pre.0.conv.weight": torch.zeros(64, 3, 7, 7)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


BAD = {
    "increase 64": (lambda p: _save_theirs(p, _zeros(increase=64)),
                    "key 'model.module.features.0.0.low1.conv.weight' has shape (320, 256, 3, 3): "
                    "its hourglass adds 64 channels"),
    "heatmaps and tags only (oup_dim 34)": (
        lambda p: _save_theirs(p, _zeros(oup_dim=34)),
        "key 'model.module.outs.0.conv.weight' has shape (34, 256, 1, 1), profile 'paper' "
        "expects (68, 256, 1, 1)"),
    "two stacks": (lambda p: _save_theirs(p, _zeros(nstack=2)), "2 stacks"),
    "another architecture (an rnnpose checkpoint)": (
        lambda p: torch.save({"format": "rnnpose-checkpoint-1", "model": {}, "epoch": 0}, p),
        "an rnnpose checkpoint, not pose-ae-train's"),
    "optimizer state only": (
        lambda p: torch.save({"optimizer": {"state": {}}, "epoch": 3}, p),
        "key 'optimizer' does not hold a tensor"),
    "a state dict of another network": (
        lambda p: torch.save({"state_dict": {"layer1.0.conv1.weight": torch.zeros(1)}}, p),
        "no key ending in 'pre.0.conv.weight'"),
    "an extra key": (
        lambda p: _save_theirs(p, {**_zeros(), "model.module.extra.weight": torch.zeros(1)}),
        "key 'model.module.extra.weight' is not part of pose-ae-train's PoseNet"),
    "a missing key": (
        lambda p: _save_theirs(p, {k: v for k, v in _zeros().items()
                                   if k != "model.module.outs.3.conv.bias"}),
        "key 'model.module.outs.3.conv.bias' is missing"),
    "NaN weights": (
        lambda p: _save_theirs(p, {**_zeros(), "model.module.pre.0.conv.bias":
                                   torch.full((64,), float("nan"))}),
        "key 'model.module.pre.0.conv.bias' holds NaN"),
    "truncated": (_truncated, "truncated or corrupt checkpoint"),
    "pickled code": (lambda p: torch.save({"state_dict": _Code()}, p),
                     "refused: the file carries pickled Python objects"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_checkpoint_is_one_line_exit_2_nothing_written(tmp_path, capsys, case):
    make, expected = BAD[case]
    ckpt = tmp_path / "checkpoint.pth.tar"
    make(ckpt)
    out = tmp_path / "run"
    code = main(["import-ae", str(ckpt), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"rnnpose import-ae: error: {ckpt}: "), err
    assert expected in err, err
    assert "this ran" not in capsys.readouterr().out
    assert not out.exists()


def test_import_refuses_an_existing_run(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text('{"method": "ae"}')
    before = (tmp_path / "run" / "config.json").read_bytes()
    ckpt = _save_theirs(tmp_path / "c.pth.tar", _zeros())
    assert main(["import-ae", str(ckpt), "--out", str(tmp_path / "run")]) == 2
    assert "already holds an ae run" in capsys.readouterr().err
    assert (tmp_path / "run" / "config.json").read_bytes() == before
    assert not (tmp_path / "run" / "last.pt").exists()


def test_load_ae_refuses_another_input_convention(tmp_path):
    from rnnpose.io import DataError

    run = import_ae(_save_theirs(tmp_path / "c.pth.tar", _zeros()), tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "input_convention": "bgr255"}))
    with pytest.raises(DataError, match="field 'input_convention' must be 'rgb01'"):
        load_ae(run)


def test_an_imported_run_is_a_notebook_s_ae_run(tmp_path):
    """The paper profile's imported network as a notebook's ``ae_run`` (an Experiment uses it
    instead of training one; another profile's Experiment refuses it). ``eval`` and
    ``predict`` on it are walked in tests/test_paper_walk.py."""
    from rnnpose.experiments import Experiment
    from rnnpose.io import DataError

    state = ref.random_state(ref.their_shapes(), seed=3, prefix="model.module.")
    ckpt = _save_theirs(tmp_path / "checkpoint.pth.tar", state)
    del state
    run = tmp_path / "ae"
    assert main(["import-ae", str(ckpt), "--out", str(run)]) == 0
    assert Experiment("paper", ae_run=run).ae() == run
    with pytest.raises(DataError, match="is not this experiment's profile 'cpu'"):
        Experiment("cpu", ae_run=run).ae()
