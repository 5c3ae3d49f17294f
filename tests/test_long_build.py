"""The long CPU build (issue 22): the `long` profile is the `cpu` profile with a longer decoder
budget on the same AE network; its runs resume after a kill and end with the numbers of an
uninterrupted run; its main runs are evaluated after every epoch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from rnnpose.config import PROFILES, Profile, get_profile
from rnnpose.experiments import Experiment


def adam_steps(p: Profile) -> int:
    return p.rmpp_epochs * -(-p.n_train // p.rmpp_batch_size)


def test_long_is_the_cpu_profile_with_four_times_the_decoder_budget():
    cpu, long = PROFILES["cpu"], PROFILES["long"]
    differ = {k for k, v in cpu.to_dict().items() if long.to_dict()[k] != v}
    assert differ == {"name", "rmpp_epochs", "rmpp_lr_drop_epoch", "rmpp_ablation_images",
                      "rmpp_seeds", "rmpp_curve", "ae_from"}  # fmt: skip
    assert adam_steps(long) >= 4 * adam_steps(cpu) == 4 * 1200
    assert long.rmpp_ablation_images * long.rmpp_ablation_epochs >= 4 * (
        cpu.rmpp_ablation_images * cpu.rmpp_ablation_epochs)
    assert long.rmpp_seeds >= 2 and long.rmpp_curve
    assert long.rmpp_lr_drop_epoch > long.rmpp_epochs  # the cpu profile's constant rate
    assert Experiment("long").ae_profile == cpu


def test_ae_from_must_agree_on_the_ae_and_name_a_preset():
    odd = get_profile("long", hg_channels=32)
    with pytest.raises(ValueError, match="hg_channels"):
        _ = Experiment(odd).ae_profile
    data = {**PROFILES["long"].to_dict(), "ae_from": "nosuch"}
    with pytest.raises(ValueError, match="ae_from"):
        Profile.from_dict(data)


CHILD = textwrap.dedent("""
    import sys, torch
    from rnnpose.config import get_profile
    from rnnpose.experiments import Experiment
    torch.set_num_threads(1)
    prof = get_profile("tiny").replace(name="tinylong", n_train=16, n_eval=8, rmpp_epochs=2,
                                       rmpp_batch_size=2, rmpp_procs=2, rmpp_curve=True)
    Experiment(prof, artifacts=sys.argv[1], quiet=True).rmpp()
""")


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "last.pt", weights_only=True)["model"]


def test_a_profile_with_ae_from_uses_that_presets_ae_run(tmp_path, monkeypatch):
    """The long build trains no AE of its own: ``ae_from`` names the cpu build's cache entry
    (here: a tiny-derived profile and the tiny preset's; the training itself is stubbed)."""
    import rnnpose.train.ae as train_ae

    trained = []
    monkeypatch.setattr(train_ae, "train_ae", lambda prof, *a, **k: trained.append(prof.name))
    longer = get_profile("tiny").replace(name="tinylong", rmpp_epochs=8, ae_from="tiny")
    ae = Experiment(longer, artifacts=tmp_path, quiet=True).ae()
    assert ae.name.startswith("ae-tiny-") and trained == ["tiny"]
    assert Experiment("tiny", artifacts=tmp_path, quiet=True).ae() == ae
    assert trained == ["tiny"]  # the second asks find the first's run
    own = Experiment(get_profile("tiny").replace(name="tinylong"), artifacts=tmp_path).ae()
    assert own != ae and trained == ["tiny", "tinylong"]


def test_a_killed_run_resumes_and_ends_as_an_uninterrupted_one(tmp_path):
    """A main run of a tiny `long`-like profile (batch 2 shared by two one-thread processes,
    as the long build trains, evaluated after every epoch) killed once its first epoch is
    checkpointed, then asked for again, ends with the weights and the per-epoch curve of a
    run never interrupted."""
    prof = get_profile("tiny").replace(name="tinylong", n_train=16, n_eval=8, rmpp_epochs=2,
                                       rmpp_batch_size=2, rmpp_procs=2,
                                       rmpp_curve=True)  # fmt: skip
    art = tmp_path / "artifacts"
    exp = Experiment(prof, artifacts=art, quiet=True)
    first = exp.rmpp()
    whole = first.rename(tmp_path / "uninterrupted")  # the same run, never interrupted, aside

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(art)], env=env,
                             start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 600
    while not list((art / "runs").glob("rmpp-tinylong-*/epoch_001.pt")):
        assert child.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(child.pid, signal.SIGKILL)  # the processes sharing the batch die with it
    child.wait()
    (run,) = (art / "runs").glob("rmpp-tinylong-*")
    assert run == first
    assert not (run / "done.json").exists() and not (run / "epoch_002.pt").exists()

    kept = (run / "epoch_001.pt").stat().st_ino
    assert exp.rmpp() == run  # asked for again: resumed from its checkpoint,
    assert (run / "epoch_001.pt").stat().st_ino == kept  # not trained again from the start
    wa, wb = _weights(run), _weights(whole)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name
    curve = exp.curve(run, splits=["sparse"])
    assert list(curve["epoch"]) == [1, 2]
    assert list(curve["step"]) == [8, 16]  # 16 images, batch 2
    assert curve.equals(exp.curve(whole, splits=["sparse"]))


