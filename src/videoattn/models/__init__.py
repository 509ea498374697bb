"""Recognizers and their presets; :func:`create_model` builds one by name.

Importing this package registers every preset family.
"""

from . import (  # noqa: F401  (register the preset families and released layouts)
    presets_attention,
    presets_bat,
    presets_gsm,
    presets_rnl,
    presets_rsa,
    presets_slowfast,
    released_rnl,
)
from .presets import Preset, create_model, get_preset, list_models, register_preset
from .recognizer import (
    BlockInsertion,
    ImageClassifier,
    Recognizer,
    assemble_recognizer,
    build_image_classifier,
    build_recognizer,
    insert_blocks,
)
from .released import WeightsReport, list_layouts, load_weights, register_layout

__all__ = [
    "BlockInsertion", "ImageClassifier", "Preset", "Recognizer", "WeightsReport", "assemble_recognizer",
    "build_image_classifier", "build_recognizer", "create_model", "get_preset", "insert_blocks", "list_layouts",
    "list_models", "load_weights", "register_layout", "register_preset",
]
