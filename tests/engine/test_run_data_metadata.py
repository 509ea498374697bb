"""The run files record what the data pipeline resolved (flip policy, decoder version)."""

import json

from videoattn.engine import train


def test_metadata_records_the_resolved_flip_policy(make_config, tmp_path):
    # The tiny SSv2-layout config sets no data.flip: "auto" must resolve to skip_left_right.
    config = make_config(tmp_path / "run", train={"max_steps": 1, "epochs": 1, "val_interval": 0})
    assert config.data.flip == "auto"
    train(config)
    metadata = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert metadata["train_data"]["flip"] == "skip_left_right"
    assert metadata["train_data"]["flip_setting"] == "auto"
    assert metadata["train_data"]["decoder_version"].startswith("PyAV")
