"""The order of dataset items: a resumable, optionally distributed sampler, a pure function of (seed, epoch).

(Frame sampling within a video is :mod:`videoattn.data.sampling`.) This is the one index sampler of
videoattn: :func:`~videoattn.data.loader.build_loader` shuffles and shards with it, and the training
engine uses it for its exact resume.

``torch.utils.data.DistributedSampler`` reshuffles from ``seed + epoch`` too, but cannot start in the
middle of an epoch. :class:`ResumableSampler` can: after ``set_epoch(e)`` and ``set_start(k)`` it
yields this process's indices of epoch ``e`` from position ``k`` on, so a run restarted from a
checkpoint taken after ``k`` samples sees exactly the samples an uninterrupted run would have seen.

Sharding follows DistributedSampler: the epoch's permutation (truncated to a multiple of the number
of processes, or padded for evaluation) is dealt round-robin, process ``r`` taking positions
``r, r + W, r + 2W, ...``. With a per-process batch ``b``, batch ``i`` of all processes together is
positions ``[i*b*W, (i+1)*b*W)`` of the permutation: exactly batch ``i`` of a single process with
batch ``b*W``. That is what makes a W-process run equal a 1-process run with the same global batch, and what
lets a run checkpointed on W processes resume on W' (:meth:`ResumableSampler.set_global_start`): the
state is a position in the global order, and ``k * W`` samples in is position ``k`` of every shard.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["ResumableSampler"]


class ResumableSampler(Sampler[int]):
    def __init__(self, num_samples: int, shuffle: bool = True, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0, drop_last: bool = True):
        if num_samples < 1:
            raise ValueError(f"ResumableSampler needs at least one sample, got num_samples={num_samples}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        #: True: drop the tail that does not divide among processes (training).
        #: False: shard without padding, shards may differ in length by one (exact evaluation).
        self.drop_last = drop_last
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_start(self, position: int) -> None:
        """Skip this process's first ``position`` indices of the current epoch (once set, kept until changed)."""
        if position < 0:
            raise ValueError(f"start position must be >= 0, got {position}")
        self.start = int(position)

    def set_global_start(self, samples: int) -> None:
        """Start after the first ``samples`` indices of the epoch's *global* order (all processes
        together), which is what a checkpoint records: the same state resumes on any number of processes
        that ``samples`` divides among (a global position ``k * W`` is position ``k`` of every shard)."""
        if samples < 0 or samples % self.num_replicas:
            raise ValueError(f"global start position {samples} does not divide among {self.num_replicas} "
                             f"process(es)")
        self.set_start(samples // self.num_replicas)

    def state_dict(self) -> dict[str, int]:
        """The global sampler state: seed, epoch and samples of the epoch's order consumed by all
        processes together (independent of the number of processes)."""
        return {"seed": self.seed, "epoch": self.epoch, "samples_into_epoch": self.start * self.num_replicas}

    def epoch_indices(self) -> list[int]:
        """All of this process's indices for the current epoch, from position 0."""
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = list(range(self.num_samples))
        if self.drop_last:
            order = order[: len(order) - len(order) % self.num_replicas]
        return order[self.rank::self.num_replicas]

    def per_replica_length(self) -> int:
        if self.drop_last:
            return self.num_samples // self.num_replicas
        return len(range(self.rank, self.num_samples, self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.start:])

    def __len__(self) -> int:
        return max(self.per_replica_length() - self.start, 0)
