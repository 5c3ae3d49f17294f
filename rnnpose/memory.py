"""Memory of one training step: what autograd keeps for backward (section 3.2.1).

A-SGD back-propagates every T iterations, so the activations it keeps are bounded by T
persons; exact SGD keeps the whole sequence. :class:`SavedTensorMeter` measures the peak bytes
of distinct storages saved for backward (works on CPU and GPU); :func:`step_memory` runs one
Algorithm-1 step on an image with z people and reports that peak.
"""

from __future__ import annotations

import weakref

import torch

from rnnpose.algorithm1 import StepConfig, literal_step
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


def memory_table(model, prof, people=(2, 4, 8, 16), T: int = 4, device="cpu") -> list[dict]:
    """Peak saved-for-backward MB of A-SGD (T) and exact SGD for each people count.

    The model's stop head is biased so that p_t ~ 1 and every image runs exactly z + 1
    iterations (restored afterwards)."""
    device = torch.device(device)
    stop = model.lstm1.stop
    old = stop.bias.detach().clone()
    rows = []
    try:
        with torch.no_grad():
            stop.bias.fill_(20.0)
        for z in people:
            a_saved, a_cuda = step_memory(model, prof, z, "approx", T, device)
            e_saved, e_cuda = step_memory(model, prof, z, "exact", T, device)
            rows.append({"people": z, f"A-SGD T={T} MB": a_saved, "exact SGD MB": e_saved,
                         f"A-SGD T={T} cuda MB": a_cuda, "exact SGD cuda MB": e_cuda})
    finally:
        with torch.no_grad():
            stop.bias.copy_(old)
        model.zero_grad(set_to_none=True)
    return rows
