"""Per-rank batches of one epoch, resumable mid-epoch (spec 5.3: DistributedSampler + BatchSampler, drop_last).

The order is a pure function of (seed, epoch): torch's `DistributedSampler` permutes the indices with a
generator seeded `seed + epoch` and deals them out to the ranks by stride, so the k-th global batch is
the same set of samples whatever the split into processes (2 processes x 1 clip == 1 process x 2 clips).
`start_batch` skips batches already consumed before a resume without loading them.
"""
from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import DistributedSampler, Sampler

from vdit.errors import ConfigError


class _Length:
    """What DistributedSampler needs of a dataset: its length."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of `batch_size` indices for `rank`; the epoch length is a multiple of `grad_accum` so that
    every optimizer step sees a full accumulation window."""

    def __init__(self, num_samples: int, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0,
                 grad_accum: int = 1, shuffle: bool = True):
        global_batch = batch_size * world_size * grad_accum
        if num_samples < global_batch:
            raise ConfigError(f"the dataset has {num_samples} training samples, fewer than one global batch "
                              f"({batch_size} per process x {world_size} processes x {grad_accum} accumulation)")
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.sampler = DistributedSampler(_Length(num_samples), num_replicas=world_size, rank=rank,
                                          shuffle=shuffle, seed=seed, drop_last=True)
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        if not 0 <= start_batch <= len(self):
            raise ConfigError(f"cannot resume at batch {start_batch} of an epoch of {len(self)} batches")
        self.sampler.set_epoch(epoch)
        self.start_batch = start_batch

    def __len__(self) -> int:
        batches = len(self.sampler) // self.batch_size
        return batches - batches % self.grad_accum

    def epoch_batches(self) -> list[list[int]]:
        """All batches of the current epoch (including those a resume skips)."""
        indices = list(self.sampler)
        b = self.batch_size
        return [indices[i * b:(i + 1) * b] for i in range(len(self))]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_batches()[self.start_batch:]

    def remaining(self) -> int:
        return len(self) - self.start_batch
