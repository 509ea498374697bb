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


# --- --set on the command line (issue 30) -------------------------------------------------------------


@pytest.mark.parametrize("argv, overrides, inputs", [
    (["predict", "--config", "C", "--set", "eval.views=1x1", "video.webm"], ["eval.views=1x1"], ["video.webm"]),
    (["predict", "--config", "C", "--set", "eval.views=1x1", "train.lr=0.1", "a.webm", "b.webm"],
     ["eval.views=1x1", "train.lr=0.1"], ["a.webm", "b.webm"]),
    (["predict", "v.webm", "--set", "a.b=1", "--set", "c.d=[1, 2]", "--config", "C"], ["a.b=1", "c.d=[1, 2]"],
     ["v.webm"]),
    (["predict", "v.webm", "--set=a.b=1", "c.d=2", "--config", "C"], ["a.b=1", "c.d=2"], ["v.webm"]),
])
def test_set_takes_key_values_and_leaves_positionals(argv, overrides, inputs):
    from videoattn.cli import build_parser

    args = build_parser().parse_args(argv)
    assert args.overrides == overrides and args.inputs == inputs


def test_set_keeps_several_values_on_train_and_visualize():
    from videoattn.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train", "-c", "x.yaml", "--set", "train.lr=0.02", "data.root=/x"]).overrides == \
        ["train.lr=0.02", "data.root=/x"]
    args = parser.parse_args(["visualize", "attention", "--set", "model.name=r2d18", "--video", "v.webm"])
    assert args.overrides == ["model.name=r2d18"] and args.kind == "attention" and args.video == "v.webm"


def test_positional_after_set_reaches_the_command(tmp_path, capsys):
    from videoattn.cli import main

    missing = tmp_path / "missing.yaml"
    assert main(["predict", "--config", str(missing), "--set", "eval.views=1x1", "video.webm"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "required" not in err


def test_set_errors_say_they_came_from_set(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("train:\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config, ["train.lrr=0.1"])
    assert str(caught.value).startswith("--set train.lrr=0.1: unknown config key 'train.lrr'")
    assert str(config) not in str(caught.value)
    with pytest.raises(ConfigError, match=r"^--set 'train.milestones=\[40, 30\]': config key 'train.milestones'"):
        load_config(config, ["train.milestones=[40, 30]"])
    with pytest.raises(ConfigError, match=r"^--set 'train.lr=x y': config key 'train.lr'"):
        load_config(None, ["train.lr=x y"])


def test_file_errors_still_name_the_file_when_set_is_given(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("train:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"^\S*tiny.yaml: config key 'train.epochs'"):
        load_config(config, ["train.lr=0.1"])
    # A value of the file that only the --set values make wrong: both named.
    config.write_text("train:\n  batch_size: 10\n")
    with pytest.raises(ConfigError,
                       match=r"tiny.yaml with --set train.accumulation_steps=4: config key 'train.batch_size'"):
        load_config(config, ["train.accumulation_steps=4"])


def test_set_syntax_errors_name_set():
    with pytest.raises(ConfigError, match=r"^--set 'train.lr': expected KEY=VALUE"):
        parse_override("train.lr")
