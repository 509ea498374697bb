"""Config files with a ``base`` (``videoattn.config_files``) and ``videoattn config show``.

``configs_resolved.json`` holds every file of ``configs/`` as it read before the recipes became a base
per paper plus deltas (the flat YAML mappings, recorded from the files at that commit): each file must
still resolve to exactly the same validated config.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from videoattn.cli import main
from videoattn.config import config_from_dict, load_config
from videoattn.config_files import read_config_file
from videoattn.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BEFORE = json.loads((Path(__file__).with_name("configs_resolved.json")).read_text())


def test_every_recorded_config_is_still_there():
    assert sorted(BEFORE) == sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml"))


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_configs_resolve_to_the_same_values_as_before(name):
    assert load_config(CONFIGS / name).to_dict() == config_from_dict(BEFORE[name]).to_dict()


def test_paper_recipes_are_a_base_plus_deltas():
    """Within each paper's folder, every recipe but one names a base; each still cites its source."""
    for folder in sorted(p for p in CONFIGS.iterdir() if p.is_dir()):
        files = sorted(folder.glob("*.yaml"))
        without_base = [f.name for f in files if "base" not in yaml.safe_load(f.read_text())]
        assert len(without_base) == 1, (folder.name, without_base)
        for file in files:
            assert file.read_text().startswith("# "), file


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_merges_key_by_key_relative_to_the_file(tmp_path):
    _write(tmp_path / "papers" / "base.yaml", "model:\n  name: r2d50\n  num_frames: 8\n  options:\n"
           "    block_options: {num_groups: 4}\n    base_channels: 16\ntrain:\n  lr: 0.01\n  milestones: [3, 4]\n")
    _write(tmp_path / "papers" / "mid.yaml", "base: base.yaml\nmodel:\n  options:\n    block_options: {k: 2}\n")
    leaf = _write(tmp_path / "runs" / "leaf.yaml", "base: ../papers/mid.yaml\nmodel:\n  num_frames: 16\n"
                  "train:\n  milestones: [5]\n")
    assert read_config_file(leaf) == {
        "model": {"name": "r2d50", "num_frames": 16,
                  "options": {"block_options": {"num_groups": 4, "k": 2}, "base_channels": 16}},
        "train": {"lr": 0.01, "milestones": [5]},  # lists are replaced, not concatenated
    }
    assert load_config(leaf, ["train.lr=0.1"]).train.lr == 0.1


def test_base_cycles_and_missing_bases_are_one_line(tmp_path):
    a = _write(tmp_path / "a.yaml", "base: b.yaml\ntrain: {lr: 0.1}\n")
    _write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError) as error:
        load_config(a)
    message = str(error.value)
    assert "cycle" in message and "a.yaml -> " in message and "b.yaml -> " in message and "\n" not in message
    selfish = _write(tmp_path / "self.yaml", "base: self.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(selfish)
    orphan = _write(tmp_path / "orphan.yaml", "base: ../nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"orphan.yaml'?: base '../nowhere.yaml' does not exist"):
        load_config(orphan)
    bad = _write(tmp_path / "bad.yaml", "base: [a.yaml]\n")
    with pytest.raises(ConfigError, match="key 'base' must be the path of another config file"):
        load_config(bad)


def test_config_show_prints_the_resolved_config(capsys):
    path = CONFIGS / "rsa" / "tsn50_rsa_ssv1_16f.yaml"
    assert main(["config", "show", str(path), "--set", "train.lr=0.5"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["model"]["num_frames"] == 16 and shown["model"]["name"] == "tsn50_rsa"  # delta and base
    assert shown["train"]["lr"] == 0.5 and shown["train"]["nesterov"] is True
    assert "base" not in shown
    assert main(["config", "show", str(path), "--set", "train.lr=fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.lr" in err and len(err.splitlines()) == 1
