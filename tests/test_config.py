"""Config loading: YAML + dotted overrides, type and value checks naming the key."""

from pathlib import Path

import pytest

from videoattn.config import (
    Config,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_override,
    parse_views,
    save_config,
)
from videoattn.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_and_overrides_parse_yaml_scalars():
    config = load_config(None, ["model.name=r2d18", "train.lr=0.02", "train.milestones=[10, 20]",
                                "model.pretrained=null", "train.deterministic=true",
                                "model.options.base_channels=16", "data.scale_size=[240, 320]"])
    assert config.model.name == "r2d18"
    assert config.train.lr == 0.02 and isinstance(config.train.lr, float)
    assert config.train.milestones == [10.0, 20.0]
    assert config.model.pretrained is None
    assert config.train.deterministic is True
    assert config.model.options == {"base_channels": 16}
    assert config.data.scale_size == [240, 320]


def test_int_is_accepted_for_float_but_not_bool_for_int():
    assert config_from_dict({"train": {"lr": 1}}).train.lr == 1.0
    with pytest.raises(ConfigError, match=r"'model.num_frames'.*True.*integer"):
        config_from_dict({"model": {"num_frames": True}})


@pytest.mark.parametrize("override, pattern", [
    ("train.lrr=0.1", r"unknown config key 'train.lrr'.*Did you mean 'train.lr'"),
    ("trian.lr=0.1", r"unknown config key 'trian'"),
    ("train.lr=fast", r"'train.lr'.*'fast'.*a number"),
    ("train.lr=-0.1", r"'train.lr'.*-0.1.*positive"),
    ("train.schedule=linear", r"'train.schedule'.*'linear'.*one of 'step', 'cosine'"),
    ("model.dropout=1.5", r"'model.dropout'.*1.5"),
    ("train.milestones=[40, 30]", r"'train.milestones'.*increasing"),
    ("train.batch_size=10", None),  # valid alone
    ("eval.views=10by3", r"'eval.views'.*CLIPSxCROPS"),
    ("data.scale_size=100", r"'data.scale_size'.*100"),
    ("train.warmup_epochs=80", r"'train.warmup_epochs'.*80"),
    ("model.options.dropout=0.1", r"'model.options.dropout'.*model.dropout"),
])
def test_bad_values_name_key_value_and_allowed(override, pattern):
    if pattern is None:
        load_config(None, [override])
        return
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, [override])


def test_batch_must_divide_into_accumulation_steps():
    with pytest.raises(ConfigError, match=r"'train.batch_size'.*accumulation_steps"):
        load_config(None, ["train.batch_size=10", "train.accumulation_steps=4"])


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("train.lr")
    with pytest.raises(ConfigError, match="dotted name"):
        parse_override("train..lr=1")
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"train": {"lr": 0.1}}, ["train.lr.x=1"])
    assert parse_override("data.root=/x=y") == ("data.root", "/x=y")


def test_yaml_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("train:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"wrong.yaml.*'train.epochs'.*'many'"):
        load_config(wrong)


def test_save_and_reload_roundtrip(tmp_path):
    config = load_config(None, ["model.name=tsm50", "train.schedule=cosine", "data.scale_size=[240, 320]"])
    save_config(config, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == config
    assert isinstance(again, Config)


def test_views():
    assert parse_views("10x3") == (10, 3)
    assert parse_views("1X1") == (1, 1)
    with pytest.raises(ConfigError):
        parse_views("0x3")
    with pytest.raises(ConfigError, match="spatial crops must be 1"):
        parse_views("2x2")


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    import videoattn

    config = load_config(path)
    assert config.train.epochs >= 1 and config.train.work_dir
    assert config.model.name in videoattn.list_models(), f"{path.name}: unknown preset {config.model.name!r}"
    # The model the config describes builds (on the meta device: no memory, no arithmetic).
    import torch

    with torch.device("meta"):
        model = videoattn.create_model(config.model.name, num_classes=config.model.num_classes or 10,
                                       num_frames=config.model.num_frames, dropout=config.model.dropout,
                                       **config.model.options)
    assert sum(p.numel() for p in model.parameters()) > 0
