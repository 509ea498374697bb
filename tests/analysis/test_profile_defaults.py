"""``videoattn profile`` counts each preset at its paper row's input (frames, size, convention) unless told
otherwise, says which input it used, and names both conventions' figures when they differ (issue 30)."""

from __future__ import annotations

import fnmatch
import json

import pytest
import torch

from videoattn.cli import main
from videoattn.models import get_preset, list_models

# Each family's paper input, as its paper / docs/model_zoo.md states it (pattern, frames, size, convention).
# First match wins; None: no paper row (CPU presets), profile's plain default applies.
EXPECTED = [
    ("r2d18*", None),
    ("slowfast50*", (64, 256, "fvcore")),   # GTA Table 1: 64 fast frames at 256 px (docs/model_zoo.md)
    ("slowfast101*", (32, 256, "fvcore")),  # GTA Table 2: 32 fast frames, K400 test size 256
    ("tsm50_gta", (8, 224, "fvcore")),      # GTA Table 3
    ("tsm50*", (8, 224, "thop")),           # RNL Table III
    ("resnet*", (None, 224, "thop")),       # BAT image tables (thop)
    ("r2d50*", (8, 224, "fvcore")),         # GTA Tables 1, 5, 6
    ("c2d50*", (8, 224, "fvcore")),         # BAT Table 8
    ("i3d50*", (8, 224, "fvcore")),
    ("tsn50_rsa", (8, 224, "fvcore")),      # RSA supplementary
    ("bninception*", (8, 224, "fvcore")),   # GSM / SA-GSM: 8 segments at 224 (no FLOPs printed)
]


def _expected(name):
    for pattern, value in EXPECTED:
        if fnmatch.fnmatch(name, pattern):
            return value
    raise AssertionError(f"preset {name!r} has no expected paper input in this test: add its family")


@pytest.mark.parametrize("name", list_models())
def test_every_preset_carries_its_paper_input(name):
    expected = _expected(name)
    paper = get_preset(name).paper_input
    if expected is None:
        assert paper is None
    else:
        assert paper == {"frames": expected[0], "size": expected[1], "convention": expected[2]}


def test_every_preset_with_a_paper_reference_has_a_paper_input():
    missing = [n for n in list_models() if get_preset(n).reference and get_preset(n).paper_input is None]
    assert missing == []


def test_profile_slowfast50_gta_counts_the_paper_row_input(capsys):
    assert main(["profile", "slowfast50_gta", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["input_shape"] == [3, 64, 256, 256] and result["convention"] == "fvcore"
    assert result["input_source"] == {"frames": "paper", "size": "paper", "convention": "paper"}
    # GTA Table 1: 169.9 G; our GTA is its usual ~1.3% high (docs/model_zoo.md), 8x224 would be 16.3 G.
    assert result["gmacs"] == pytest.approx(169.9, rel=0.015)


def test_profile_tsm50_rnl_defaults_to_thop_and_names_both_conventions(capsys):
    assert main(["profile", "tsm50_rnl"]) == 0
    text = capsys.readouterr().out
    first = text.splitlines()[0]
    assert "input 3x8x224x224 (the paper row's input)" in first and "convention thop (the paper's)" in first
    assert "41.68 G thop" in text and "89.30 G under the fvcore convention" in text


def test_profile_flags_override_the_paper_input_and_say_so(capsys):
    assert main(["profile", "slowfast50", "--frames", "8", "--size", "224", "--convention", "thop", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["input_shape"] == [3, 8, 224, 224] and result["convention"] == "thop"
    assert result["input_source"] == {"frames": "given", "size": "given", "convention": "given"}
    assert main(["profile", "slowfast50", "--frames", "8"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "input 3x8x256x256 (--frames 8; the paper row's input is 64x256x256)" in first
    assert "convention fvcore (the paper's)" in first


def test_profile_without_paper_row_says_default(capsys):
    assert main(["profile", "r2d18", "--option", "base_channels=8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["input_shape"] == [3, 8, 224, 224] and result["paper_input"] is None
    assert result["input_source"]["frames"] == "default"


@pytest.mark.parametrize("device, message", [
    ("cuda", "--device: got 'cuda' but this PyTorch is a CPU-only build; use --device cpu"),
    ("cuda:1", "--device: got 'cuda:1' but this PyTorch is a CPU-only build"),
    ("gpu", "--device: got 'gpu'; expected a torch device such as cpu, cuda or cuda:1"),
])
def test_profile_speed_on_a_missing_cuda_device_is_one_line(capsys, monkeypatch, device, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    assert main(["profile", "r2d18", "--option", "base_channels=8", "--frames", "2", "--size", "32",
                 "--speed", "--device", device]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_profile_speed_fp16_on_cpu_names_the_flag(capsys):
    assert main(["profile", "r2d18", "--option", "base_channels=8", "--frames", "2", "--size", "32",
                 "--speed", "--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--precision: got 'fp16'" in err and "train.precision" not in err
