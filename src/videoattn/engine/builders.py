"""Builders shared by training and evaluation: datasets, loaders and models from a :class:`Config`."""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from ..config import Config, parse_views
from ..data.sampler import ResumableSampler
from ..errors import ConfigError

__all__ = ["apply_bn_mode", "build_dataset_for", "build_loader_for", "build_model", "check_compile_backend",
           "CHANNELS_LAST_CPUS", "auto_precision_work", "clip_gmacs", "explain_channels_last",
           "frozen_bn_layers", "resolve_channels_last", "run_layout", "split_source", "uncompiled"]

log = logging.getLogger(__name__)


def build_dataset_for(config: Config, split: str, num_frames: int | None = None, views: str = "1x1",
                      records: list | None = None, classes: list[str] | None = None,
                      evaluation: bool = False) -> Any:
    """The dataset of ``split`` (``train``, ``val`` or ``test``) described by ``config.data``.

    ``evaluation``: read the split as ``videoattn test`` reads any split (the evaluation transforms:
    ``views`` centre/multi-view clips, centre crops, no flip), also the training split, which
    otherwise gets the training augmentation (random TSN frames, multi-scale crop, flip).

    ``records``/``classes``: score these entries (``VideoRecord``) with the split's settings instead
    of the split's annotations (what ``videoattn predict`` does, so its views equal ``test``'s).
    """
    from ..data import build_dataset

    data = config.data
    annotations, labels, subset = split_source(config, split)
    if records is not None:
        if data.format == "image_folder":
            raise ConfigError("config key 'data.format': 'image_folder' classifies images; predict and "
                              "export take video models")
        annotations, given = None, {"records": records, "classes": classes}
    else:
        given = {}
    if not annotations and records is None:
        raise ConfigError(f"config key 'data.{split}_annotations' is required for the {split} split "
                          f"but not set")
    num_clips, num_crops = parse_views(views)
    # The data module's "val" mode gives one centre view; "test" gives CLIPSxCROPS views per video.
    mode = "train" if split == "train" and not evaluation else ("val" if num_clips * num_crops == 1 else "test")
    return build_dataset(
        format=data.format, root=data.root, annotations=annotations, labels=labels, split=mode,
        num_frames=num_frames or config.model.num_frames, sampling=data.sampling,
        frame_interval=data.frame_interval, size=data.size,
        scale_size=tuple(data.scale_size) if isinstance(data.scale_size, list) else data.scale_size,
        num_clips=num_clips, num_crops=num_crops, flip=data.flip, decoder=data.decoder,
        strict=data.strict, seed=config.train.seed,
        **({"subset": subset} if subset and records is None else {}), **given, **data.options)


def split_source(config: Config, split: str) -> tuple[Any, Any, Any]:
    """``(annotations, labels, subset)`` of ``split`` (``train``, ``val`` or ``test``) as ``config.data``
    gives them to the data module: an image folder split without ``data.labels`` takes its classes from
    the training folder, so a split lacking a class keeps the training labels."""
    data = config.data
    annotations = {"train": data.train_annotations, "val": data.val_annotations,
                   "test": data.test_annotations}[split]
    subset = {"train": data.train_subset, "val": data.val_subset, "test": data.test_subset}[split]
    labels = data.labels
    if data.format == "image_folder" and labels is None and data.train_annotations:
        import os

        labels = os.path.join(data.root, data.train_annotations)
    return annotations, labels, subset


def build_loader_for(dataset: Any, batch_size: int, sampler: ResumableSampler, num_workers: int,
                     pin_memory: bool | None, seed: int, drop_last: bool) -> Any:
    """A loader over ``dataset`` in ``sampler``'s order.

    The data loader tags every index with the dataset's epoch, so persistent workers are safe: each
    sample's randomness is a function of (seed, epoch, index), whichever worker serves it.
    """
    from ..data import build_loader

    return build_loader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        sampler=sampler, drop_last=drop_last, pin_memory=pin_memory,
                        persistent_workers=None, distributed=False, seed=seed)


def check_model_name(name: str) -> None:
    """Raise the "unknown model ... did you mean" error before any data is read."""
    from ..errors import unknown_name
    from ..models import list_models

    known = list_models()
    if name not in known:
        raise unknown_name("model", name, known)


