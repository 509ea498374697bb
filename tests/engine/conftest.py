"""Fixtures for engine tests: a tiny synthetic dataset on disk and a CPU-sized config for it."""

from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """16 synthetic SSv2-layout videos (8 classes), 8 frames of 32 px: 8 train / 8 val... as split."""
    from videoattn.data import generate_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(root, num_videos=24, frames=8, size=32, seed=0)
    return root


def tiny_config_dict(synthetic_root: Path, work_dir: Path, **sections) -> dict:
    """A CPU-sized recipe: TSM-ResNet-18 with stem width 8, 4 frames of 32 px, deterministic, on the CPU.

    ``train.device`` is pinned to ``cpu``: these tests check CPU behaviour (bit-identical resume,
    float32 tolerances measured on CPU), and ``auto`` would pick a GPU where there is one. Tests of
    the device choice set ``auto`` themselves; tests/cuda/ runs the engine on a GPU.
    """
    config = {
        "model": {"name": "r2d18", "num_frames": 4, "dropout": 0.5,
                  "options": {"variant": "tsm", "base_channels": 8}},
        "data": {"format": "ssv2", "root": str(synthetic_root / "videos"),
                 "train_annotations": str(synthetic_root / "train.json"),
                 "val_annotations": str(synthetic_root / "validation.json"),
                 "labels": str(synthetic_root / "labels.json"), "size": 32, "scale_size": 32,
                 "num_workers": 0},
        "train": {"work_dir": str(work_dir), "epochs": 2, "batch_size": 4, "lr": 0.01,
                  "schedule": "cosine", "warmup_epochs": 0.5, "log_interval": 1, "seed": 1,
                  "num_threads": 1, "progress": False, "deterministic": True, "device": "cpu"},
        "eval": {"batch_size": 8},
    }
    for section, values in sections.items():
        config[section].update(values)
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def make_config(synthetic_root):
    """``make_config(work_dir, train={...}, model={...})`` -> a validated tiny Config."""
    from videoattn.config import config_from_dict

    def make(work_dir, **sections):
        return config_from_dict(tiny_config_dict(synthetic_root, work_dir, **sections))

    return make


@pytest.fixture
def make_config_file(synthetic_root):
    """``make_config_file(path, work_dir, **sections)`` -> path of a YAML tiny config."""

    def make(path, work_dir, **sections):
        return write_config(Path(path), tiny_config_dict(synthetic_root, work_dir, **sections))

    return make
