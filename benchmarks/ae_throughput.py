"""AE training throughput: images/s of one Adam step of the stacked hourglass and AE's loss.

    python benchmarks/ae_throughput.py [--profile paper] [--batch 16] [--steps 10]
        [--device cpu|cuda] [--amp auto|on|off] [--channels-last auto|on|off]

Random images and random targets of the profile's sizes (the data pipeline is not timed:
it runs in DataLoader workers in ``rnnpose train ae``). Prints images/s and, for orientation,
the time one pass over COCO train2017's 64,115 images with people would take at that rate.
"""

from __future__ import annotations

import argparse
import time

import torch

from rnnpose.config import get_profile
from rnnpose.losses.ae import ae_loss
from rnnpose.models.hourglass import PoseNet
from rnnpose.train.accel import SWITCH, autocast, memory_format, resolve_switch

COCO_TRAIN_IMAGES_WITH_PEOPLE = 64115


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=SWITCH, default="auto", help="bf16 autocast")
    parser.add_argument("--channels-last", choices=SWITCH, default="auto", help="NHWC")
    args = parser.parse_args()
    device = torch.device(args.device)
    amp, cl = resolve_switch(args.amp, device), resolve_switch(args.channels_last, device)
    prof = get_profile(args.profile)
    torch.manual_seed(0)
    fmt = memory_format(cl)
    model = PoseNet(prof).to(device, memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=prof.ae_lr)
    b, m, s = args.batch, prof.output_size, prof.input_size
    images = torch.randn(b, 3, s, s, device=device).contiguous(memory_format=fmt)
    heat = torch.rand(b, 17, m, m, device=device)
    mask = torch.ones(b, m, m, device=device)
    idx = torch.zeros(b, prof.max_people, 17, 2, dtype=torch.long, device=device)
    idx[:, :4, :, 0] = torch.randint(0, m * m, (b, 4, 17), device=device)
    idx[:, :4, :, 1] = 1

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device, amp):
            out = model(images)
            loss = ae_loss(out, heat, mask, idx)["total"]
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up: allocator, cuDNN algorithm choice
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    ips = args.steps * b / (time.perf_counter() - t0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    cuda = device.type == "cuda"
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else float("nan")
    print(f"device {name}; profile {prof.name} ({s}px -> {m}^2, {prof.nstack} stacks, "
          f"{prof.hg_channels} channels); batch {b}; amp {amp}, channels_last {cl}")  # fmt: skip
    print(f"AE training: {ips:8.1f} images/s; peak GPU memory {peak:.1f} GiB; "
          f"one COCO epoch ({COCO_TRAIN_IMAGES_WITH_PEOPLE} images) "
          f"{COCO_TRAIN_IMAGES_WITH_PEOPLE / ips / 60:.1f} min")  # fmt: skip


if __name__ == "__main__":
    main()
