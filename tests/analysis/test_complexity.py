import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videoattn.analysis.complexity import count_macs, profile_model
from videoattn.blocks._attention import PointwiseProjection, TokenBatchNorm
from videoattn.cli import main
from videoattn.errors import ConfigError

# (preset, classes, convention, params (M) and GFLOPs as printed in the paper, source).
# Tolerances: params 0.5%, MACs 1% (a printed 3-digit figure carries up to ~0.2% of rounding).
PAPER_ROWS = [
    ("r2d50", 174, "fvcore", 23.9, 32.7, "GTA Table 1 / Table 6: R2D-50 32.7 G, 23.9 M"),
    ("tsm50", 400, "thop", 24.33, 32.89, "RNL Table III: baseline 32.89 G, 24.33 M"),
    # BAT does not say which counter it used; without batch norm C2D-50 is 19.50 G, -0.5% of 19.6.
    ("c2d50", 400, "fvcore", 24.3, 19.6, "BAT Table 8: C2D 19.6 G, 24.3 M"),
]


@pytest.mark.parametrize("name,classes,convention,mparams,gmacs,source", PAPER_ROWS)
def test_profiler_reproduces_paper_rows(name, classes, convention, mparams, gmacs, source):
    result = profile_model(name, num_classes=classes, num_frames=8, size=224, convention=convention)
    assert result.mparams == pytest.approx(mparams, rel=0.005), source
    assert result.gmacs == pytest.approx(gmacs, rel=0.01), source


def test_bat_c2d_figure_comes_out_when_batch_norm_is_counted():
    result = profile_model("c2d50", num_classes=400, convention="thop")
    assert result.gmacs == pytest.approx(19.6, rel=0.005)


class _Fn(nn.Module):
    """A module running a plain function, for operators that are not modules."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _sdpa(x):
    return F.scaled_dot_product_attention(x, x, x)


# (kind, module factory, input shape, MACs under fvcore, MACs under thop), each counted by hand.
# Image (1, 3, 6, 6): 36 positions, 108 elements.
OPERATOR_KINDS = [
    # 4 x 36 outputs, each 3 * 3x3 multiply-adds; thop adds 1 per output for the bias
    ("conv_with_bias", lambda: nn.Conv2d(3, 4, 3, padding=1), (1, 3, 6, 6), 144 * 27, 144 * 27 + 144),
    ("conv_without_bias", lambda: nn.Conv2d(3, 4, 3, padding=1, bias=False), (1, 3, 6, 6), 144 * 27, 144 * 27),
    # groups=2: each output sees 4 / 2 input channels
    ("grouped_conv", lambda: nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False), (1, 4, 6, 6), 144 * 18, 144 * 18),
    # Conv3d subclass run as F.linear on channels-last tokens: 18 tokens x 3 -> 5 (+ bias for thop)
    ("pointwise_projection", lambda: PointwiseProjection(3, 5, kernel_size=1), (1, 2, 3, 3, 3), 270, 270 + 90),
    ("batch_norm", lambda: nn.BatchNorm2d(3), (1, 3, 6, 6), 0, 2 * 108),
    ("token_batch_norm", lambda: TokenBatchNorm(3), (12, 3), 0, 2 * 36),  # a BatchNorm3d subclass
    ("relu", nn.ReLU, (1, 3, 6, 6), 0, 0),
    ("max_pool", lambda: nn.MaxPool2d(2), (1, 3, 6, 6), 0, 0),
    # thop: (36 adds + 1 division) per output, 3 outputs
    ("adaptive_avg_pool", lambda: nn.AdaptiveAvgPool2d(1), (1, 3, 6, 6), 0, 37 * 3),
    ("avg_pool", lambda: nn.AvgPool2d(2), (1, 3, 6, 6), 0, 27),  # thop: 1 per output (27 outputs)
    ("linear_with_bias", lambda: nn.Linear(3, 5), (2, 3), 2 * 3 * 5, 2 * 3 * 5),  # bias never counted
    # (1, 3, 36) @ (1, 36, 3): 3 x 3 outputs of 36 multiply-adds; thop does not see it
    ("matmul", lambda: _Fn(lambda x: x.flatten(2) @ x.flatten(2).transpose(1, 2)), (1, 3, 6, 6), 324, 0),
    ("einsum", lambda: _Fn(lambda x: torch.einsum("nchw,ndhw->ncd", x, x)), (1, 3, 6, 6), 324, 0),
    ("softmax", lambda: nn.Softmax(dim=-1), (1, 3, 6, 6), 0, 0),
    ("elementwise", lambda: _Fn(lambda x: x * 2 + x), (1, 3, 6, 6), 0, 0),
    ("mean", lambda: _Fn(lambda x: x.mean(dim=1)), (1, 3, 6, 6), 0, 0),
    # 4-D SDPA (the CPU flash kernel on CPU): 2 heads x 16 queries x 16 keys x (8 + 8)
    ("sdpa_4d", lambda: _Fn(_sdpa), (1, 2, 16, 8), 2 * 16 * 16 * 16, 0),
    ("sdpa_3d", lambda: _Fn(_sdpa), (2, 16, 8), 2 * 16 * 16 * 16, 0),  # 3-D: the math kernel (bmm)
]


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("kind,factory,shape,fvcore,thop", OPERATOR_KINDS, ids=[k[0] for k in OPERATOR_KINDS])
def test_each_convention_counts_exactly_its_operators(kind, factory, shape, fvcore, thop, device):
    with torch.device(device):
        model, x = factory(), torch.randn(shape)
    assert count_macs(model, x, "fvcore") == fvcore, kind
    assert count_macs(model, x, "thop") == thop, kind


class _Tiny(nn.Module):
    """conv (+bias) -> BN -> ReLU -> max-pool, an attention-like product, adaptive pool -> linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = self.maxpool(self.relu(self.bn(self.conv(x))))  # (1, 4, 3, 3)
        tokens = y.flatten(2).transpose(1, 2)  # (1, 9, 4)
        weights = torch.softmax(tokens @ tokens.transpose(1, 2), dim=-1)  # (1, 9, 9)
        attended = (weights @ tokens).transpose(1, 2).reshape_as(y)
        return self.fc(self.pool(y + attended).flatten(1))


def test_conventions_total_a_small_model_by_hand():
    model, x = _Tiny(), torch.randn(1, 3, 6, 6)
    conv = 4 * 36 * 3 * 9  # 3888
    attention = 9 * 9 * 4 + 9 * 9 * 4  # scores and weighted sum: 648
    linear = 4 * 2
    assert count_macs(model, x, "fvcore") == conv + attention + linear
    bias, batch_norm, pool = 4 * 36, 2 * 4 * 36, (9 + 1) * 4
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
