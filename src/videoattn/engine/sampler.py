"""The engine's sampler is the data package's :class:`~videoattn.data.sampler.ResumableSampler`."""

from ..data.sampler import ResumableSampler

__all__ = ["ResumableSampler"]
