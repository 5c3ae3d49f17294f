"""Speed options of the training loops: bf16 autocast, channels_last, and multi-process runs.

* ``--amp`` -- bf16 :func:`torch.autocast` around the forward passes (no gradient scaler is
  needed for bf16); the losses' reductions run in float32 (autocast's float32 op list covers
  ``mse_loss`` and ``binary_cross_entropy_with_logits``).
* ``--channels-last`` -- model weights and input batches in NHWC memory order (tensor cores
  prefer it for convolutions).

Both default to ``auto``: ON when the device is CUDA, OFF on the CPU, so CPU runs are bit for
bit what they were without these options.

Multi-process training: ``torchrun --nproc_per_node N -m rnnpose train ae|rmpp ...`` starts one
process per GPU (``gloo`` on the CPU, ``nccl`` on CUDA); :func:`setup_distributed` reads
torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and returns a
:class:`DistInfo` (``world == 1`` without torchrun). Only rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from rnnpose.io import DataError

#: values of ``--amp`` / ``--channels-last``
SWITCH = ("auto", "on", "off")


def resolve_switch(value: str | bool | None, device: torch.device) -> bool:
    """``auto``/None -> on for CUDA, off otherwise; ``on``/``off`` (or a bool) as given."""
    if isinstance(value, bool):
        return value
    if value in (None, "auto"):
        return device.type == "cuda"
    if value not in SWITCH:
        raise DataError(f"expected one of {', '.join(SWITCH)}, got {value!r}")
    return value == "on"


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled``, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join torchrun's process group (if launched by torchrun) -> ``(info, this process's device)``.

    On CUDA each process takes GPU ``LOCAL_RANK``. Without torchrun: ``(DistInfo(), device)``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise DataError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world=world, local_rank=local), device


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


@contextlib.contextmanager
def main_first(info: DistInfo) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. writes a cache), the others after it."""
    if not info.main:
        barrier(info)
    yield
    if info.main:
        barrier(info)


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum a few floats over the processes (float64)."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.cpu().tolist()


def all_reduce_grads(model: torch.nn.Module, info: DistInfo) -> None:
    """SUM every parameter's gradient over the processes (missing gradients count as zeros).

    Used by RMPP training, whose gradient of a batch is the SUM over its images: each process
    accumulates its share of the images (Algorithm 1 calls ``backward()`` once per chunk, on
    sub-modules, which DistributedDataParallel's one-forward-one-backward hooks do not allow),
    and the sum over processes is the gradient of the whole batch.
    """
    if not info.distributed:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


def _process_main(rank: int, world: int, port: int, threads: int, fn: Any, kwargs: dict) -> None:
    """One process of :func:`run_processes`: torchrun's environment, ``threads`` intra-op
    threads, then ``fn(**kwargs)``."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})  # fmt: skip
    torch.set_num_threads(threads)
    try:
        fn(**kwargs)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_processes(fn: Any, nprocs: int, threads: int = 1, **kwargs: Any) -> None:
    """Run ``fn(**kwargs)`` in ``nprocs`` processes joined as torchrun would join them (gloo on
    the CPU), each with ``threads`` torch threads: what ``torchrun --nproc_per_node N`` does,
    from Python (a notebook, a script). On 2 CPU cores two one-thread processes train the RMPP
    decoder 1.9x faster than one process with two threads (batch-1 convolutions are too small
    to split; ``benchmarks/RESULTS.md``)."""
    import torch.multiprocessing as mp

    mp.start_processes(_process_main, args=(nprocs, free_port(), threads, fn, kwargs),
                       nprocs=nprocs, join=True, start_method="spawn")  # fmt: skip
