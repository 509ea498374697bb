"""A tiny R2D-18 with every visualisable block, its checkpoint, a synthetic dataset and a config."""

from pathlib import Path

import pytest
import torch
import yaml

BLOCKS = [
    {"name": "bat", "plan": "res2: 1", "options": {"s": 2, "k": 2}},
    {"name": "gta", "plan": "res3: 0", "options": {"num_groups": 2}},
    {"name": "nl", "plan": "res3: 1"},
    {"name": "dnl", "plan": "res4: 0"},
    {"name": "rnl", "plan": "res4: 1", "options": {"kernel_size": [3, 3, 3]}},
    {"name": "sa_gsm", "plan": "res4: 1", "position": "before_conv1"},
]
NUM_FRAMES = 4


def tiny_model(num_classes: int, blocks=BLOCKS, seed: int = 0) -> torch.nn.Module:
    from videoattn import create_model

    torch.manual_seed(seed)
    return create_model("r2d18", num_classes=num_classes, num_frames=NUM_FRAMES, base_channels=8,
                        blocks=blocks).eval()


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory):
    """``(config_path, checkpoint_path, video_path, root)``: 16 synthetic 32 px videos, the config of a
    tiny all-blocks model and a checkpoint of it (weights made non-trivial: zero-initialised gates and
    norms would draw blank maps)."""
    from videoattn.data import generate_synthetic
    from videoattn.engine.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("visualize")
    data = generate_synthetic(root / "data", num_videos=16, frames=8, size=32, seed=0)
    classes = yaml.safe_load((data / "labels.json").read_text())
    num_classes = len(classes)
    model_section = {"name": "r2d18", "num_classes": num_classes, "num_frames": NUM_FRAMES, "dropout": 0.0,
                     "options": {"base_channels": 8, "blocks": BLOCKS}}
    config = {
        "model": model_section,
        "data": {"format": "ssv2", "root": str(data / "videos"), "train_annotations": str(data / "train.json"),
                 "val_annotations": str(data / "validation.json"), "labels": str(data / "labels.json"),
                 "size": 32, "scale_size": 32, "num_workers": 0},
        "train": {"work_dir": str(root / "work"), "num_threads": 1, "progress": False},
        "eval": {"batch_size": 4},
    }
    config_path = root / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(config))
    model = tiny_model(num_classes)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "gate" in name or "out_norm" in name or name.endswith("gamma"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    checkpoint = root / "tiny.pt"
    save_checkpoint({"model": model.state_dict(), "num_classes": num_classes, "config": {"model": model_section}},
                    checkpoint)
    video = sorted((data / "videos").iterdir())[0]
    return Path(config_path), checkpoint, video, root
