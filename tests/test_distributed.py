"""Multi-process training: ``torchrun --nproc_per_node 2 -m rnnpose train ...`` on the CPU
(gloo), tiny profile. Rank 0 alone writes the run folder; the RMPP gradient of a batch is the
sum over the processes' shares, so the 2-process run matches the 1-process one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from test_train_rmpp import PROF, synthetic_features

from rnnpose.checkpoint import load_checkpoint, save_checkpoint
from rnnpose.cli import main
from rnnpose.config import get_profile
from rnnpose.models.hourglass import PoseNet
from rnnpose.train.accel import DistInfo, all_reduce_grads, resolve_switch
from rnnpose.train.common import RunDir
from rnnpose.train.rmpp import fit_rmpp


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "rnnpose", *args]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


def test_switches_default_on_for_cuda_only():
    assert resolve_switch("auto", torch.device("cpu")) is False
    assert resolve_switch("auto", torch.device("cuda")) is True
    assert resolve_switch("on", torch.device("cpu")) is True
    assert resolve_switch("off", torch.device("cuda")) is False
    model = torch.nn.Linear(2, 2)
    all_reduce_grads(model, DistInfo())  # one process: a no-op, no gradients invented
    assert model.weight.grad is None


def test_torchrun_two_processes_train_ae(tmp_path, tiny_synth):
    """~8-20 s on a 2-core machine (load-dependent), mostly torchrun and worker start-up."""
    ae = tmp_path / "ae"
    res = torchrun("train", "ae", "--profile", "tiny", "--data", str(tiny_synth), "--out",
                   str(ae), "--epochs", "1", "--quiet", "--device", "cpu")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in ae.iterdir()) == [
        "config.json", "epoch_001.pt", "last.pt", "log.jsonl"]  # fmt: skip
    log = (ae / "log.jsonl").read_text().splitlines()
    assert len(log) == 1 and json.loads(log[0])["step"] == 2  # 16 images, global batch 8
    assert json.loads((ae / "config.json").read_text())["world_size"] == 2
    assert res.stdout.count("AE run:") == 2  # both ranks finished


def test_torchrun_two_processes_train_rmpp_equals_one_process(tmp_path, tiny_synth):
    """The batch gradient is summed over the 2 processes: same losses and weights as 1."""
    prof = get_profile("tiny")
    torch.manual_seed(0)
    ae = RunDir(tmp_path / "ae")  # an untrained AE run is enough to exercise the stage
    ae.path.mkdir()
    cfg = {"method": "ae", "profile": prof.to_dict(), "seed": 0, "bn": True}
    ae.write_config(cfg)
    save_checkpoint(ae.last, model=PoseNet(prof), config=cfg, epoch=1, step=1)
    common = ["--ae", str(ae.path), "--data", str(tiny_synth), "--epochs", "1",
              "--batch-size", "8", "--T", "2", "--quiet", "--device", "cpu"]  # fmt: skip
    assert main(["train", "rmpp", "--out", str(tmp_path / "r1"), *common]) == 0  # writes cache
    res = torchrun("train", "rmpp", "--out", str(tmp_path / "r2"), *common)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "r2").iterdir()) == [
        "config.json", "epoch_001.pt", "last.pt", "log.jsonl"]  # fmt: skip
    two = json.loads((tmp_path / "r2" / "log.jsonl").read_text())
    one = json.loads((tmp_path / "r1" / "log.jsonl").read_text())
    assert two["step"] == one["step"] == 2
    assert two["total"] == pytest.approx(one["total"], rel=1e-4)
    w1 = load_checkpoint(tmp_path / "r1" / "last.pt")["model"]
    w2 = load_checkpoint(tmp_path / "r2" / "last.pt")["model"]
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=0, atol=1e-4)


def test_amp_and_channels_last_run_and_stay_close_to_float32(tmp_path):
    """bf16 autocast + NHWC (forced on; CUDA's defaults) on the CPU: same schedule, finite
    losses within bf16 round-off of the float32 run."""
    torch.set_num_threads(1)
    feats = synthetic_features([1, 2, 0, 3])
    opts = {"epochs": 1, "batch_size": 2}
    logs = {}
    for name, on in (("fp32", "off"), ("amp", "on")):
        run = fit_rmpp(feats, PROF, tmp_path / name, options=opts, quiet=True, amp=on,
                       channels_last=on)  # fmt: skip
        logs[name] = json.loads((run / "log.jsonl").read_text())
    assert logs["amp"]["step"] == logs["fp32"]["step"] == 2
    assert logs["amp"]["total"] == pytest.approx(logs["fp32"]["total"], rel=0.05)


def _train_with_nan_on_rank_1(rank: int, data: str, out: str, port: int, report: str) -> None:
    """One of two gloo processes: rank 1's AE loss is NaN at its first step."""
    from pathlib import Path

    from rnnpose.train import ae as ae_module
    from rnnpose.train.common import NonFiniteLossError

    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    real = ae_module.ae_loss

    def loss(*args, **kw):
        res = real(*args, **kw)
        if rank == 1:
            res["total"] = res["total"] * float("nan")
        return res

    ae_module.ae_loss = loss
    try:
        ae_module.train_ae("tiny", data, out, epochs=1, quiet=True, device="cpu")
        msg = "finished"
    except NonFiniteLossError as exc:
        msg = f"stopped: {exc}"
    Path(report, f"rank{rank}.txt").write_text(msg)
    # leave without tearing the gloo group down: its threads can abort at interpreter exit
    # once the peer is gone, which is not what this test is about
    os._exit(0)


def test_nan_on_one_rank_stops_every_rank(tmp_path, tiny_synth):
    """Both ranks stop with the same clear error. Without the shared check rank 0 went on into
    backward() and died there on the lost peer (gloo; NCCL would wait for it)."""
    import socket
    import time

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.start_processes(_train_with_nan_on_rank_1, nprocs=2, join=False,
                             args=(str(tiny_synth), str(tmp_path / "ae"), port, str(tmp_path)),
                             start_method="spawn")  # fmt: skip
    deadline = time.monotonic() + 180
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("a rank hung after the other's NaN loss")
    reports = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert all(r.startswith("stopped: non-finite loss nan at epoch 1, step 1") for r in reports)
    assert not (tmp_path / "ae" / "last.pt").exists()  # no checkpoint of the bad epoch
