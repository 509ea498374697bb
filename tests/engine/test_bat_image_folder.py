"""A tiny ResNet-18 + BAT image classifier trains and evaluates on an image folder through the engine."""

from videoattn.config import config_from_dict
from videoattn.engine import evaluate, train

from ..data.test_image_folder import write_image_folder
from .test_image_folder_engine import image_config


def test_resnet18_bat_trains_and_evaluates_on_an_image_folder(tmp_path):
    root = write_image_folder(tmp_path / "images", corrupt=False)
    raw = image_config(root, tmp_path / "run", epochs=1)
    raw["model"] = {"name": "resnet18_bat", "dropout": 0.0,
                    "options": {"base_channels": 8, "block_options": {"s": 2}}}  # 32 px: res3 4x4, res4 2x2
    config = config_from_dict(raw)
    result = train(config)
    assert result.history[-1]["val_top1"] is not None
    metrics = evaluate(config, str(result.last_checkpoint), output_dir=tmp_path / "eval")
    assert metrics["num_videos"] == 6 and 0.0 <= metrics["top1"] <= 100.0 and 0.0 <= metrics["top5"] <= 100.0
