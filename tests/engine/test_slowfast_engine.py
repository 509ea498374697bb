"""A small SlowFast + GTA trains a few steps through the engine and is evaluated from its checkpoint."""

import math

from videoattn.engine import evaluate, train


def test_small_slowfast_trains_and_evaluates(tmp_path, make_config):
    config = make_config(tmp_path / "run", model={"name": "slowfast50_gta", "num_frames": 4,
                                                  "options": {"base_channels": 8, "alpha": 2}},
                         train={"epochs": 1, "batch_size": 4})
    train(config)
    checkpoint = tmp_path / "run" / "last.pt"
    assert checkpoint.is_file()
    metrics = evaluate(config, [str(checkpoint)], views="1x1")
    assert metrics["num_videos"] == 8 and math.isfinite(metrics["loss"])