def test_the_oracle_grouping_is_cached_beside_the_ae_run(tmp_path, monkeypatch):
    """Chapter 2 and chapter 9 share one ground-truth grouping of AE's heatmaps per split."""
    import rnnpose.analysis as analysis
    from rnnpose.evaluate import evaluate_keypoints

    exp = Experiment("tiny", artifacts=tmp_path, quiet=True)
    ae = exp.ae()
    sp = exp.split("sparse")
    expected = evaluate_keypoints(sp.ann_file, analysis.oracle_results(
        ae, sp.ann_file, sp.image_root, quiet=True))  # fmt: skip
    assert exp.oracle(ae, "sparse") == expected
    assert len(list(ae.glob("oracle-sparse-*.json"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(analysis, "oracle_results", fail)
    assert exp.oracle(ae, "sparse") == expected  # read back, not recomputed


def test_a_resume_makes_the_log_agree_with_the_checkpoint(tmp_path):
    """A run killed between the renames that end an epoch (checkpoint in place, log line not,
    or the reverse) resumes with the log the checkpoint carries."""
    from rnnpose.checkpoint import checkpoint_payload
    from rnnpose.train.common import RunDir

    run = RunDir(tmp_path / "run")
    model = torch.nn.Linear(2, 1)
    for epoch in (1, 2):
        run.commit(checkpoint_payload(model=model, config={"method": "ae"}, epoch=epoch,
                                      step=10 * epoch), {"epoch": epoch, "loss": 1.0 / epoch})
    full = run.read_log()
    assert [r["epoch"] for r in full] == [1, 2]
    log = tmp_path / "run" / "log.jsonl"
    log.write_text(log.read_text().splitlines(keepends=True)[0])  # epoch 2's line lost
    assert run.resume_payload(True)["epoch"] == 2
    assert run.read_log() == full
    log.write_text(log.read_text() + '{"epoch": 3, "loss": 0.3}\n')  # a line ahead of it
    run.resume_payload(True)
    assert run.read_log() == full
    assert run.resume_payload(False) is None


def test_an_interrupted_run_resumes_only_on_the_cpu_model_it_started_on(tmp_path, monkeypatch):
    """A build killed on one machine and started again on another CPU model refuses, naming the
    run and both CPUs, before training: the two would train to other weights (issue 22)."""
    import json

    import rnnpose.train.ae as train_ae
    from rnnpose.io import DataError, cpu_model

    def killed(prof, data, out, **kw):  # the run starts on another machine and is killed
        Path(out).mkdir(parents=True)
        (Path(out) / "config.json").write_text(json.dumps({"method": "ae",
                                                           "env": {"cpu": "Other CPU, AVX2"}}))
        raise KeyboardInterrupt

    monkeypatch.setattr(train_ae, "train_ae", killed)
    with pytest.raises(KeyboardInterrupt):
        Experiment("tiny", artifacts=tmp_path, quiet=True).ae()
    resumed = []
    monkeypatch.setattr(train_ae, "train_ae", lambda prof, data, out, **kw: resumed.append(out))
    with pytest.raises(DataError, match=r"field 'env.cpu'.*started on Other CPU, AVX2"):
        Experiment("tiny", artifacts=tmp_path, quiet=True).ae()
    assert resumed == []  # refused before any training
    (cfg,) = (tmp_path / "runs").glob("ae-tiny-*/config.json")
    cfg.write_text(json.dumps({"method": "ae", "env": {"cpu": cpu_model()}}))
    run = Experiment("tiny", artifacts=tmp_path, quiet=True).ae()  # its own CPU: it resumes
    assert resumed == [run] and (run / "done.json").is_file()


def test_a_book_build_resumed_on_another_cpu_stops_with_one_line(tmp_path, monkeypatch, capsys):
    import json

    import rnnpose.book as book
    import rnnpose.experiments as experiments

    run = tmp_path / "runs" / "rmpp-cpu-0123456789ab"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"method": "rmpp",
                                                 "env": {"cpu": "Other CPU, AVX2 kernels"}}))
    monkeypatch.setattr(experiments, "ARTIFACTS", tmp_path)
    executed = []
    monkeypatch.setattr(book, "execute_all", lambda *a, **k: executed.append(1) or {})
    assert book.main(["--profile", "tiny", "--no-html"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rmpp-cpu-0123456789ab/config.json: field 'env.cpu'" in err[0]
    assert executed == []  # refused before any notebook ran
    (run / "done.json").write_text("{}")  # a finished run is only read, on any machine
    monkeypatch.setattr(book, "write_build_results", lambda params, seconds: tmp_path / "r.json")
    assert book.main(["--profile", "tiny", "--no-html"]) == 0 and executed == [1]
