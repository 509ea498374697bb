"""``visualize()`` as a library call (issue 31): a caller's model keeps its mode, and every split is read
with the evaluation transforms."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from videoattn.config import load_config
from videoattn.errors import ConfigError
from videoattn.visualize import visualize

from .conftest import tiny_model


def _num_classes(config) -> int:
    return len(json.loads(Path(load_config(config).data.labels).read_text()))


def test_a_given_model_keeps_its_mode_also_on_error(tiny_setup, tmp_path):
    config, _, video, _ = tiny_setup
    model = tiny_model(_num_classes(config), blocks=[{"name": "nl", "plan": "res3: 1"}]).train()
    frozen = model.backbone.bn1.eval()  # a batch norm its owner froze
    visualize("cam", config, video=video, model=model, out=tmp_path)
    assert model.training and model.fc.training and not frozen.training
    with pytest.raises(ConfigError, match="--query"):
        visualize("attention", config, video=video, model=model, queries=["0,99,0"], out=tmp_path)
    assert model.training and model.fc.training and not frozen.training
    model.eval()
    visualize("cam", config, video=video, model=model, out=tmp_path)
    assert not any(module.training for module in model.modules())


def test_tsne_reads_the_training_split_without_augmentation(tiny_setup):
    from videoattn.visualize.tsne import clip_features

    config_path, _, _, _ = tiny_setup
    train = load_config(config_path).data.train_annotations
    config = load_config(config_path, [f"data.val_annotations={train}", "data.flip=standard"])
    model = tiny_model(_num_classes(config_path))
    torch.manual_seed(0)
    as_train, labels, _ = clip_features(model, config, "train", max_videos=6, progress=False)
    as_val, val_labels, _ = clip_features(model, config, "val", max_videos=6, progress=False)
    assert np.array_equal(labels, val_labels)
    assert np.abs(as_train - as_val).max() < 1e-6
