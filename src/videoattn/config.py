"""Typed run configuration: dataclasses loaded from YAML, dotted overrides, validation.

A run is described by one :class:`Config` with four sections (``model``, ``data``, ``train``,
``eval``). :func:`load_config` reads a YAML file, applies ``--set`` style overrides
(``train.lr=0.02``; the value is parsed as a YAML scalar, so ``0.02`` is a float, ``null`` is None and
``[30, 40]`` a list) and validates everything before anything runs: an unknown key, a value of the
wrong type or an impossible value raises :class:`~videoattn.errors.ConfigError` naming the dotted
key, the value and what is allowed.

Sections are plain dataclasses: code that needs a setting receives the section (or the value), never
a global. ``Config.to_dict()`` gives the resolved config that is saved with every run and checkpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

__all__ = [
    "Config",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
    "parse_override",
    "parse_views",
    "save_config",
    "section_from_dict",
]


@dataclass
class ModelConfig:
    """What network to build: ``videoattn.create_model(name, num_classes, num_frames, pretrained,
    dropout=dropout, **options)``."""

    name: str = ""
    #: Number of classes; ``null`` takes it from the training dataset's class list.
    num_classes: int | None = None
    #: Frames per clip (the T of ``(N, 3, T, H, W)``); also the number of frames the data samples.
    num_frames: int = 8
    #: Local ImageNet checkpoint (torchvision-style ResNet ``.pth``) to initialise the backbone.
    pretrained: str | None = None
    #: Local whole-model checkpoint (trunk, blocks and classifier) to start from, e.g. weights the
    #: papers' authors released; read in ``weights_layout`` (``videoattn`` or a released layout:
    #: ``videoattn.models.released.list_layouts()``). Loaded after ``pretrained``.
    weights: str | None = None
    weights_layout: str = "videoattn"
    #: Dropout before the classifier (0.5 in the GTA/RNL/BAT recipes).
    dropout: float = 0.5
    #: Further keyword arguments for ``create_model`` (e.g. ``base_channels: 16``, block options).
    options: dict[str, Any] = field(default_factory=dict)
    #: Convert BatchNorm layers to SyncBatchNorm when training with several processes.
    sync_bn: bool = False
    #: Activation checkpointing of the inserted blocks (recomputed in the backward pass): less
    #: memory for some more compute; loss and gradients unchanged (``set_block_checkpointing``).
    checkpoint_blocks: bool = False
    #: Keep the trunk's 2-D convolution weights (and so their activations) channels-last (NHWC):
    #: the same function, faster on CPU for the R2D/TSM ResNets (``to_channels_last``;
    #: docs/training.md, Performance). Applies to training and to test/predict/export loading.
    #: ``auto`` (default): channels-last on a CUDA device and on AVX-512 CPUs (measured faster there),
    #: NCHW on other CPUs (``videoattn.engine.builders.explain_channels_last``). The same function, but
    #: float32 sums round differently: pin ``false`` for results that do not depend on the machine.
    channels_last: bool | Literal["auto"] = "auto"
    #: ``torch.compile`` the model (in place: ``state_dict`` keys unchanged) for training, test and
    #: predict; ``compile_backend`` is its ``backend`` (``inductor``; ``eager``/``aot_eager`` compile
    #: fast and only check tracing).
    compile: bool = False
    compile_backend: str = "inductor"


@dataclass
class DataConfig:
    """Where the videos are and how clips are sampled (``videoattn.data.build_dataset`` arguments)."""

    format: str = "ssv2"
    root: str = ""
    train_annotations: str = ""
    val_annotations: str | None = None
    test_annotations: str | None = None
    #: Class list file; ``null`` when the annotation format carries the classes itself.
    labels: str | None = None
    #: Training/test crop size in pixels.
    size: int = 224
    #: Shorter side after resizing, or ``[height, width]`` (GTA/TSN resize to ``[240, 320]``);
    #: ``null``: ``round(size * 256 / 224)``.
    scale_size: int | list[int] | None = None
    sampling: Literal["tsn", "dense"] = "tsn"
    frame_interval: int = 1
    #: Horizontal flips (``docs/data.md``). ``auto``: ``skip_left_right`` for Something-Something
    #: (``ssv1``/``ssv2``) and any dataset with classes naming left or right, else ``standard``; the
    #: policy used is recorded in the run's ``metadata.json`` (``data.flip``). It also decides
    #: whether ten-crop testing mirrors views.
    flip: Literal["auto", "standard", "none", "skip_left_right", "swap_left_right"] = "auto"
    decoder: str = "auto"
    #: Raise on the first unreadable video instead of substituting another sample.
    strict: bool = False
    #: Fraction of annotated videos that may be missing on disk before train/test refuse to start
    #: (checked on all entries, or a sample of 2000). Within it, training substitutes missing videos
    #: and evaluation leaves them out and lists them; a file found under another root is always an error.
    missing_tolerance: float = 0.05
    num_workers: int = 2
    pin_memory: bool | None = None
    #: Where the training crop/resize/flip/normalise run (docs/data.md): ``cpu`` in the loader workers;
    #: ``device``: workers return decoded uint8 frames and the training step transforms the batch on
    #: the model's device; ``auto``: ``device`` when training on CUDA, else ``cpu``.
    transforms_on: Literal["auto", "cpu", "device"] = "auto"
    #: Mini-Kinetics-style subset files (lists of video ids) restricting each split's annotations.
    train_subset: str | None = None
    val_subset: str | None = None
    test_subset: str | None = None
    #: Further keyword arguments of ``build_dataset`` for every split (``video_extension``,
    #: ``frame_template``, ``color_jitter``, ``decode_threads``, ...).
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Optimisation recipe and run bookkeeping.

    ``batch_size`` is the *global* batch of one optimizer step (all processes and accumulation
    micro-steps together), as the papers state it; each process loads
    ``batch_size / (world_size * accumulation_steps)`` clips per micro-step.
    """

    work_dir: str = ""
    epochs: int = 50
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    #: Learning-rate schedule after warm-up: ``step`` (x gamma at each milestone epoch), ``cosine``
    #: (to ``min_lr`` at the last epoch), ``warm_restarts`` (SGDR, Loshchilov & Hutter 2017), ``constant``.
    schedule: Literal["step", "cosine", "warm_restarts", "constant"] = "step"
    milestones: list[float] = field(default_factory=lambda: [30.0, 40.0, 45.0])
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    #: Warm-up starts at ``lr * warmup_start_factor`` and rises linearly to ``lr``.
    warmup_start_factor: float = 0.01
    min_lr: float = 0.0
    #: SGDR: length of the first cycle in epochs (T_0) and the factor each next cycle grows by (T_mult).
    restart_period: float = 10.0
    restart_mult: float = 1.0
    #: Clip the global gradient norm to this value (``null``: no clipping; TSN-style recipes use 20).
    clip_grad_norm: float | None = None
    accumulation_steps: int = 1
    #: ``bf16`` autocast works on CPU and CUDA; ``fp16`` (with a gradient scaler) on CUDA only; ``auto``
    #: (default): bf16 on a CUDA GPU with bf16 tensor cores; on a CPU bf16 only where it was measured to
    #: pay (AVX-512 BF16, no AMX, >= 1 GMAC per clip), else fp32 (``videoattn.engine.precision`` has the rule). Pin
    #: ``fp32`` for float32 results that do not depend on the machine.
    precision: str = "auto"
    #: ``partial``: every backbone BatchNorm but the first keeps its ImageNet statistics and affine
    #: (TSN's partial BN); ``all``: every backbone BatchNorm is frozen; ``none``: all train normally.
    #: BatchNorms inside inserted blocks (NL, DNL, TAPE, GTA, ...) always train: their output norms
    #: start at zero, and frozen there the blocks would stay the identity.
    freeze_bn: Literal["none", "partial", "all"] = "none"
    label_smoothing: float = 0.0
    #: Validate every this many epochs (0: never; needs ``data.val_annotations``).
    val_interval: int = 1
    #: Also write ``last.pt`` every this many optimizer steps (0: only at the end of each epoch).
    checkpoint_interval: int = 0
    log_interval: int = 10
    #: ``false``: a fresh run (a work dir already holding ``last.pt`` is refused); ``auto`` (or ``true``):
    #: continue from ``work_dir/last.pt`` when there is one, start fresh otherwise, so a restarted or
    #: requeued job (``torchrun --max-restarts``, SLURM ``--requeue``) continues with the same command.
    resume: bool | Literal["auto"] = False
    #: Stop after this many optimizer steps in total (``null``: run all epochs). For smoke tests.
    max_steps: int | None = None
    seed: int = 0
    #: ``torch.use_deterministic_algorithms(True)`` and deterministic cuDNN.
    deterministic: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    progress: bool = True
    #: DDP ``find_unused_parameters`` (needed only by models with branches skipped in forward).
    find_unused_parameters: bool = False
    #: Intra-op CPU threads per process (``null``: torch's default).
    num_threads: int | None = None
    #: Skip at most this many optimizer steps whose loss is NaN/inf (no update; each one is logged and
    #: counted in the summary) before stopping; 0 stops at the first one.
    skip_nonfinite_steps: int = 0


