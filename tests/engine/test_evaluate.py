"""Evaluation: 1-clip and multi-view scores, files written, ensembles, and the train/test CLI."""

import csv
import json

import pytest
import torch

from videoattn.cli import main
from videoattn.engine import evaluate, train
from videoattn.engine.checkpoint import load_checkpoint, save_checkpoint
from videoattn.errors import CheckpointError


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_root):
    """One short run (2 epochs) and a 2-frame sibling for ensembles."""
    from videoattn.config import config_from_dict

    from .conftest import tiny_config_dict

    base = tmp_path_factory.mktemp("trained")
    config = config_from_dict(tiny_config_dict(synthetic_root, base / "run4"))
    train(config)
    config2 = config_from_dict(tiny_config_dict(synthetic_root, base / "run2", model={"num_frames": 2},
                                                train={"epochs": 1}))
    train(config2)
    return config, base


def test_one_clip_and_multi_view(trained, tmp_path):
    config, base = trained
    checkpoint = base / "run4" / "last.pt"
    single = evaluate(config, [str(checkpoint)], views="1x1", output_dir=tmp_path / "single")
    assert single["num_videos"] == 8 and single["views"] == "1x1"
    assert {"top1", "top5", "mean_class_accuracy", "loss"} <= set(single)
    multi = evaluate(config, [str(checkpoint)], views="2x3", output_dir=tmp_path / "multi")
    assert multi["num_videos"] == 8
    assert multi["loss"] != single["loss"]  # other views, other scores

    rows = list(csv.DictReader((tmp_path / "multi" / "predictions.csv").open()))
    assert len(rows) == 8 and {"index", "label", "predicted", "top5", "top5_scores"} <= set(rows[0])
    correct = sum(int(row["correct"]) for row in rows)
    assert correct / 8 * 100 == pytest.approx(multi["top1"])
    matrix = [line.split(",")[1:] for line in (tmp_path / "multi" / "confusion_matrix.csv").read_text()
              .splitlines()[1:]]
    assert sum(int(v) for row in matrix for v in row) == 8
    assert sum(int(row[i]) for i, row in enumerate(matrix)) == correct
    saved = json.loads((tmp_path / "multi" / "metrics.json").read_text())
    assert saved["top1"] == multi["top1"]


def test_ensemble_averages_members_with_different_frame_counts(trained, tmp_path):
    config, base = trained
    four, two = str(base / "run4" / "last.pt"), str(base / "run2" / "last.pt")
    same = evaluate(config, [four, four], views="1x1")
    alone = evaluate(config, [four], views="1x1")
    assert same["top1"] == alone["top1"] and same["loss"] == pytest.approx(alone["loss"])
    ensemble = evaluate(config, [four, two], views="1x1", output_dir=tmp_path / "ens")
    assert [m["num_frames"] for m in ensemble["members"]] == [4, 2]
    member_loss = [m["loss"] for m in ensemble["members"]]
    assert ensemble["loss"] <= max(member_loss) + 1e-6  # NLL is convex in the averaged probabilities


def test_checkpoint_that_does_not_fit_is_explained(trained, tmp_path):
    config, base = trained
    state = load_checkpoint(base / "run4" / "last.pt")
    state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("fc")}
    save_checkpoint({"model": state["model"], "config": state["config"], "num_classes": 8},
                    tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="missing"):
        evaluate(config, [str(tmp_path / "partial.pt")])


def test_cli_test_json_and_train_errors(trained, tmp_path, capsys, make_config_file):
    config, base = trained
    config_path = make_config_file(tmp_path / "c.yaml", base / "run4")
    code = main(["test", "--config", str(config_path), "--checkpoint", str(base / "run4" / "best.pt"),
                 "--views", "1x3", "--json", "--out", str(tmp_path / "out")])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["views"] == "1x3" and metrics["num_videos"] == 8
    assert (tmp_path / "out" / "confusion_matrix.csv").is_file()

    code = main(["train", "--config", str(config_path), "--set", "train.lr=-1"])
    err = capsys.readouterr().err
    assert code == 2 and "'train.lr'" in err and err.count("\n") == 1
    code = main(["train", "--config", str(config_path), "--set", "train.work_dir=" + str(tmp_path / "w"),
                 "model.name=r2d18_nope"])
    err = capsys.readouterr().err
    assert code == 2 and "r2d18_nope" in err
    assert not (tmp_path / "w" / "last.pt").exists()


def test_unsafe_checkpoint_is_refused_by_the_cli(trained, tmp_path, capsys, make_config_file):
    config, base = trained
    torch.save({"model": {}, "hook": print}, tmp_path / "evil.pt")
    config_path = make_config_file(tmp_path / "c.yaml", base / "run4")
    code = main(["test", "--config", str(config_path), "--checkpoint", str(tmp_path / "evil.pt")])
    assert code == 2 and "refused" in capsys.readouterr().err


def test_unlabelled_videos_are_left_out_of_metrics():
    from videoattn.engine.evaluation import _labelled_metrics

    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    metrics = _labelled_metrics(scores, torch.tensor([0, -1, 1]), "prob")
    assert metrics["num_videos"] == 2 and metrics["top1"] == 50.0


def test_train_split_is_scored_with_evaluation_transforms(trained, tmp_path):
    """`videoattn test --split train` reads the training list as it reads the validation list (centre
    clip and crop, no flip), never with the training augmentation: the scores equal those of the same
    list given as the validation split."""
    import dataclasses

    config, base = trained
    checkpoint = str(base / "run4" / "last.pt")
    as_train = evaluate(config, [checkpoint], views="1x1", split="train", output_dir=tmp_path / "train")
    data = dataclasses.replace(config.data, val_annotations=config.data.train_annotations)
    as_val = evaluate(dataclasses.replace(config, data=data), [checkpoint], views="1x1", output_dir=tmp_path / "val")
    assert as_train["num_videos"] == as_val["num_videos"] > 0
    assert as_train["loss"] == pytest.approx(as_val["loss"], rel=0, abs=1e-6)
