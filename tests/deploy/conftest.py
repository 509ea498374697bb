"""Fixtures for predict/export tests: the engine tests' tiny synthetic dataset and a checkpoint for it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.engine.conftest import tiny_config_dict, write_config


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """24 synthetic SSv2-layout videos (8 classes), 8 frames of 32 px."""
    from videoattn.data import generate_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(root, num_videos=24, frames=8, size=32, seed=0)
    return root


def write_checkpoint(path: Path, config_dict: dict, seed: int = 0) -> Path:
    """A checkpoint in ``best.pt``'s layout (model, config, num_classes, classes) for ``config_dict``.

    The model is the freshly built one with its zero-initialised gates and BN statistics moved off
    their initial values, so that every block changes the output.
    """
    from videoattn.config import config_from_dict
    from videoattn.data import build_dataset
    from videoattn.engine.builders import build_model
    from videoattn.engine.train_state import best_state

    config = config_from_dict(config_dict)
    data = config.data
    classes = build_dataset(format=data.format, root=data.root, annotations=data.val_annotations,
                            labels=data.labels, split="val").classes
    torch.manual_seed(seed)
    model = build_model(config.model, len(classes), pretrained=False)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and ("running_var" in name or (tensor == 0).all()):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
    state = best_state(model_state=model.state_dict(), config=config, num_classes=len(classes), classes=classes,
                       epoch=1, global_step=1, record={})
    torch.save(state, path)
    return path


@pytest.fixture(scope="session")
def trained(synthetic_root, tmp_path_factory):
    """``(config_path, checkpoint_path, config_dict)`` of the tiny TSM-R18 recipe (untrained weights)."""
    work = tmp_path_factory.mktemp("deploy_run")
    config_dict = tiny_config_dict(synthetic_root, work)
    config_path = write_config(work / "config.yaml", config_dict)
    checkpoint = write_checkpoint(work / "best.pt", config_dict)
    return config_path, checkpoint, config_dict