@dataclass
class EvalConfig:
    """Testing: views per video, score averaging and batch size (videos per process per batch)."""

    #: ``CLIPSxCROPS``: temporal clips times spatial crops per video (``1x1``: one centre clip).
    views: str = "1x1"
    #: Average softmax probabilities (``prob``) or raw logits (``logits``) over views and checkpoints.
    average: Literal["prob", "logits"] = "prob"
    batch_size: int = 8
    num_workers: int | None = None
    #: Precision of ``test`` and ``predict`` (values as ``train.precision``; null: ``train.precision``).
    precision: str | None = None


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def copy(self) -> Config:
        return config_from_dict(self.to_dict())


# ----------------------------------------------------------------------------------------------------
# Type checking of raw values


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        return "a mapping"
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any value"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(
        annotation, getattr(annotation, "__name__", str(annotation)))


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Return ``value`` checked against ``annotation`` (ints accepted for floats); raise ConfigError."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin is Literal:
        if value in typing.get_args(annotation) and not isinstance(value, bool):
            return value
    elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for option in typing.get_args(annotation):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
    elif annotation is type(None):
        if value is None:
            return None
    elif origin is list:
        if isinstance(value, (list, tuple)):
            (item_type,) = typing.get_args(annotation)
            return [_coerce(item, item_type, f"{key}[{i}]") for i, item in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return dict(value)
    elif annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. ``decoder: 1`` is unusual but harmless; paths like ``2024`` too
    raise ConfigError(f"config key {key!r}: got {value!r} ({type(value).__name__}); "
                      f"expected {_type_name(annotation)}")


def section_from_dict(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"config key {prefix!r}: expected a mapping of settings, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=3)
            hint = f" Did you mean {', '.join(repr(f'{prefix}.{c}' if prefix else c) for c in close)}?" \
                if close else ""
            raise ConfigError(f"unknown config key {dotted!r}.{hint} Allowed in {prefix or 'the top level'}: "
                              f"{', '.join(names)}")
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            values[key] = section_from_dict(annotation, value, dotted)
        else:
            values[key] = _coerce(value, annotation, dotted)
    return cls(**values)


def config_from_dict(raw: dict[str, Any] | None) -> Config:
    """Build and validate a :class:`Config` from nested dicts (missing keys keep their defaults)."""
    config = section_from_dict(Config, raw or {}, "")
    validate(config)
    return config


# ----------------------------------------------------------------------------------------------------
# Value checks (types are already right when these run)


def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"config key {key!r}: got {value!r}; {allowed}")


def parse_views(views: str) -> tuple[int, int]:
    """``'10x3'`` -> ``(10, 3)`` (temporal clips, spatial crops)."""
    text = str(views).lower().replace(" ", "")
    parts = text.split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise _fail("eval.views", views, "expected CLIPSxCROPS with positive integers, e.g. '1x1', '10x3'")
    if int(parts[1]) not in (1, 3, 5, 10):
        raise _fail("eval.views", views, "the number of spatial crops must be 1 (centre), 3 (fully "
                    "convolutional left/centre/right), 5 or 10 (corners + centre, and flips)")
    return int(parts[0]), int(parts[1])


def validate(config: Config) -> None:
    """Check values that types alone do not rule out; raise ConfigError naming the key."""
    m, d, t, e = config.model, config.data, config.train, config.eval
    from .engine.precision import check_precision

    check_precision(t.precision, "train.precision")
    if e.precision is not None:
        check_precision(e.precision, "eval.precision")
    if m.num_classes is not None and m.num_classes < 1:
        raise _fail("model.num_classes", m.num_classes, "expected a positive integer or null")
    if m.num_frames < 1:
        raise _fail("model.num_frames", m.num_frames, "expected a positive integer")
    if not 0.0 <= m.dropout < 1.0:
        raise _fail("model.dropout", m.dropout, "expected 0 <= dropout < 1")
    if m.compile:
        from .engine.builders import check_compile_backend

        check_compile_backend(m.compile_backend)
    for key in ("num_classes", "num_frames", "pretrained", "dropout", "weights", "weights_layout"):
        if key in m.options:
            raise _fail(f"model.options.{key}", m.options[key], f"set it as model.{key} instead")
    if d.size < 1:
        raise _fail("data.size", d.size, "expected a positive number of pixels")
    if isinstance(d.scale_size, list):
        if len(d.scale_size) != 2 or min(d.scale_size) < d.size:
            raise _fail("data.scale_size", d.scale_size, f"expected [height, width], both >= data.size ({d.size})")
    elif d.scale_size is not None and d.scale_size < d.size:
        raise _fail("data.scale_size", d.scale_size, f"expected null, >= data.size ({d.size}), or [height, width]")
    if d.frame_interval < 1:
        raise _fail("data.frame_interval", d.frame_interval, "expected a positive integer")
    if d.num_workers < 0:
        raise _fail("data.num_workers", d.num_workers, "expected >= 0")
    if not 0.0 <= d.missing_tolerance <= 1.0:
        raise _fail("data.missing_tolerance", d.missing_tolerance, "expected a fraction between 0 and 1")
    positive = {"train.epochs": t.epochs, "train.batch_size": t.batch_size,
                "train.accumulation_steps": t.accumulation_steps, "train.log_interval": t.log_interval,
                "eval.batch_size": e.batch_size}
    for key, value in positive.items():
        if value < 1:
            raise _fail(key, value, "expected a positive integer")
    if not (t.lr > 0 and math.isfinite(t.lr)):
        raise _fail("train.lr", t.lr, "expected a positive finite learning rate")
    if not 0.0 <= t.momentum < 1.0:
        raise _fail("train.momentum", t.momentum, "expected 0 <= momentum < 1")
    if t.nesterov and t.momentum == 0:
        raise _fail("train.nesterov", t.nesterov, "Nesterov momentum needs train.momentum > 0")
    if t.weight_decay < 0:
        raise _fail("train.weight_decay", t.weight_decay, "expected >= 0")
    if not 0 < t.gamma <= 1:
        raise _fail("train.gamma", t.gamma, "expected 0 < gamma <= 1")
    if t.milestones != sorted(t.milestones) or any(x <= 0 for x in t.milestones):
        raise _fail("train.milestones", t.milestones, "expected increasing positive epochs")
    if t.warmup_epochs < 0 or t.warmup_epochs > t.epochs:
        raise _fail("train.warmup_epochs", t.warmup_epochs, f"expected 0 <= warmup_epochs <= train.epochs "
                    f"({t.epochs})")
    if not 0 < t.warmup_start_factor <= 1:
        raise _fail("train.warmup_start_factor", t.warmup_start_factor, "expected 0 < factor <= 1")
    if not 0 <= t.min_lr <= t.lr:
        raise _fail("train.min_lr", t.min_lr, f"expected 0 <= min_lr <= train.lr ({t.lr})")
    if t.restart_period <= 0:
        raise _fail("train.restart_period", t.restart_period, "expected a positive number of epochs")
    if t.restart_mult < 1:
        raise _fail("train.restart_mult", t.restart_mult, "expected >= 1")
    if t.clip_grad_norm is not None and t.clip_grad_norm <= 0:
        raise _fail("train.clip_grad_norm", t.clip_grad_norm, "expected a positive norm or null")
    if not 0 <= t.label_smoothing < 1:
        raise _fail("train.label_smoothing", t.label_smoothing, "expected 0 <= label_smoothing < 1")
    for key, value in (("train.val_interval", t.val_interval),
                       ("train.checkpoint_interval", t.checkpoint_interval),
                       ("train.skip_nonfinite_steps", t.skip_nonfinite_steps)):
        if value < 0:
            raise _fail(key, value, "expected >= 0 (0 disables)")
    if t.max_steps is not None and t.max_steps < 1:
        raise _fail("train.max_steps", t.max_steps, "expected a positive integer or null")
    if t.num_threads is not None and t.num_threads < 1:
        raise _fail("train.num_threads", t.num_threads, "expected a positive integer or null")
    if t.batch_size % t.accumulation_steps:
        raise _fail("train.batch_size", t.batch_size,
                    f"expected a multiple of train.accumulation_steps ({t.accumulation_steps})")
    parse_views(e.views)
    if e.num_workers is not None and e.num_workers < 0:
        raise _fail("eval.num_workers", e.num_workers, "expected >= 0 or null")


def require(config: Config, *keys: str) -> None:
    """Raise ConfigError for the first dotted key whose value is empty (e.g. ``train.work_dir``)."""
    for key in keys:
        section, name = key.split(".", 1)
        value = getattr(getattr(config, section), name)
        if value in (None, ""):
            raise ConfigError(f"config key {key!r} is required here but not set "
                              f"(add it to the YAML file or pass --set {key}=...)")


# ----------------------------------------------------------------------------------------------------
# Overrides and files


def parse_override(text: str) -> tuple[str, Any]:
    """``'train.lr=0.02'`` -> ``('train.lr', 0.02)``; the value is parsed as YAML."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. train.lr=0.02")
    key, raw_value = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: the key {key!r} is not a dotted name like train.lr")
    try:
        value = yaml.safe_load(raw_value) if raw_value.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({' '.join(str(error).split())})") from None
    return key, value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of nested dict ``raw`` with each ``KEY=VALUE`` override applied."""
    import copy

    result = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text)
        node = result
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {'.'.join(parts[:depth + 1])!r} is a value, "
                                  f"not a section")
            node = child
        node[parts[-1]] = value
    return result


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or start from defaults when ``path`` is None), apply overrides, validate.

    A file may name a ``base`` file to merge onto (:mod:`videoattn.config_files`).

    Relative paths in ``data.*``, ``model.pretrained`` and ``train.work_dir`` stay relative to the
    current directory (the directory ``videoattn`` is run from), as on a command line.
    """
    from .config_files import read_config_file

    raw: Any = {}
    if path is not None:
        path = Path(path)
        raw = read_config_file(path)  # its ``base:`` chain merged (videoattn.config_files)
    overrides = list(overrides)
    merged = apply_overrides(raw, overrides)
    try:
        return config_from_dict(merged)
    except ConfigError as error:
        raise _blame(error, path, raw, overrides) from None


def _override_behind(error: ConfigError, overrides: list[str]) -> str | None:
    """The last ``--set`` text whose key is the key ``error`` names (or inside / above it), else None."""
    import re

    named = re.findall(r"config key '([^']+)'", str(error))
    for text in reversed(overrides):
        key = text.split("=", 1)[0].strip()
        for name in named:
            if key == name or key.startswith(name + ".") or name.startswith((key + ".", key + "[")):
                return text
    return None


def _blame(error: ConfigError, path, raw: dict[str, Any], overrides: list[str]) -> ConfigError:
    """``error`` prefixed with where the bad value came from: the ``--set`` naming its key, else the YAML
    file (when the file alone fails the same way), else the file and all ``--set`` values together."""
    import shlex

    def quote(text: str) -> str:  # as typed in a shell; repr for what a shell line cannot show
        return shlex.quote(text) if text.isprintable() else repr(text)

    culprit = _override_behind(error, overrides)
    if culprit is not None:
        return ConfigError(f"--set {quote(culprit)}: {error}")
    if not overrides:
        return ConfigError(f"{path}: {error}") if path is not None else error
    try:
        config_from_dict(raw)
        file_alone = None
    except ConfigError as file_error:
        file_alone = str(file_error)
    if path is not None and file_alone == str(error):
        return ConfigError(f"{path}: {error}")
    where = f"{path} with " if path is not None else ""
    return ConfigError(f"{where}--set {' '.join(quote(o) for o in overrides)}: {error}")


def config_to_yaml(config: Config) -> str:
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)


def save_config(config: Config, path: str | os.PathLike) -> None:
    from .utils.io import atomic_write_text

    atomic_write_text(path, config_to_yaml(config))
