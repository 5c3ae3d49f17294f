"""RMPP training throughput: the literal batch-1 Algorithm-1 loop vs lock-step batches.

    python benchmarks/train_throughput.py [--profile cpu] [--images 32] [--batches 8 16]
        [--max-iterations 8] [--device cpu|cuda] [--amp auto|on|off] [--channels-last auto|on|off]
        [--threads N] [--procs N]

Every mode trains (forward, Hungarian matching, backward, Adam step) on the SAME synthetic
features and GT people (z ~ U{0..zmax} per image), from the same initial weights. The decoder
is untrained, so its stop probability stays above omega and each image decodes
``max_iterations`` persons: the lock-step batch never waits on a long image (an upper bound of
the batching gain for images of equal length). Prints images/s and the speed-up over batch 1.
``--amp`` (bf16 autocast) and ``--channels-last`` default to ``auto``: on for CUDA, off on the
CPU, as in ``rnnpose train`` (:mod:`rnnpose.train.accel`). ``--procs N`` adds a mode that
shares each batch of N images between N one-thread processes (torchrun's layout from Python,
:func:`rnnpose.train.accel.run_processes`; the gradients summed before each step), the way the
``cpu`` profile trains on 2 cores.
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import torch

from rnnpose.algorithm1 import StepConfig, batched_step, literal_step
from rnnpose.config import get_profile
from rnnpose.models.rmpp import RMPP
from rnnpose.targets import person_heatmaps
from rnnpose.train.accel import SWITCH, autocast, memory_format, resolve_switch


def make_data(profile, n: int, zmax: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    m = profile.output_size
    feats = torch.randn(n, profile.rmpp_in_channels, m, m, generator=g)
    gts = []
    for _ in range(n):
        z = int(torch.randint(0, zmax + 1, (1,), generator=g))
        kp = torch.rand(z, 17, 3, generator=g) * (m - 1)
        kp[..., 2] = 2
        gts.append(person_heatmaps(kp, m, profile.sigma))
    return feats, gts


def run_mode(
    model, feats, gts, cfg, batch: int, device: torch.device, amp: bool = False,
    channels_last: bool = False,
) -> float:
    """Images per second of one pass over the data with ``batch`` images in lock-step."""
    fmt = memory_format(channels_last)
    model = copy.deepcopy(model).to(device, memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    n = feats.shape[0]

    def one(idx: list[int]) -> None:
        opt.zero_grad(set_to_none=True)
        f = feats[idx].to(device).contiguous(memory_format=fmt)
        g = [gts[i].to(device) for i in idx]
        with autocast(device, amp):
            if batch == 1:
                literal_step(model, f, g[0], cfg, seed=idx[0])
            else:
                batched_step(model, f, g, cfg, seeds=idx)
        opt.step()

    one(list(range(min(batch, n))))  # warm-up (allocator, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        one(list(range(s, min(n, s + batch))))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def _proc_worker(profile, feats, gts, cfg, out: str) -> None:
    """One process of the ``--procs`` mode: image ``rank`` of every batch of ``world``."""
    import json

    from rnnpose.train.accel import all_reduce_grads, barrier, setup_distributed

    info, device = setup_distributed(torch.device("cpu"))
    torch.manual_seed(0)
    model = RMPP(profile)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    n, w = feats.shape[0], info.world

    def one(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        if i < n:
            literal_step(model, feats[i : i + 1], gts[i], cfg, seed=i)
        all_reduce_grads(model, info)
        opt.step()

    one(info.rank)  # warm-up
    barrier(info)
    t0 = time.perf_counter()
    for s in range(0, n, w):
        one(s + info.rank)
    barrier(info)
    if info.main:
        with open(out, "w") as fh:
            json.dump({"images_per_s": n / (time.perf_counter() - t0)}, fh)


def procs_mode(profile, feats, gts, cfg, procs: int) -> float:
    import json
    import tempfile

    from rnnpose.train.accel import run_processes

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ips.json")
        run_processes(_proc_worker, procs, threads=1, profile=profile, feats=feats, gts=gts,
                      cfg=cfg, out=out)  # fmt: skip
        with open(out) as fh:
            return float(json.load(fh)["images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--max-iterations", type=int, default=8)
    parser.add_argument("--zmax", type=int, default=6)
    parser.add_argument("--T", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=SWITCH, default="auto", help="bf16 autocast")
    parser.add_argument("--channels-last", choices=SWITCH, default="auto", help="NHWC")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--procs", type=int, default=0,
                        help="also: batches of N shared by N one-thread processes (CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp, cl = resolve_switch(args.amp, device), resolve_switch(args.channels_last, device)
    prof = get_profile(args.profile, max_iterations=args.max_iterations)
    if args.T is not None:
        prof = prof.replace(T=args.T)
    torch.manual_seed(0)
    model = RMPP(prof)
    cfg = StepConfig.from_profile(prof)
    feats, gts = make_data(prof, args.images, args.zmax)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}; cpu cores {os.cpu_count()}, torch threads {torch.get_num_threads()}; "
          f"profile {prof.name} (maps {prof.output_size}^2, C={prof.rmpp_in_channels}, "
          f"loop {prof.loop}, T {prof.T}, {args.max_iterations} iterations/image), "
          f"{args.images} images; amp {amp}, channels_last {cl}")  # fmt: skip
    base = run_mode(model, feats, gts, cfg, 1, device, amp, cl)
    print(f"batch  1 (literal loop): {base:8.2f} images/s   x1.00")
    for b in args.batches:
        ips = run_mode(model, feats, gts, cfg, b, device, amp, cl)
        print(f"batch {b:2d} (lock-step)   : {ips:8.2f} images/s   x{ips / base:.2f}")
    if args.procs > 1:
        ips = procs_mode(prof, feats, gts, cfg, args.procs)
        print(f"batch {args.procs:2d} ({args.procs} one-thread processes): {ips:8.2f} images/s   "
              f"x{ips / base:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
