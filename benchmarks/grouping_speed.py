"""How long AE's heuristic grouping takes per image, against the number of people.

Builds AE-like maps on the paper's 128 x 128 grid: one Gaussian (sigma 2) per joint and person
at random positions, a per-person tag painted around each joint (plus noise), and times
``rnnpose.grouping.group`` (NMS, top-k candidates, Hungarian matching in joint order, adjust,
refine) for 2, 5, 10 and 20 people and for 10 and 30 candidates per joint (``max_people``).
Run: ``python benchmarks/grouping_speed.py [--size 128] [--repeats 20] [--tag-dim 2]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from rnnpose.grouping import group


def scene(people: int, size: int, tag_dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, people, size])
    heat = np.zeros((17, size, size), np.float32)
    tags = rng.normal(0, 0.05, size=(17, size, size, tag_dim)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    for p in range(people):
        centre = rng.uniform(0.1 * size, 0.9 * size, size=2)
        spread = rng.uniform(0.03, 0.15) * size
        tag = 1.5 * p
        for j in range(17):
            x, y = np.clip(centre + rng.normal(0, spread, size=2), 0, size - 1)
            g = rng.uniform(0.4, 1.0) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0)
            np.maximum(heat[j], g, out=heat[j])
            near = (xx - x) ** 2 + (yy - y) ** 2 < 16
            tags[j][near] += tag
    return heat, tags


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--tag-dim", type=int, default=2, help="2 = tags of a flip-tested image")
    args = ap.parse_args(argv)
    print(f"grouping, {args.size}x{args.size} maps, tag dim {args.tag_dim}, "
          f"median of {args.repeats} runs (ms per image)")  # fmt: skip
    print(f"{'people':>6} {'candidates/joint':>17} {'found':>6} {'ms':>8} {'ms (no refine)':>15}")
    for people in (2, 5, 10, 20):
        heat, tags = scene(people, args.size, args.tag_dim)
        for k in (10, 30):
            row = []
            for refine in (True, False):
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    found, _ = group(heat, tags, max_people=k, refine_missing=refine)
                    times.append(time.perf_counter() - t0)
                row.append(1000 * statistics.median(times))
            print(f"{people:>6} {k:>17} {len(found):>6} {row[0]:>8.2f} {row[1]:>15.2f}")


if __name__ == "__main__":
    main()
