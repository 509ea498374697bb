"""One source of class names for test, predict, export and visualize (issue 31 item 1).

A checkpoint without ``classes`` (or whole-model weights) must give the names ``videoattn test``
reads from the config's dataset, because the flip policy of mirrored test views (``swap_left_right``)
is derived from those names: with numbers instead, ten-crop views were never remapped.
"""

from __future__ import annotations

import csv

import pytest
import torch

from tests.deploy.conftest import write_checkpoint
from tests.engine.conftest import tiny_config_dict, write_config
from videoattn import Predictor
from videoattn.config import config_from_dict, load_config
from videoattn.engine.builders import build_dataset_for
from videoattn.engine.evaluation import evaluate
from videoattn.errors import CheckpointError


@pytest.fixture(scope="module")
def swap_run(synthetic_root, tmp_path_factory):
    """A config with ``flip: swap_left_right`` and a checkpoint that stores no class names."""
    work = tmp_path_factory.mktemp("swap_run")
    config_dict = tiny_config_dict(synthetic_root, work, data={"flip": "swap_left_right"})
    config_path = write_config(work / "config.yaml", config_dict)
    checkpoint = write_checkpoint(work / "best.pt", config_dict, seed=3)
    state = torch.load(checkpoint, weights_only=False)
    del state["classes"]
    torch.save(state, checkpoint)
    return config_path, checkpoint, config_dict


def test_predict_without_stored_classes_equals_test_with_ten_crops_and_swap(swap_run, tmp_path):
    config_path, checkpoint, _ = swap_run
    views = "1x10"
    config = load_config(config_path)
    evaluate(config, str(checkpoint), views=views, output_dir=tmp_path / "test")
    dataset = build_dataset_for(config, "val", views=views, num_frames=config.model.num_frames)
    assert dataset.view_class_maps is not None  # the mirrored views are remapped by test
    expected = {}
    with open(tmp_path / "test" / "predictions.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            path = dataset.records[int(row["index"])].existing_path()
            expected[path] = ([int(c) for c in row["top5"].split()], [float(s) for s in row["top5_scores"].split()])
    predictor = Predictor(config_path, checkpoint, views=views, topk=5)
    paths = sorted(expected)
    results, skipped = predictor.predict_many(paths)
    assert not skipped and len(results) == len(paths)
    for result in results:
        classes, scores = expected[result["path"]]
        assert [item["label"] for item in result["top"]] == classes
        assert [item["probability"] for item in result["top"]] == pytest.approx(scores, abs=6e-6)
    assert predictor.classes == dataset.classes


def test_class_names_come_from_checkpoint_else_the_config_dataset(swap_run, trained):
    from videoattn.engine.evaluation import class_names_for

    config_path, checkpoint, config_dict = swap_run
    config = config_from_dict(config_dict)
    dataset_classes = build_dataset_for(config, "val", num_frames=4).classes
    assert class_names_for(config, torch.load(checkpoint, weights_only=False), 8) == dataset_classes
    assert any("left" in name for name in dataset_classes)  # what the flip map is built from
    saved = torch.load(trained[1], weights_only=False)
    assert class_names_for(config, {"classes": ["a"] * 8}, 8) == ["a"] * 8  # the checkpoint's first
    assert class_names_for(config, saved, 8) == saved["classes"]
    # visualize labels its figures from the same source
    from videoattn.visualize.loading import class_names

    assert class_names(config, checkpoint) == dataset_classes
    assert class_names(config, trained[1]) == saved["classes"]


def test_no_class_names_anywhere_is_one_clear_error(swap_run, tmp_path):
    from videoattn.engine.evaluation import class_names_for

    _, checkpoint, config_dict = swap_run
    config_dict = {**config_dict, "data": {**config_dict["data"], "val_annotations": str(tmp_path / "gone.json"),
                                           "train_annotations": str(tmp_path / "gone_too.json")}}
    config = config_from_dict(config_dict)
    state = torch.load(checkpoint, weights_only=False)
    with pytest.raises(CheckpointError) as caught:
        class_names_for(config, state, 8, str(checkpoint))
    message = str(caught.value)
    assert "\n" not in message and "stores no class names" in message and "gone.json" in message
    assert "data.labels" in message
    with pytest.raises(CheckpointError, match="no class names"):
        Predictor(config, checkpoint)
    # a count that does not match the model is refused, not silently replaced by numbers
    good = config_from_dict(swap_run[2])
    with pytest.raises(CheckpointError, match="lists 8 classes for a model of 5"):
        class_names_for(good, state, 5)


def test_export_records_the_config_class_names(swap_run, tmp_path):
    from videoattn.deploy import export_model, load_exported_metadata

    config_path, checkpoint, config_dict = swap_run
    config = load_config(config_path)
    out = tmp_path / "model.pt"
    export_model(config, checkpoint, "torchscript", out)
    assert load_exported_metadata(out)["classes"] == build_dataset_for(config, "val", num_frames=4).classes
