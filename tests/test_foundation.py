"""Profiles, skeleton constants, atomic io, checkpoints and the CLI dispatcher."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnpose import skeleton
from rnnpose.checkpoint import (
    CheckpointError,
    load_checkpoint,
    restore_training_state,
    save_checkpoint,
)
from rnnpose.cli import main as cli_main
from rnnpose.config import OMEGA_DEFAULT, PROFILES, Profile, get_profile
from rnnpose.io import DataError, atomic_write_json, env_stamp, read_json


def test_profiles_geometry_and_paper_values():
    paper = PROFILES["paper"]
    assert (paper.input_size, paper.output_size, paper.nstack) == (512, 128, 4)
    assert paper.ae_out_channels == 68  # 17 heatmaps + 17 tags + 34 features (section 3.3)
    assert paper.rmpp_in_channels == 136
    assert (paper.lstm1_depth, paper.lstm2_depth, paper.loop) == (3, 2, 2)
    assert math.isclose(OMEGA_DEFAULT, 1 / (1 + math.e)) and paper.tau == 0.015
    for prof in PROFILES.values():
        assert prof.input_size == 4 * prof.output_size
        assert Profile.from_dict(prof.to_dict()) == prof


def test_get_profile_overrides_and_errors():
    p = get_profile("tiny", T=2)
    assert p.T == 2 and p.digest() != get_profile("tiny").digest()
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        get_profile("huge")
    with pytest.raises(ValueError, match="unknown profile field"):
        Profile.from_dict({**PROFILES["tiny"].to_dict(), "bogus": 1})


def test_skeleton_flip_is_an_involution_that_swaps_sides():
    flip = np.array(skeleton.FLIP_INDEX)
    assert (flip[flip] == np.arange(17)).all()
    for j, name in enumerate(skeleton.JOINT_NAMES):
        other = skeleton.JOINT_NAMES[flip[j]]
        assert other == name.replace("left", "#").replace("right", "left").replace("#", "right")
    assert len(skeleton.person_category()["skeleton"]) == 19
    assert skeleton.OKS_SIGMAS[0] == pytest.approx(0.026)


def test_atomic_json_roundtrip_and_malformed(tmp_path):
    path = atomic_write_json(tmp_path / "a" / "x.json", {"k": [1, 2]})
    assert read_json(path) == {"k": [1, 2]}
    assert not list(path.parent.glob("*.tmp"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [1, 2,,]}')
    with pytest.raises(DataError, match=r"bad\.json: malformed JSON at line 1"):
        read_json(bad)
    with pytest.raises(DataError, match="file not found"):
        read_json(tmp_path / "missing.json")


def test_env_stamp_names_torch_device_and_commit():
    stamp = env_stamp()
    assert stamp["torch"] == torch.__version__ and stamp["device"] == "cpu"
    assert stamp["git_commit"]


def test_checkpoint_roundtrip_restores_weights_optimiser_and_rng(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "c.pt", model=model, optimizer=opt, config={"a": 1},
                           epoch=3, step=7)  # fmt: skip
    expected_next = torch.rand(1)
    other = torch.nn.Linear(3, 2)
    other_opt = torch.optim.Adam(other.parameters(), lr=0.1)
    payload = load_checkpoint(path)
    restore_training_state(payload, other, other_opt)
    assert torch.equal(other.weight, model.weight)
    assert other_opt.state_dict()["state"][0]["step"] == 1
    assert torch.equal(torch.rand(1), expected_next)  # the RNG continues where it was saved
    assert (payload["epoch"], payload["step"], payload["config"]) == (3, 7, {"a": 1})


def test_checkpoint_truncated_and_pickled_code_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", model=torch.nn.Linear(2, 2), config={},
                           epoch=0, step=0)  # fmt: skip
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match=r"trunc\.pt: truncated or corrupt"):
        load_checkpoint(trunc)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "rnnpose-checkpoint-1", "code": json.JSONDecoder}, evil)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused: the file carries pickled"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_checkpoint_of_another_model_gets_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", model=torch.nn.Linear(2, 2), config={},
                           epoch=0, step=0)  # fmt: skip
    payload = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"c\.pt: field 'model': the weights do not fit.*"
                       r"size mismatch for weight"):  # fmt: skip
        restore_training_state(payload, torch.nn.Linear(3, 2), source=path)
    with pytest.raises(CheckpointError, match=r"c\.pt: field 'model'.*Missing key"):
        restore_training_state(payload, torch.nn.Sequential(torch.nn.Linear(2, 2)), source=path)


def test_resume_restores_python_numpy_and_torch_random_streams(tmp_path):
    import random

    random.seed(11)
    np.random.seed(11)  # noqa: NPY002 (the global streams are what a resume restores)
    torch.manual_seed(11)
    path = save_checkpoint(tmp_path / "c.pt", model=torch.nn.Linear(2, 2), config={},
                           epoch=1, step=1)  # fmt: skip
    want = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())  # noqa: NPY002
    random.seed(99)  # a fresh process would start from other states
    np.random.seed(99)  # noqa: NPY002
    torch.manual_seed(99)
    restore_training_state(load_checkpoint(path), torch.nn.Linear(2, 2))
    got = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())  # noqa: NPY002
    assert got == want
    random.seed(99)
    np.random.seed(99)  # noqa: NPY002
    restore_training_state(load_checkpoint(path), torch.nn.Linear(2, 2), rng=False)
    assert random.random() != want[0] and np.random.rand(3).tolist() != want[1]  # noqa: NPY002


def test_files_that_are_not_rnnpose_checkpoints(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)  # a bare state dict, no 'format' field
    with pytest.raises(CheckpointError, match=r"plain\.pt: not an rnnpose checkpoint"):
        load_checkpoint(plain)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(CheckpointError, match=r"tensor\.pt: not an rnnpose checkpoint"):
        load_checkpoint(tensor)
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match=r"notes\.pt: truncated or corrupt"):
        load_checkpoint(text)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt: truncated or corrupt"):
        load_checkpoint(empty)


@pytest.mark.parametrize("field", ["model", "config", "epoch", "step"])
def test_checkpoint_missing_a_field(tmp_path, field):
    path = save_checkpoint(tmp_path / "c.pt", model=torch.nn.Linear(2, 2), config={},
                           epoch=0, step=0)  # fmt: skip
    payload = torch.load(path, weights_only=True)
    del payload[field]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=rf"c\.pt: checkpoint lacks the field '{field}'"):
        load_checkpoint(path)


def _adam_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 2))
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 2)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "c.pt", model=model, optimizer=opt, config={}, epoch=1,
                           step=1)  # fmt: skip
    return load_checkpoint(path), path


def test_optimiser_state_that_does_not_fit(tmp_path):
    payload, path = _adam_checkpoint(tmp_path)
    fresh = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 2))
    # fewer parameters than the saved state
    part = torch.optim.Adam(list(fresh.parameters())[:2])
    with pytest.raises(CheckpointError, match=r"c\.pt: field 'optimizer': .*doesn't match"):
        restore_training_state(payload, fresh, part, source=path)
    # as many parameters, other shapes (another parameter order): refused at load, not at the
    # first optimiser step
    swapped = torch.optim.Adam(list(fresh.parameters())[::-1])
    with pytest.raises(CheckpointError, match=r"c\.pt: field 'optimizer': .*shape"):
        restore_training_state(payload, fresh, swapped, source=path)
    # another optimiser's state (SGD with momentum) given to Adam
    sgd = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(CheckpointError, match=r"c\.pt: field 'optimizer': .*another optimiser"):
        restore_training_state(payload, fresh, sgd, source=path)
    # the state that fits loads, and the next step runs
    good = torch.optim.Adam(fresh.parameters())
    restore_training_state(payload, fresh, good, source=path)
    fresh(torch.randn(4, 2)).sum().backward()
    good.step()
    assert good.state_dict()["state"][0]["step"] == 2


def test_cli_version_and_help(capsys):
    assert cli_main(["--version"]) == 0  # main returns argparse's exit status
    assert "rnnpose 0.1.0" in capsys.readouterr().out


@pytest.mark.parametrize(("field", "value", "message"), [
    ("input_size", -64, "field 'input_size' must be a finite number > 0, got -64"),
    ("input_size", 0, "must be a finite number > 0, got 0"),
    ("nstack", True, "field 'nstack' must be of type int, got True"),
    ("T", 2.0, "field 'T' must be of type int"),
    ("sigma", float("nan"), "field 'sigma' must be a finite number > 0, got nan"),
    ("loop", -1, "field 'loop' must be a finite number >= 0"),
    ("omega", 1.5, "field 'omega' must lie in (0, 1)"),
    ("name", 3, "field 'name' must be of type str"),
    ("extra", [], "field 'extra' must be an object"),
    ("output_size", 24, "'input_size' (64) must be a multiple of 'output_size' (24)"),
    ("rmpp_input", "maps", "field 'rmpp_input' must be one of features, features+tags"),
    ("rmpp_heatmap_norm", "l1", "field 'rmpp_heatmap_norm' must be one of person, joint, sum"),
    ("rmpp_procs", 0, "field 'rmpp_procs' must be a finite number > 0, got 0"),
])  # fmt: skip
def test_a_profile_read_back_is_checked(field, value, message):
    good = PROFILES["tiny"].to_dict()
    assert Profile.from_dict(dict(good)) == PROFILES["tiny"]
    with pytest.raises(ValueError, match=re.escape(message)):
        Profile.from_dict({**good, field: value})


def test_profile_reader_refuses_a_list_and_missing_fields():
    with pytest.raises(ValueError, match="a profile must be an object, got list"):
        Profile.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="missing profile field"):
        Profile.from_dict({"name": "x"})


def test_output_folder_check(tmp_path, monkeypatch):
    from rnnpose.io import check_output_dir

    (tmp_path / "f").write_text("x")
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    with pytest.raises(DataError, match="f: is a file, not a folder"):
        check_output_dir(tmp_path / "f")
    with pytest.raises(DataError, match=r"f/a/b: cannot be created: .*f is a file"):
        check_output_dir(tmp_path / "f" / "a" / "b")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if Path(p) == tmp_path
                        else real(p, m, *a, **k))  # fmt: skip
    with pytest.raises(DataError, match=r"x: cannot be created: .*: not writable"):
        check_output_dir(tmp_path / "x")
    with pytest.raises(DataError, match=r": not writable \(no write permission or a read-only"):
        check_output_dir(tmp_path)


def test_argument_types_and_one_line_errors(capsys):
    import argparse

    from rnnpose import cli_types

    assert cli_types.integer(1)("3") == 3 and cli_types.seed("0") == 0
    assert cli_types.number(0, 1, open_low=True, open_high=True)("0.25") == 0.25
    assert cli_types.device("cpu") == "cpu"
    for parse, text in [(cli_types.integer(1), "0"), (cli_types.integer(0), "1.5"),
                        (cli_types.seed, str(2**32)), (cli_types.number(0.0), "inf"),
                        (cli_types.number(0.0), "-1e-9"), (cli_types.device, "bogus"),
                        (cli_types.device, "meta")]:  # fmt: skip
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
    parser = cli_types.OneLineParser(prog="rnnpose x")
    parser.add_argument("--n", type=cli_types.integer(1), required=True)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--n", "0"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == (
        "rnnpose x: error: argument --n: must be an integer >= 1, got 0\n"
    )


def test_the_cpu_model_names_the_vector_kernels_torch_runs():
    """A virtual machine's model name ("AMD EPYC") is the same on an AVX2 and an AVX-512 host,
    where the same commit trains to other weights: every record names the kernels too."""
    import torch

    from rnnpose.io import cpu_model

    name, kernels = cpu_model().rsplit(", ", 1)
    assert name and kernels == f"{torch.backends.cpu.get_cpu_capability()} kernels"
