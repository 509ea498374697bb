"""Using a trained model: :class:`Predictor` (``videoattn predict``) and :func:`export_model`
(``videoattn export``: ONNX, TorchScript, ExportedProgram). See ``docs/deploy.md``."""

from .export import EXPORT_FORMATS, ExportError, export_model, load_exported_metadata
from .inputs import collect_inputs, decoder_for_input, inference_config, is_frame_folder, resolve_config
from .predict import Predictor

__all__ = ["EXPORT_FORMATS", "ExportError", "Predictor", "collect_inputs", "decoder_for_input", "export_model",
           "inference_config", "is_frame_folder", "load_exported_metadata", "resolve_config"]
