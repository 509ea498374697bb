"""Image-folder datasets train and evaluate through the same engine as video (4D image batches)."""

import csv

import yaml

from videoattn.cli import main
from videoattn.config import config_from_dict
from videoattn.engine import evaluate, train

from ..data.test_image_folder import write_image_folder


def image_config(root, work_dir, **train_options):
    return {
        "model": {"name": "resnet18", "dropout": 0.0, "options": {"base_channels": 8}},
        "data": {"format": "image_folder", "root": str(root), "train_annotations": "train",
                 "val_annotations": "val", "size": 32, "num_workers": 0},
        "train": {"work_dir": str(work_dir), "epochs": 2, "batch_size": 4, "lr": 0.05, "schedule": "constant",
                  "seed": 0, "num_threads": 1, "progress": False, "log_interval": 1, **train_options},
        "eval": {"batch_size": 4},
    }


def test_image_folder_trains_and_evaluates_with_predictions(tmp_path):
    root = write_image_folder(tmp_path / "images")
    config = config_from_dict(image_config(root, tmp_path / "run"))
    result = train(config)
    assert result.classes == ["cat", "dog", "fox"] and result.global_step == 4  # 10 images, batch 4
    assert result.history[-1]["val_top1"] is not None
    assert any(item["path"].endswith("broken.jpg") for item in result.summary["skipped_samples"])

    metrics = evaluate(config, str(result.last_checkpoint), output_dir=tmp_path / "eval")
    assert metrics["num_videos"] == 6 and 0.0 <= metrics["top1"] <= 100.0
    with open(metrics["files"]["predictions"], encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    assert {row["label_name"] for row in rows} == {"cat", "dog"}
    assert all(row["video_id"].split("/")[0] in ("cat", "dog") for row in rows)
    header = (tmp_path / "eval" / "confusion_matrix.csv").read_text().splitlines()[0]
    assert header.endswith("cat,dog,fox")  # val has no fox, the classes are still the training ones


def test_cli_trains_and_tests_an_image_folder_config(tmp_path, capsys):
    root = write_image_folder(tmp_path / "images", corrupt=False)
    path = tmp_path / "images.yaml"
    path.write_text(yaml.safe_dump(image_config(root, tmp_path / "run", epochs=1)))
    assert main(["train", "--config", str(path), "--no-progress"]) == 0
    assert (tmp_path / "run" / "last.pt").is_file()
    assert main(["test", "--config", str(path), "--checkpoint", str(tmp_path / "run" / "last.pt"),
                 "--out", str(tmp_path / "eval")]) == 0
    assert (tmp_path / "eval" / "predictions.csv").is_file()
    capsys.readouterr()
    assert main(["test", "--config", str(path), "--checkpoint", str(tmp_path / "run" / "last.pt"),
                 "--views", "1x10"]) == 2
    assert "one view per image" in capsys.readouterr().err