#: CPU capabilities (``torch.backends.cpu.get_cpu_capability()``) where ``model.channels_last: auto`` is
#: channels-last: measured faster there for every model and size tried (benchmarks/results/cpu_auto.json).
CHANNELS_LAST_CPUS = ("AVX512",)


def explain_channels_last(value: Any, device: Any = None) -> tuple[bool, str]:
    """``(channels_last, reason)`` for ``model.channels_last`` = ``value`` on ``device`` (``None``: CUDA if
    available, as ``train.device: auto``). ``true``/``false`` are taken as given. ``auto``:

    * CUDA: channels-last (issue 25's H200 run: bf16 R2D-50 training twice as fast in NHWC).
    * CPU with AVX-512 (:data:`CHANNELS_LAST_CPUS`): channels-last; on the AVX-512 development CPU every
      case measured was faster (``benchmarks/cpu_auto.py``, fp32 steps: 1.08x for configs/tiny.yaml's
      TSM-R18-8, 1.25-1.30x for the demo's R2D-18s at 32 px, 1.05x R2D-18 at 112, 1.29x R2D-50 at 112,
      1.74x R2D-50 at 224).
    * other CPUs (AVX2, ARM): NCHW. An earlier AVX2 machine measured 0.88-0.91x the step time at 224 px,
      but small models were not measured there; set ``true`` to take it.

    Channels-last is the same function but rounds float32 sums differently from NCHW.
    """
    import torch

    if isinstance(value, bool):
        return value, "as configured"
    if value != "auto":
        raise ConfigError(f"config key 'model.channels_last': got {value!r}; expected true, false or 'auto'")
    device_type = torch.device(device).type if device is not None else (
        "cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cuda":
        return True, "CUDA"
    if device_type == "cpu":
        capability = torch.backends.cpu.get_cpu_capability()
        if capability in CHANNELS_LAST_CPUS:
            return True, f"{capability} CPU, where it measured faster"
        return False, f"{capability} CPU, not measured faster"
    return False, f"no rule for {device_type} devices"


def resolve_channels_last(value: Any, device: Any = None) -> bool:
    """What ``model.channels_last`` means on ``device`` (:func:`explain_channels_last` has the rule)."""
    return explain_channels_last(value, device)[0]


def clip_gmacs(model_config: Any, size: int, num_classes: int | None = None) -> float | None:
    """Forward GMACs per clip of ``model_config``'s model at ``size`` px (counted on the meta device, fvcore
    convention), which ``train.precision: auto`` decides from on a CPU; None when it cannot be counted
    (e.g. a size under 32 px)."""
    from ..analysis.complexity import profile_model

    try:
        options = dict(model_config.options)
        return profile_model(model_config.name, num_classes=num_classes or 2, num_frames=model_config.num_frames,
                             size=size, **options).macs / 1e9
    except Exception as error:  # the count only informs a default; the real build reports real problems
        log.debug("no MAC count for %s at %d px (%s): train.precision auto stays fp32 on CPU",
                  model_config.name, size, error)
        return None


def auto_precision_work(model_config: Any, precision: Any, size: int, device: Any) -> float | None:
    """:func:`clip_gmacs` where ``precision`` is ``auto`` and the run is on a CPU (the only case that needs
    it), else None (no model is built)."""
    import torch

    if precision != "auto" or torch.device(device).type != "cpu":
        return None
    return clip_gmacs(model_config, size)


def run_layout(model_config: Any, precision: str, device: Any, precision_setting: str | None = None) -> str:
    """How a run computes, for its start message: ``"bf16 (auto), channels-last (auto), compiled (inductor)"``
    (``precision`` is the resolved one, ``precision_setting`` what the config said)."""
    setting = getattr(model_config, "channels_last", False)
    parts = [precision + (" (auto)" if precision_setting == "auto" else ""),
             ("channels-last" if resolve_channels_last(setting, device) else "NCHW")
             + (" (auto)" if setting == "auto" else "")]
    if getattr(model_config, "compile", False):
        parts.append(f"compiled ({getattr(model_config, 'compile_backend', 'inductor')})")
    return ", ".join(parts)


def check_compile_backend(backend: Any) -> str:
    """``backend`` if ``torch.compile`` knows it, else a ConfigError naming ``model.compile_backend``."""
    import torch._dynamo

    known = sorted(torch._dynamo.list_backends(exclude_tags=()))
    if not isinstance(backend, str) or backend not in known:
        raise ConfigError(f"config key 'model.compile_backend': got {backend!r}; expected one of "
                          f"{', '.join(known)}")
    return backend


def build_model(model_config: Any, num_classes: int, pretrained: bool = True, device: Any = None,
                compile: bool | None = None) -> nn.Module:
    """``videoattn.models.create_model`` with the model section's settings.

    ``model.channels_last`` is resolved for ``device`` (:func:`resolve_channels_last`) and logged.
    ``model.compile`` compiles the model in place (``nn.Module.compile``): the module, its parameters
    and its ``state_dict`` keys stay those of the uncompiled model, so checkpoints load either way.
    ``compile=False`` overrides the config for callers that trace or hook the model.
    """
    from ..models import create_model

    m = model_config
    model = create_model(m.name, num_classes=num_classes, num_frames=m.num_frames,
                         pretrained=m.pretrained if pretrained else None,
                         weights=m.weights if pretrained else None, weights_layout=m.weights_layout,
                         dropout=m.dropout, **m.options)
    if getattr(m, "checkpoint_blocks", False):
        from ..models.recognizer import set_block_checkpointing

        set_block_checkpointing(model, True)
    setting = getattr(m, "channels_last", False)
    channels_last, reason = explain_channels_last(setting, device)
    if setting == "auto":
        log.info("model.channels_last: auto -> %s (%s)", str(channels_last).lower(), reason)
    if channels_last:
        from ..models.recognizer import to_channels_last

        to_channels_last(model)
    if getattr(m, "compile", False) if compile is None else compile:
        backend = check_compile_backend(getattr(m, "compile_backend", "inductor"))
        log.info("model.compile: torch.compile(backend=%r)", backend)
        model.compile(backend=backend)
    return model


def uncompiled(model: nn.Module) -> nn.Module:
    """``model`` with an in-place ``torch.compile`` (``model.compile: true``) undone, for callers that
    trace it (export: TorchScript/ONNX tracing refuses a dynamo-compiled forward) or hook into it."""
    if getattr(model, "_compiled_call_impl", None) is not None:
        model._compiled_call_impl = None
    return model


def frozen_bn_layers(model: nn.Module, mode: str) -> list[nn.Module]:
    """The backbone's BatchNorm layers to freeze: none, all, or all but the first (TSN's partial BN).

    BN layers inside inserted blocks (modules built by ``videoattn.blocks.create``: NL, DNL, TAPE,
    GTA, ...) are never frozen: their zero-initialised output norms are what make a block start as
    the identity, and frozen at gamma = beta = 0 the block would stay the identity for good. The
    same holds for units the backbone trains from scratch (``from_scratch`` insertions, e.g. RSA's
    bottlenecks): they have no pretrained statistics to keep.
    """
    from ..blocks import registered_blocks

    trains = {id(m) for _, block in registered_blocks(model) for m in block.modules()}
    # Units a backbone trains from scratch (and modules a block replaced) have no pretrained
    # statistics to keep either; a from-scratch unit's last BN starts at gamma 0 like a block's.
    for _, backbone in model.named_modules():
        for prefix in getattr(backbone, "pretrained_skip_prefixes", lambda: [])():
            trains.update(id(m) for m in backbone.get_submodule(prefix.rstrip(".")).modules())
    layers = [module for module in model.modules()
              if isinstance(module, nn.modules.batchnorm._BatchNorm) and id(module) not in trains]
    if mode == "all":
        return layers
    if mode == "partial":
        return layers[1:]
    return []


def apply_bn_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    """Put frozen BatchNorm layers in eval mode (running statistics kept) with fixed affine parameters.

    Called after every ``model.train()``. Partial BN follows TSN (Wang et al. 2016, sec. 3.2): with
    ImageNet initialisation, the statistics of every backbone BN layer but the first stay those of
    ImageNet (see :func:`frozen_bn_layers`: inserted blocks' norms always train).
    """
    for layer in frozen:
        layer.eval()
        for parameter in layer.parameters(recurse=False):
            parameter.requires_grad_(False)
