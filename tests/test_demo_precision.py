"""The demo's ``--precision`` reaches the training config of every model (train and evaluation)."""

import dataclasses
from pathlib import Path

from videoattn.demo import DEMO_MODELS, DemoSettings, _config_for


def test_demo_precision_reaches_the_run_config():
    settings = DemoSettings.preset(quick=True)
    assert settings.precision == "fp32"
    files = {name: Path(f"/data/{name}") for name in ("root", "train", "validation", "labels")}
    config = _config_for(DEMO_MODELS["gta"], dataclasses.replace(settings, precision="bf16"), files,
                         Path("/tmp/run"), seed=0)
    assert config.train.precision == "bf16"
    assert _config_for(DEMO_MODELS["r2d"], settings, files, Path("/tmp/run"), seed=0).train.precision == "fp32"
