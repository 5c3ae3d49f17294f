"""Peak training memory of one image vs its number of people: A-SGD (T=4) vs exact SGD.

    python benchmarks/asgd_memory.py [--profile cpu] [--people 2 4 8 16] [--T 4] [--device]

One training step (Algorithm 1, batch 1) on an image with z people; the stop head is biased
so that p_t ~ 1 and the decoder runs exactly z + 1 iterations (max_iterations = z + 1).
Reported per setting:

* ``saved MB`` -- the peak of the tensors autograd keeps for backward (tracked with
  ``torch.autograd.graph.saved_tensors_hooks``, de-duplicated by storage): the activation
  memory that A-SGD bounds by backpropagating every T iterations. Works on CPU and GPU.
* ``cuda MB`` -- ``torch.cuda.max_memory_allocated`` of the step (GPU only).
"""

from __future__ import annotations

import argparse

import torch

from rnnpose.config import get_profile
from rnnpose.memory import memory_table
from rnnpose.models.rmpp import RMPP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--people", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    prof = get_profile(args.profile)
    torch.manual_seed(0)
    model = RMPP(prof).to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}; profile {prof.name} (maps {prof.output_size}^2, "
          f"C={prof.rmpp_in_channels}, loop {prof.loop}, LSTM2 on)")  # fmt: skip
    print(f"{'people':>6} | {'A-SGD T=' + str(args.T) + ' saved MB':>22} | "
          f"{'exact saved MB':>15} | {'A-SGD cuda MB':>13} | {'exact cuda MB':>13}")
    if device.type == "cuda":  # warm-up: the first CUDA step also allocates library workspaces
        memory_table(model, prof, args.people[:1], args.T, device)
    for row in memory_table(model, prof, args.people, args.T, device):
        vals = list(row.values())
        print(f"{vals[0]:>6} | {vals[1]:>22.2f} | {vals[2]:>15.2f} | {vals[3]:>13.1f} | "
              f"{vals[4]:>13.1f}")


if __name__ == "__main__":
    main()
