import json

import pytest
import torch
from torch import nn

from videoattn.analysis.complexity import count_macs, profile_model
from videoattn.cli import main
from videoattn.errors import ConfigError

# (preset, classes, convention, paper params (M), paper GMACs, source). Params to 0.5%, MACs to 1%.
PAPER_ROWS = [
    ("r2d50", 174, "fvcore", 23.86, 32.70, "GTA Table 1"),
    ("tsm50", 400, "thop", 24.33, 32.89, "RNL Table III"),
    ("c2d50", 400, "fvcore", 24.33, 19.49, "BAT Table 8 (19.6 there: batch norm counted)"),
]


@pytest.mark.parametrize("name,classes,convention,mparams,gmacs,source", PAPER_ROWS)
def test_profiler_reproduces_paper_rows(name, classes, convention, mparams, gmacs, source):
    result = profile_model(name, num_classes=classes, num_frames=8, size=224, convention=convention)
    assert result.mparams == pytest.approx(mparams, rel=0.005), source
    assert result.gmacs == pytest.approx(gmacs, rel=0.01), source


def test_bat_c2d_figure_comes_out_when_batch_norm_is_counted():
    result = profile_model("c2d50", num_classes=400, convention="thop")
    assert result.gmacs == pytest.approx(19.6, rel=0.005)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)
        self.key = nn.Parameter(torch.randn(4, 5))

    def forward(self, x):
        y = self.bn(self.conv(x))  # (1, 4, 6, 6)
        attn = torch.einsum("nchw,cd->nhwd", y, self.key)  # a product between tensors
        return self.fc(self.pool(y).flatten(1)) + attn.sum()


def test_conventions_count_what_they_document():
    model, x = _Tiny(), torch.randn(1, 3, 6, 6)
    conv = 36 * 4 * 3 * 9
    einsum = 36 * 4 * 5
    linear = 4 * 2
    assert count_macs(model, x, "fvcore") == conv + einsum + linear
    bias, batch_norm, pool = 36 * 4, 2 * 36 * 4, (36 + 1) * 4
    assert count_macs(model, x, "thop") == conv + bias + batch_norm + pool + linear
    with pytest.raises(ConfigError, match="unknown counting convention 'flops'"):
        count_macs(model, x, "flops")


def test_thop_counts_inflated_convolutions():
    # thop adds batch norm on top of fvcore's convolutions: it can never count less.
    thop = profile_model("i3d50", convention="thop").gmacs
    fvcore = profile_model("i3d50", convention="fvcore").gmacs
    assert fvcore < thop < fvcore * 1.01


def test_profile_cli_json(capsys):
    assert main(["profile", "r2d50", "--num-classes", "174", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "r2d50" and result["convention"] == "fvcore"
    assert result["params"] == 23_864_558 and isinstance(result["params"], int)
    assert result["gmacs"] == pytest.approx(32.70, rel=1e-3)


def test_profile_cli_errors_are_one_line(capsys):
    assert main(["profile", "r2d5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown model 'r2d5'. Did you mean 'r2d50'" in err
    assert main(["profile", "r2d50", "--option", "num_group=8"]) == 2
    assert "has no option(s) num_group" in capsys.readouterr().err


def test_models_cli_lists_presets(capsys):
    assert main(["models", "r2d*"]) == 0
    out = capsys.readouterr().out
    assert "r2d50" in out and "resnet50" not in out
