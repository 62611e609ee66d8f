"""Process-group plumbing for `torchrun` launches (spec 5.3) and for plain single-process runs.

`torchrun --nproc_per_node N -m vdit train ...` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT; `init_distributed` then joins the group with the `env://` method (NCCL on GPU, gloo on
CPU). Without those variables the run is a single process and every collective below is a no-op.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vdit.errors import ConfigError

PROCESS_GROUP_TIMEOUT_S = 5400  # the official init_process_group timeout
ENV_WORLD_SIZE = "WORLD_SIZE"
ENV_RANK = "RANK"
ENV_LOCAL_RANK = "LOCAL_RANK"


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def select_device(preference: str, local_rank: int) -> torch.device:
    """`auto`: the local GPU when CUDA is available, else the CPU. `cuda` without a GPU is an error."""
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is available (use train.device=cpu)")
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return torch.device("cuda", local_rank)


def init_distributed(device_preference: str = "auto") -> DistInfo:
    """Join the torchrun process group when launched by torchrun; otherwise a single-process DistInfo."""
    world_size = _env_int(ENV_WORLD_SIZE, 1)
    rank = _env_int(ENV_RANK, 0)
    local_rank = _env_int(ENV_LOCAL_RANK, 0)
    device = select_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", world_size=world_size, rank=rank,
                                timeout=datetime.timedelta(seconds=PROCESS_GROUP_TIMEOUT_S))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (identity in a single process)."""
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when `flag` is true on at least one rank; every rank must call it (a collective)."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    return bool(all_reduce_sum(t).item() > 0)


def broadcast_object(obj: object, device: torch.device) -> object:
    """Rank 0's JSON-able `obj` on every rank (sent as UTF-8 JSON bytes, never pickled)."""
    import json

    if not is_initialized():
        return obj
    payload = json.dumps(obj).encode() if dist.get_rank() == 0 else b""
    size = torch.tensor([len(payload)], dtype=torch.long, device=device)
    dist.broadcast(size, src=0)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
    if dist.get_rank() == 0:
        buf.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
    dist.broadcast(buf, src=0)
    return json.loads(buf.cpu().numpy().tobytes().decode())


def gather_bytes(payload: bytes, device: torch.device) -> list[bytes] | None:
    """Every rank's `payload` on rank 0 (None on the others); the payload itself on a single process."""
    if not is_initialized():
        return [payload]
    world = dist.get_world_size()
    size = torch.tensor([len(payload)], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = max(int(s.item()) for s in sizes)
    buf = torch.zeros(longest, dtype=torch.uint8, device=device)
    if payload:
        buf[: len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(device)
    bufs = [torch.zeros_like(buf) for _ in range(world)]
    dist.all_gather(bufs, buf)
    if dist.get_rank() != 0:
        return None
    return [bytes(b[: int(s.item())].cpu().numpy().tobytes()) for b, s in zip(bufs, sizes)]


def cleanup() -> None:
    if is_initialized():
        dist.destroy_process_group()
