"""Evaluation never substitutes: a bad video is left out of the metrics and listed with its reason."""

import csv
import json
import shutil

import pytest
import torch

from videoattn.cli import main
from videoattn.engine import evaluate
from videoattn.engine.builders import build_model
from videoattn.engine.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def broken_val(tmp_path_factory, synthetic_root):
    """A copy of the synthetic dataset whose second validation video is corrupt, and a checkpoint."""
    from videoattn.config import config_from_dict

    from .conftest import tiny_config_dict

    base = tmp_path_factory.mktemp("broken_val")
    data_root = base / "data"
    shutil.copytree(synthetic_root, data_root)
    val_ids = [entry["id"] for entry in json.loads((data_root / "validation.json").read_text())]
    broken = next((data_root / "videos").glob(f"{val_ids[1]}.*"))
    broken.write_bytes(b"not a video")
    config = config_from_dict(tiny_config_dict(synthetic_root, base / "run", data={
        "root": str(data_root / "videos"), "train_annotations": str(data_root / "train.json"),
        "val_annotations": str(data_root / "validation.json"), "labels": str(data_root / "labels.json")}))
    torch.manual_seed(0)
    model = build_model(config.model, 8, pretrained=False)
    checkpoint = base / "model.pt"
    save_checkpoint({"model": model.state_dict(), "config": config.to_dict(), "num_classes": 8}, checkpoint)
    return config, checkpoint, broken, len(val_ids)


@pytest.mark.parametrize("views", ["1x1", "2x3"])
def test_bad_video_is_left_out_of_the_metrics(broken_val, tmp_path, views):
    config, checkpoint, broken, total = broken_val
    metrics = evaluate(config, [str(checkpoint)], views=views, output_dir=tmp_path)
    assert metrics["videos_total"] == total and metrics["videos_evaluated"] == total - 1
    assert metrics["num_videos"] == total - 1
    assert [(item["path"], item["index"]) for item in metrics["skipped"]] == [(str(broken), 1)]
    assert metrics["skipped"][0]["reason"]

    rows = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    indices = [int(row["index"]) for row in rows]
    assert sorted(indices) == [i for i in range(total) if i != 1]  # no substitute, no duplicate
    correct = sum(int(row["correct"]) for row in rows)
    assert metrics["top1"] == pytest.approx(100.0 * correct / (total - 1))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["videos_evaluated"] == total - 1 and saved["skipped"][0]["path"] == str(broken)


def test_ensemble_scores_the_same_videos(broken_val):
    config, checkpoint, _, total = broken_val
    metrics = evaluate(config, [str(checkpoint), str(checkpoint)], views="1x1")
    assert metrics["videos_evaluated"] == total - 1 and len(metrics["skipped"]) == 1


def test_cli_prints_how_many_videos_were_evaluated(broken_val, tmp_path, capsys, make_config_file):
    config, checkpoint, broken, total = broken_val
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(config.to_dict()))
    code = main(["test", "--config", str(path), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == 0
    assert f"{total - 1} of {total} videos evaluated" in out
    assert str(broken) in out


def test_gathered_shards_drop_failed_videos():
    """Shards from several processes (one of them left with no scored video) merge by index."""
    from videoattn.engine.evaluation import _merge_shards

    rank0 = (torch.tensor([0, 2]), torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 1]),
             [{"index": 4, "path": "d.mp4", "reason": "corrupt"}])
    rank1 = (torch.zeros(0, dtype=torch.long), torch.zeros(0, 0), torch.zeros(0, dtype=torch.long),
             [{"index": 1, "path": "b.mp4", "reason": "missing"}, {"index": 3, "path": "c.mp4", "reason": "x"}])
    indices, scores, labels, skipped = _merge_shards([rank0, rank1])
    assert indices.tolist() == [0, 2] and labels.tolist() == [0, 1] and scores.shape == (2, 2)
    assert [item["index"] for item in skipped] == [1, 3, 4]
