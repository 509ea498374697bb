"""Using a trained model: :class:`Predictor` (``videoattn predict``) and :func:`export_model`
(``videoattn export``: ONNX, TorchScript, ExportedProgram). See ``docs/deploy.md``."""

from .export import EXPORT_FORMATS, ExportError, export_model, load_exported_metadata
from .predict import Predictor, collect_inputs

__all__ = ["EXPORT_FORMATS", "ExportError", "Predictor", "collect_inputs", "export_model", "load_exported_metadata"]
