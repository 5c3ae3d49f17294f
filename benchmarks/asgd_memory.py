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
import weakref

import torch

from rnnpose.algorithm1 import StepConfig, literal_step
from rnnpose.config import get_profile
from rnnpose.models.rmpp import RMPP
from rnnpose.targets import person_heatmaps


class SavedTensorMeter:
    """Current and peak bytes of distinct storages saved for backward."""

    def __init__(self) -> None:
        self.live: dict[int, list[int]] = {}  # storage ptr -> [refcount, bytes]
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self.live[key]

    def pack(self, t: torch.Tensor):
        st = t.untyped_storage()
        key = st.data_ptr()
        if key in self.live:
            self.live[key][0] += 1
        else:
            self.live[key] = [1, st.nbytes()]
            self.current += st.nbytes()
            self.peak = max(self.peak, self.current)

        class Holder:
            __slots__ = ("t", "__weakref__")

        h = Holder()
        h.t = t
        weakref.finalize(h, self._release, key)
        return h

    @staticmethod
    def unpack(h):
        return h.t

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


def step_memory(model, prof, z: int, sgd: str, T: int, device) -> tuple[float, float]:
    g = torch.Generator().manual_seed(z)
    m = prof.output_size
    feats = torch.randn(1, prof.rmpp_in_channels, m, m, generator=g).to(device)
    kp = torch.rand(z, 17, 3, generator=g) * (m - 1)
    kp[..., 2] = 2
    gt = person_heatmaps(kp, m, prof.sigma).to(device)
    cfg = StepConfig.from_profile(prof, T=T, max_iterations=z + 1, sgd=sgd)
    model.zero_grad(set_to_none=True)
    meter = SavedTensorMeter()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    with meter.hooks():
        res = literal_step(model, feats, gt, cfg, seed=z)
    assert res["iterations"] == z + 1
    cuda_mb = float("nan")
    if device.type == "cuda":
        torch.cuda.synchronize()
        cuda_mb = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return meter.peak / 2**20, cuda_mb


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
    with torch.no_grad():
        model.lstm1.stop.bias.fill_(20.0)  # p_t ~ 1: exactly z + 1 iterations per image
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}; profile {prof.name} (maps {prof.output_size}^2, "
          f"C={prof.rmpp_in_channels}, loop {prof.loop}, LSTM2 on)")  # fmt: skip
    print(f"{'people':>6} | {'A-SGD T=' + str(args.T) + ' saved MB':>22} | "
          f"{'exact saved MB':>15} | {'A-SGD cuda MB':>13} | {'exact cuda MB':>13}")
    for z in args.people:
        a_saved, a_cuda = step_memory(model, prof, z, "approx", args.T, device)
        e_saved, e_cuda = step_memory(model, prof, z, "exact", args.T, device)
        print(f"{z:>6} | {a_saved:>22.2f} | {e_saved:>15.2f} | {a_cuda:>13.1f} | {e_cuda:>13.1f}")


if __name__ == "__main__":
    main()
