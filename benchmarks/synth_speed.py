"""Synthetic benchmark generation speed: images per second for each preset.

    python benchmarks/synth_speed.py [--num 1000] [--size 128]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from rnnpose.data.synthetic import dataset_statistics, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--presets", nargs="+", default=["train", "sparse", "occluded"])
    args = parser.parse_args()
    print(f"cpu cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, one process")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            t0 = time.perf_counter()
            out = generate(preset, args.num, 0, args.size, Path(tmp) / preset, quiet=True)
            dt = time.perf_counter() - t0
            st = dataset_statistics(out / "annotations.json")
            print(
                f"{preset:>9}: {args.num} images of {args.size} px in {dt:.1f} s = "
                f"{args.num / dt:.1f} images/s; {st['mean_people_per_image']:.2f} people/image, "
                f"pairs IoU>=0.5 in {100 * st['frac_images_pair_iou_ge_0.5']:.0f}% of images"
            )


if __name__ == "__main__":
    main()
