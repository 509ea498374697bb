"""Data pipeline: dataset formats as released, decoding, sampling, transforms, loaders, synthetic data.

Public API (see ``docs/data.md``)::

    from videoattn.data import build_dataset, build_loader, collate_samples, generate_synthetic, list_formats

Heavy imports (torch, PyAV) happen on first use of a name, so ``import videoattn.data`` is cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "build_dataset": "dataset",
    "build_image_dataset": "dataset",
    "read_split": "dataset",
    "VideoDataset": "dataset",
    "ImageFolderDataset": "dataset",
    "flip_label_map": "dataset",
    "summarize_skipped": "dataset",
    "build_loader": "loader",
    "collate_samples": "loader",
    "ResumableSampler": "sampler",
    "generate_synthetic": "synthetic",
    "synthetic_classes": "synthetic",
    "list_formats": "annotations",
    "load_annotations": "annotations",
    "VideoRecord": "annotations",
    "build_decoder": "decoders",
    "sample_views": "sampling",
    "tsn_indices": "sampling",
    "dense_indices": "sampling",
    "build_clip_transform": "transforms",
    "check_dataset": "check",
    "convert_annotations": "convert",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'videoattn.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
