"""videoattn: spatio-temporal attention for video action recognition.

``create_model`` / ``list_models`` build the recognizers of the papers' tables; ``videoattn.blocks``
holds the attention blocks; ``videoattn.data``, ``videoattn.engine`` and ``videoattn.analysis`` the
data pipeline, training/evaluation and profiling.
"""

from .version import __version__


def create_model(name, num_classes=None, num_frames=8, pretrained=None, **overrides):
    """Build the preset ``name`` (see :func:`list_models`); see :func:`videoattn.models.create_model`."""
    from .models import create_model as _create_model

    return _create_model(name, num_classes=num_classes, num_frames=num_frames, pretrained=pretrained,
                         **overrides)


def list_models(pattern=None):
    """Names of the model presets, optionally filtered by a glob ``pattern`` such as ``'r2d50_*'``."""
    from .models import list_models as _list_models

    return _list_models(pattern)


def __getattr__(name):
    if name == "Predictor":  # imported on first use: ``import videoattn`` stays light
        from .deploy.predict import Predictor

        return Predictor
    raise AttributeError(f"module 'videoattn' has no attribute {name!r}")


__all__ = ["Predictor", "__version__", "create_model", "list_models"]
