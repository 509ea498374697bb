"""Export a trained recognizer to ONNX, TorchScript or a ``torch.export`` ExportedProgram.

The exported graph maps a normalised clip ``(N, 3, T, S, S)`` (float32, the layout ``videoattn test``
feeds the model) to logits ``(N, K)``. Everything a serving program needs besides the graph is
recorded inside the file as one JSON document, :data:`METADATA_KEY` (see :func:`export_metadata`):
class names, frame count, input size, resize, frame sampling and normalisation. ONNX keeps it in
``metadata_props``, TorchScript and ExportedProgram files in their extra files.

ONNX uses the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): on this code
base it exports every block family that exports at all, 5-15x faster than the dynamo exporter, with
outputs within 1e-4 of PyTorch (docs/deploy.md has the measured table and the reasons).

Every export is checked before it is kept: the exported model is run (onnxruntime for ONNX) on a
random clip, and its logits must match the PyTorch model's within ``tolerance`` (max abs, float32).
The file is written to a temporary name beside ``out`` and renamed only after the check, so ``out``
is never half-written. What cannot be exported raises :class:`ExportError`, one line naming the
operator and the block (found by exporting each attention block alone).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import Config
from ..errors import ConfigError, VideoAttnError
from ..utils.io import atomic_path
from ..version import __version__

__all__ = ["EXPORT_FORMATS", "METADATA_KEY", "ExportError", "check_export_dependencies", "export_metadata",
           "export_model", "export_module", "export_scale_size", "load_exported_metadata", "run_exported"]

EXPORT_FORMATS = ("onnx", "torchscript", "exported-program")
#: Name of the JSON metadata document inside every exported file.
METADATA_KEY = "videoattn"
ONNX_OPSET = 17


class ExportError(VideoAttnError):
    """A model (or one of its blocks) cannot be exported to the requested format."""


def export_scale_size(config: Config, size: int, scale_size: int | list[int] | None = None) -> int | list[int]:
    """The resize (shorter side, or ``[height, width]``) that goes with crop ``size``: ``scale_size``
    when given, else the config's ``data.scale_size`` scaled by ``size / data.size`` (the config's
    ratio of resize to crop is kept), else ``round(size * 256 / 224)`` as the data pipeline does."""
    if scale_size is not None:
        values = scale_size if isinstance(scale_size, (list, tuple)) else [scale_size]
        if len(values) not in (1, 2) or any(int(v) < 1 for v in values):
            raise ConfigError(f"--scale-size must be a positive side length or [height, width], got {scale_size!r}")
        if any(int(v) < size for v in values):
            raise ConfigError(f"--scale-size {scale_size!r} is smaller than the crop --size {size}: the "
                              f"centre crop must fit in the resized frame")
        return [int(v) for v in values] if isinstance(scale_size, (list, tuple)) else int(scale_size)
    configured = config.data.scale_size
    if configured is None:
        return round(size * 256 / 224)
    ratio = size / config.data.size
    if isinstance(configured, (list, tuple)):
        return [max(size, round(int(v) * ratio)) for v in configured]
    return max(size, round(int(configured) * ratio))


def export_metadata(config: Config, model_config: Any, classes: list[str], frames: int, size: int,
                    dynamic_batch: bool, fmt: str, scale_size: int | list[int] | None = None) -> dict[str, Any]:
    """What a serving program needs to feed the exported graph and read its output.

    ``scale_size``: the resize recorded (default :func:`export_scale_size`'s for ``size``)."""
    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD

    data = config.data
    options = dict(data.options or {})
    scale_size = export_scale_size(config, size, scale_size)
    averaged = ("logits (softmax gives probabilities; videoattn test averages the views' logits, "
                "then takes the softmax)" if config.eval.average == "logits"
                else "logits (softmax gives probabilities; videoattn test averages the views' softmax)")
    return {
        "format": fmt, "videoattn_version": __version__, "model": model_config.name,
        "classes": list(classes), "num_classes": len(classes),
        "input_name": "video", "output_name": "logits", "input_layout": "NCTHW",
        "input_shape": ["batch" if dynamic_batch else 1, 3, frames, size, size],
        "num_frames": frames, "size": size, "scale_size": scale_size,
        "mean": list(options.get("mean", IMAGENET_MEAN)), "std": list(options.get("std", IMAGENET_STD)),
        "pixel_range": 255, "color": "RGB",
        "normalisation": "x = (rgb / pixel_range - mean) / std per channel",
        "resize": "shorter side to scale_size (or (height, width) if a list), bilinear with antialias, "
                  "then a centre size x size crop",
        "sampling": data.sampling, "frame_interval": data.frame_interval,
        "views": config.eval.views, "average": config.eval.average,
        "output": averaged,
    }


#: Python modules each format needs beyond torch (import name -> the package pip installs).
REQUIRED_MODULES = {"onnx": {"onnx": "onnx", "onnxruntime": "onnxruntime"}}
#: How to install them, named in the error when one is missing.
INSTALL_HINT = "pip install 'videoattn[onnx]' (or: bash scripts/run.sh install onnx)"


def check_export_dependencies(fmt: str) -> None:
    """Raise one :class:`ExportError` line naming the extra to install when a package the format
    needs (ONNX: onnx to write the file, onnxruntime to check it) cannot be imported."""
    import importlib

    missing = []
    for module, package in REQUIRED_MODULES.get(fmt, {}).items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ExportError(f"export to {fmt} needs {' and '.join(missing)}, which {verb} not installed: {INSTALL_HINT}")


def _operator_in(message: str) -> str | None:
    found = re.search(r"operator '?([\w:.]+)'?", message) or re.search(r"((?:aten|prim|onnx)::\w+)", message)
    return found.group(1) if found else None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import logging

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo",
                                                        "torch.onnx._internal.exporter._registration")]
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _write(model: nn.Module, example: torch.Tensor, fmt: str, path: Path, metadata: dict[str, Any],
           dynamic_batch: bool) -> None:
    """Export ``model`` traced on ``example`` to ``path`` (may raise anything the exporter raises)."""
    document = json.dumps(metadata)
    with _quiet(), torch.no_grad():
        if fmt == "onnx":
            import onnx

            buffer = io.BytesIO()
            axes = {"video": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(model, (example,), buffer, dynamo=False, input_names=["video"],
                              output_names=["logits"], dynamic_axes=axes, opset_version=ONNX_OPSET,
                              do_constant_folding=True)
            proto = onnx.load_from_string(buffer.getvalue())
            entry = proto.metadata_props.add()
            entry.key, entry.value = METADATA_KEY, document
            proto.doc_string = f"videoattn {metadata['model']}: (N, 3, T, H, W) clip -> logits"
            path.write_bytes(proto.SerializeToString())
        elif fmt == "torchscript":
            traced = torch.jit.trace(model, (example,), check_trace=False)
            torch.jit.save(traced, str(path), _extra_files={f"{METADATA_KEY}.json": document})
        elif fmt == "exported-program":
            shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
            program = torch.export.export(model, (example,), dynamic_shapes=shapes, strict=False)
            torch.export.save(program, str(path), extra_files={f"{METADATA_KEY}.json": document})
        else:
            raise ConfigError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")


def load_exported_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata document of an exported file (any of the three formats)."""
    path = Path(path)
    if path.suffix == ".onnx" or path.read_bytes()[:2] != b"PK":
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        for entry in proto.metadata_props:
            if entry.key == METADATA_KEY:
                return json.loads(entry.value)
        raise ExportError(f"{path}: no {METADATA_KEY!r} entry in the ONNX metadata_props")
    # TorchScript and ExportedProgram files are zip archives that keep extra files as
    # "<archive>/extra/<name>": read ours directly, without loading (deserialising) the model.
    import zipfile

    wanted = f"/extra/{METADATA_KEY}.json"
    with zipfile.ZipFile(path) as archive:
        names = [name for name in archive.namelist() if name.endswith(wanted) and name.count("/") == 2]
        if not names:
            raise ExportError(f"{path}: no {METADATA_KEY}.json extra file")
        return json.loads(archive.read(names[0]).decode("utf-8"))


def run_exported(path: str | os.PathLike, fmt: str, video: torch.Tensor) -> torch.Tensor:
    """Logits of the exported file at ``path`` for ``video`` (onnxruntime for ONNX)."""
    if fmt == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"video": video.numpy()})[0])
    with torch.no_grad():
        if fmt == "torchscript":
            return torch.jit.load(str(path))(video)
        return torch.export.load(str(path)).module()(video)


def _block_inputs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """Every registered attention block (innermost first) with the input it gets for ``example``."""
    from ..blocks.registry import is_registered_block

    blocks = [(name, module) for name, module in model.named_modules() if is_registered_block(module)]
    blocks.sort(key=lambda item: -item[0].count("."))  # innermost first: the most specific culprit
    inputs: dict[str, torch.Tensor] = {}
    hooks = [block.register_forward_pre_hook(
        lambda module, args, name=name: inputs.setdefault(name, args[0].detach()))
        for name, block in blocks]
    try:
        with torch.no_grad():
            model(example)
    except Exception:  # noqa: BLE001 - no blame then; the caller reports the model's own error
        return []
    finally:
        for hook in hooks:
            hook.remove()
    return [(name, block, inputs[name]) for name, block in blocks if name in inputs]


def _describe(name: str, block: nn.Module) -> str:
    kind = getattr(block, "registered_block_name", None) or type(block).__name__
    return f"block {kind!r} ({type(block).__name__} at {name or 'the model'})"


def _python_ops(block: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the ``torch.autograd.Function`` s the block runs (what exporters trace through)."""
    try:
        with _quiet(), torch.no_grad():
            graph = torch.jit.trace(block, (x,), check_trace=False).inlined_graph
    except Exception:  # noqa: BLE001
        return []
    return list(dict.fromkeys(node.pyname() for node in graph.nodes() if node.kind() == "prim::PythonOp"))


def _blame_block(model: nn.Module, example: torch.Tensor, fmt: str, tolerance: float | None = None,
                 ) -> str | None:
    """The innermost attention block that fails to export alone or, with ``tolerance``, whose export
    alone gives values more than ``tolerance`` (relative to its output's scale) away from PyTorch's."""
    for name, block, x in _block_inputs(model, example):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "block"
            try:
                _write(block, x, fmt, path, {"model": "block"}, False)
            except Exception as error:  # noqa: BLE001 - any exporter failure names this block
                operator = _operator_in(str(error))
                return f"{_describe(name, block)}: " + (f"operator {operator!r}" if operator else _first_line(error))
            if tolerance is None:
                continue
            try:
                with torch.no_grad():
                    expected = block(x)
                diff = float((run_exported(path, fmt, x).float() - expected).abs().max())
            except Exception as error:  # noqa: BLE001
                return f"{_describe(name, block)}: {_first_line(error)}"
            if not diff <= tolerance * max(1.0, float(expected.abs().max())):
                functions = _python_ops(block, x)
                culprit = (f"operators of autograd.Function {', '.join(repr(f) for f in functions)} exported "
                           f"with other values" if functions else "an operator exported with other values")
                return f"{_describe(name, block)}: {culprit} (block alone: {diff:.3g} max abs)"
    return None


def export_model(config: Config, checkpoint: str | os.PathLike | None, fmt: str, out: str | os.PathLike,
                 frames: int | None = None, size: int | None = None, dynamic_batch: bool = True,
                 tolerance: float = 1e-4, check: bool = True,
                 scale_size: int | list[int] | None = None) -> dict[str, Any]:
    """Export the model ``videoattn test`` would evaluate; return ``{"path", "format", "max_abs_diff",
    "metadata"}``. Raises :class:`ExportError` (nothing written) if it cannot be exported or checked.

    ``frames``/``size``: the input's T and crop (default ``model.num_frames``, ``data.size``);
    ``scale_size``: the recorded resize (default: the config's, scaled with ``size``, see
    :func:`export_scale_size`). Class names: :func:`~videoattn.engine.evaluation.class_names_for`."""
    from ..engine.builders import uncompiled
    from ..engine.evaluation import class_names_for, load_model_for

    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    check_export_dependencies(fmt)  # before the model is even built
    for flag, value in (("--frames", frames), ("--size", size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{flag} must be a positive whole number, got {value!r}")
    model, model_config, state = load_model_for(config, None if checkpoint is None else str(checkpoint))
    model = uncompiled(model)  # model.compile: true is for training/test/predict; tracing refuses it
    frames = int(frames if frames is not None else model_config.num_frames)
    size = int(size if size is not None else config.data.size)
    num_classes = int(getattr(model, "num_classes", 0) or model_config.num_classes or 0)
    classes = class_names_for(config, state, num_classes, None if checkpoint is None else str(checkpoint))
    metadata = export_metadata(config, model_config, classes, frames, size, dynamic_batch, fmt, scale_size)
    return export_module(model, fmt, out, metadata, dynamic_batch=dynamic_batch, tolerance=tolerance, check=check)


def export_module(model: nn.Module, fmt: str, out: str | os.PathLike, metadata: dict[str, Any],
                  dynamic_batch: bool = True, tolerance: float = 1e-4, check: bool = True) -> dict[str, Any]:
    """Export ``model`` (eval mode) for clips ``(N, 3, metadata num_frames, size, size)`` to ``out``.

    ``metadata`` (see :func:`export_metadata`; ``model``, ``num_frames`` and ``size`` at least) is
    stored in the file. Checked and written atomically as described in the module docstring.
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    check_export_dependencies(fmt)
    name, frames, size = metadata["model"], int(metadata["num_frames"]), int(metadata["size"])
    model = model.eval()
    generator = torch.Generator().manual_seed(0)
    # batch 2: torch.export specialises a dimension of size 1, so a dynamic batch needs another size
    example = torch.randn(2 if dynamic_batch else 1, 3, frames, size, size, generator=generator)
    # The model must run at this input at all before an exporter is asked to trace it: its own error
    # (e.g. a block that needs another feature-map size) is the one to report, not an exporter's.
    # One clip is enough for that and costs half the traced batch.
    try:
        with torch.no_grad():
            model(example[:1])
    except Exception as error:  # noqa: BLE001 - one line, whatever the model raised
        raise ExportError(f"{name} does not run on clips of {frames} frames of {size}x{size} (input (N, 3, {frames}, "
                          f"{size}, {size})), so it cannot be exported for them: {_first_line(error)}; nothing "
                          f"written") from None
    out = Path(out)
    with atomic_path(out) as tmp:
        try:
            _write(model, example, fmt, tmp, metadata, dynamic_batch)
        except ConfigError:
            raise
        except Exception as error:  # noqa: BLE001 - every exporter failure becomes one ExportError line
            blamed = _blame_block(model, example, fmt)
            operator = _operator_in(str(error))
            what = f"operator {operator!r}" if operator else _first_line(error)
            raise ExportError(f"{name} cannot be exported to {fmt}: "
                              + (blamed if blamed else f"{what} (no attention block fails alone: the trunk)")
                              ) from None
        max_diff = None
        if check:
            batch = 3 if dynamic_batch else 1  # not the traced batch: shows the batch is really dynamic
            probe = torch.randn(batch, 3, frames, size, size, generator=generator)
            with torch.no_grad():
                expected = model(probe)
            try:
                got = run_exported(tmp, fmt, probe)
            except Exception as error:  # noqa: BLE001
                raise ExportError(f"{name} exported to {fmt} but the file does not run: "
                                  f"{_first_line(error)}") from None
            if tuple(got.shape) != tuple(expected.shape):  # would broadcast below and look equal
                raise ExportError(f"{name} exported to {fmt} gives logits of shape {tuple(got.shape)} for a "
                                  f"batch of {batch}, PyTorch {tuple(expected.shape)}; nothing written")
            max_diff = float((got.float() - expected).abs().max())
            # absolute for logits of order one (a trained model's); relative beyond, where float32
            # rounding alone exceeds it (an untrained BN-Inception's logits reach ~2,000)
            scale = max(1.0, float(expected.abs().max()))
            if not max_diff <= tolerance * scale:
                blamed = _blame_block(model, example, fmt, tolerance)
                raise ExportError(f"{name} cannot be exported to {fmt}: its logits are {max_diff:.3g} away from "
                                  f"PyTorch's (max abs, tolerance {tolerance:g} x max(1, max |logit|) = "
                                  f"{tolerance * scale:.3g}); "
                                  + (blamed if blamed else "no attention block differs alone: the trunk")
                                  + "; nothing written") from None
    return {"path": str(out), "format": fmt, "max_abs_diff": max_diff, "metadata": metadata}
