"""DataLoader builder: seeded shuffling, epoch-tagged indices, workers, pinned memory, DDP sampler.

The sampler of a loader built here yields ``(index, epoch)`` pairs, reading the epoch from the
dataset (``dataset.set_epoch``) each time an epoch's iteration starts in the main process. The
dataset derives all randomness from ``(seed, epoch, index)``, so worker processes (persistent or
not, however many) never need their own random state and batches are bit-identical across worker
counts and across a resume. Shuffling is a permutation drawn from ``(seed, epoch)``.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler

from ..errors import ConfigError
from .device_transforms import stack_frames
from .sampler import ResumableSampler

__all__ = ["build_loader", "collate_samples", "EpochTaggedSampler", "VideoLoader"]


def collate_samples(samples: list[dict]) -> dict:
    """Stack ``video`` (and ``image``), make ``label``/``index`` LongTensors, flatten ``skipped``.

    Items of ``data.transforms_on: device`` (uint8 frames with ``crop_box`` and ``flip``) are stacked
    zero-padded to the batch's largest frames, with ``crop_box`` ``(N, 4)`` and ``flip`` ``(N,)``.
    ``batch["load"]`` is ``(worker id or -1 for the main process, seconds spent producing the items, number
    of items, the producing process's peak resident memory in KiB)``.

    Dropped samples (bad videos of an evaluation split, see :mod:`videoattn.data.dataset`) are left
    out of the tensors and listed in ``batch["dropped"]`` as ``{"index", "path", "reason"}``; a batch
    of dropped samples only has no ``video`` key. Items of ``data.decoder: dali``/``nvjpeg`` carry an encoded
    ``payload`` instead of ``video``: the batch lists them under ``"payload"`` (with ``crop_box``/``flip``
    for training) for :meth:`~videoattn.data.dataset.VideoDataset.decode_batch` in the main process.
    A worker's error sample (``{"error": ...}``) makes the batch ``{"error": error}``, which
    :class:`VideoLoader` raises in the main process.
    """
    if not samples:
        raise ConfigError("collate_samples got an empty batch")
    for sample in samples:
        if "error" in sample:
            return {"error": sample["error"]}
    kept = [s for s in samples if not s.get("dropped")]
    batch: dict = {}
    if kept and "payload" in kept[0]:  # data.decoder: dali/nvjpeg (encoded; decoded by dataset.decode_batch)
        batch["payload"] = [s["payload"] for s in kept]
        if "crop_box" in kept[0]:
            batch["crop_box"] = torch.stack([s["crop_box"] for s in kept])
            batch["flip"] = torch.tensor([bool(s["flip"]) for s in kept], dtype=torch.bool)
    for key in ("video", "image"):
        if kept and key in kept[0]:
            if "crop_box" in kept[0]:  # transforms_on: device (uint8 frames, possibly of several sizes)
                batch[key] = stack_frames([s[key] for s in kept])
                batch["crop_box"] = torch.stack([s["crop_box"] for s in kept])
                batch["flip"] = torch.tensor([bool(s["flip"]) for s in kept], dtype=torch.bool)
            else:
                batch[key] = torch.stack([s[key] for s in kept])
    batch["label"] = torch.tensor([int(s["label"]) for s in kept], dtype=torch.long)
    batch["index"] = torch.tensor([int(s["index"]) for s in kept], dtype=torch.long)
    batch["skipped"] = [item for s in samples for item in s.get("skipped", [])]
    batch["dropped"] = [{"index": int(s["index"]), "path": str(s["skipped"][-1]["path"]),
                         "reason": str(s["skipped"][-1]["reason"])} for s in samples if s.get("dropped")]
    loads = [s["load"] for s in samples if "load" in s]
    if loads:  # the engine's loader throughput and memory report
        batch["load"] = (loads[0][0], float(sum(load[1] for load in loads)), len(loads), max(load[2] for load in loads))
    return batch


class EpochTaggedSampler(Sampler):
    """Wraps a sampler of indices; yields ``(index, epoch)`` with the dataset's current epoch."""

    def __init__(self, base: Sampler, dataset):
        self.base = base
        self.dataset = dataset

    def __iter__(self):
        epoch = int(getattr(self.dataset, "epoch", 0))
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)
        for index in self.base:
            yield (int(index), epoch)

    def __len__(self) -> int:
        return len(self.base)


class VideoLoader(DataLoader):
    """A DataLoader with ``set_epoch`` (forwards to the dataset; the sampler follows the dataset).

    A videoattn error raised in a worker reaches the caller as itself (same class, same one-line
    message), not wrapped in the worker's traceback.
    """

    def __iter__(self):
        return _RaiseWorkerErrors(super().__iter__())

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)


class _RaiseWorkerErrors:
    """Iterator over a DataLoader iterator that raises the error a worker returned in a batch."""

    def __init__(self, inner):
        self.inner = inner

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.inner)
        if isinstance(batch, dict) and "error" in batch:
            raise batch["error"]
        return batch

    def __len__(self) -> int:
        return len(self.inner)


def _replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """World size and rank: as given, or from the initialised ``torch.distributed`` process group."""
    if num_replicas is None or rank is None:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise ConfigError("distributed=True needs torch.distributed to be initialised (torchrun), "
                              "or pass num_replicas and rank")
        num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
        rank = dist.get_rank() if rank is None else rank
    if not 0 <= rank < num_replicas:
        raise ConfigError(f"rank {rank} is outside 0..{num_replicas - 1}")
    return num_replicas, rank


def build_loader(dataset, batch_size: int, shuffle: bool = True, num_workers: int = 2, sampler=None,
                 drop_last: bool = True, pin_memory: bool | None = None, persistent_workers: bool | None = None,
                 distributed: bool = False, seed: int = 0, prefetch_factor: int | None = None,
                 num_replicas: int | None = None, rank: int | None = None) -> VideoLoader:
    """A loader over ``dataset`` batching with :func:`collate_samples`.

    ``sampler`` (any index sampler) overrides ``shuffle``/``distributed``. ``pin_memory`` None pins
    when CUDA is available; ``persistent_workers`` None keeps workers alive when there are any.
    Shuffling and ``distributed`` sharding use :class:`~videoattn.data.sampler.ResumableSampler`
    (rank/world size from ``torch.distributed`` unless given); sharded with ``drop_last=False``, no
    item is repeated to even out the shards, which may then differ in length by one.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    if sampler is None:
        if distributed:
            num_replicas, rank = _replicas(num_replicas, rank)
            sampler = ResumableSampler(len(dataset), shuffle=shuffle, seed=seed, num_replicas=num_replicas,
                                       rank=rank, drop_last=drop_last)
        elif shuffle:
            sampler = ResumableSampler(len(dataset), shuffle=True, seed=seed)
        else:
            sampler = range(len(dataset))
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    if persistent_workers is None:
        persistent_workers = num_workers > 0
    extra = {}
    if num_workers > 0:
        extra["persistent_workers"] = persistent_workers
        if getattr(getattr(dataset, "decoder", None), "needs_spawned_workers", False):  # nvdec: CUDA in workers
            extra["multiprocessing_context"] = "spawn"
        if prefetch_factor is not None:
            extra["prefetch_factor"] = prefetch_factor
    return VideoLoader(dataset, batch_size=batch_size, sampler=EpochTaggedSampler(sampler, dataset),
                       num_workers=num_workers, collate_fn=collate_samples, pin_memory=pin_memory,
                       drop_last=drop_last, **extra)
