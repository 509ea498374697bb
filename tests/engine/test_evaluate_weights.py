"""`videoattn test` on whole-model weights named in the config (e.g. an authors' released checkpoint)."""

import json

import torch

from videoattn.cli import main
from videoattn.engine import evaluate, train


def test_config_weights_evaluate_like_the_checkpoint_they_came_from(make_config, make_config_file, tmp_path,
                                                                    capsys):
    config = make_config(tmp_path / "run", train={"epochs": 1, "val_interval": 0})
    train(config)
    checkpoint = tmp_path / "run" / "last.pt"
    weights = tmp_path / "weights.pth"
    torch.save(torch.load(checkpoint, weights_only=True)["model"], weights)  # a bare state dict

    expected = evaluate(config, [str(checkpoint)])
    config.model.weights = str(weights)
    config.model.num_classes = 8
    got = evaluate(config, [])
    assert got["top1"] == expected["top1"] and got["loss"] == expected["loss"]
    assert got["checkpoints"] == [str(weights)]

    config_path = make_config_file(tmp_path / "c.yaml", tmp_path / "run2", train={"epochs": 1})
    assert main(["test", "--config", str(config_path), "--set", f"model.weights={weights}",
                 "model.num_classes=8", "--json", "--out", str(tmp_path / "out")]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == expected["top1"]
    assert main(["test", "--config", str(config_path)]) == 2
    assert "needs --checkpoint CKPT, or model.weights" in capsys.readouterr().err
