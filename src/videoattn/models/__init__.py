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
    released_bat,
    released_rnl,
    released_rsa,
    released_slowfast,
)
from .backbone_registry import BackboneSpec, get_backbone, list_backbones, register_backbone
from .block_options import apply_block_options
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
    "BackboneSpec", "BlockInsertion", "ImageClassifier", "Preset", "Recognizer", "WeightsReport",
    "apply_block_options", "assemble_recognizer", "build_image_classifier", "build_recognizer", "create_model",
    "get_backbone", "get_preset", "insert_blocks", "list_backbones", "list_layouts", "list_models", "load_weights",
    "register_backbone", "register_layout", "register_preset",
]
