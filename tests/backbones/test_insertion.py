import pytest
import torch
from torch import nn

from videoattn.backbones import InsertionPlan, ResNet
from videoattn.blocks import register_block
from videoattn.blocks.registry import _BLOCKS
from videoattn.errors import ConfigError
from videoattn.models import build_recognizer


def _chosen(spec, position="after_block"):
    """(stage, index) of the sites a plan selects in a ResNet-50 (3, 4, 6, 3 blocks)."""
    backbone = ResNet(50, "r2d", base_channels=8)
    return [(s.stage, s.index) for s in InsertionPlan.parse(spec, position).select(backbone, 8)]


def test_named_and_written_plans():
    five = [("res3", 1), ("res3", 3), ("res4", 1), ("res4", 3), ("res4", 5)]
    assert _chosen("five_block") == five
    assert _chosen("res3: 1,3; res4: 1,3,5") == five
    assert _chosen({"res3": [1, 3], "res4": "1,3,5"}) == five
    assert _chosen("res2-res5: all") == _chosen("all") and len(_chosen("all")) == 16
    assert _chosen("res4 - res5: all") == [("res4", i) for i in range(6)] + [("res5", i) for i in range(3)]
    assert _chosen("none") == []
    assert str(InsertionPlan.parse("res3: 1,3; res4: 1,3,5")) == "res3: 1,3; res4: 1,3,5"


@pytest.mark.parametrize("spec,message", [
    ("res3 1,3", "should look like"),
    ("res3: a", "not 'all' or a list"),
    ("res3: 1; res4: -1", "non-negative block indices"),
    ({"res3!": [1]}, "names stage 'res3!'"),
])
def test_bad_plan_syntax_is_refused_when_parsed(spec, message):
    with pytest.raises(ConfigError, match=message):
        InsertionPlan.parse(spec)


@pytest.mark.parametrize("spec,position,message", [
    ("res6: 1", "after_block", "stage 'res6', which is not a stage of this backbone; its stages are res2, res3"),
    ({"layer2": [1]}, "after_block", "names stage 'layer2'"),
    ("res5-res3: all", "after_block", "runs backwards"),
    ("seven_block", "after_block", "not a named plan of this backbone; named plans: none, all, five_block"),
    ("res3: 4", "after_block", "res3 has only 4 residual blocks"),
    ("res3: 1", "inside_conv", "no insertion site kind 'inside_conv'; its kinds are after_block, before_conv1"),
])
def test_plans_are_checked_against_the_backbone(spec, position, message):
    with pytest.raises(ConfigError, match=message):
        _chosen(spec, position)


class _Recorder(nn.Module):
    """Identity that records the (C, T) it was built for and the shapes it sees."""

    identity_at_init = True
    seen: list = []

    def __init__(self, channels, num_frames=None):
        super().__init__()
        self.channels, self.num_frames = channels, num_frames

    def forward(self, x):
        _Recorder.seen.append((self.channels, self.num_frames, tuple(x.shape)))
        return x


@pytest.fixture
def recorder():
    register_block("_test_recorder", needs_num_frames=True)(_Recorder)
    _Recorder.seen = []
    yield _Recorder
    del _BLOCKS["_test_recorder"]


@pytest.mark.parametrize("variant,res3_frames", [("r2d", 8), ("c2d", 4)])
def test_five_block_plan_places_blocks_with_stage_channels_and_frames(recorder, variant, res3_frames):
    model = build_recognizer(depth=50, variant=variant, num_classes=3, base_channels=8, dropout=0.0,
                             blocks=[{"name": "_test_recorder", "plan": "five_block"}]).eval()
    filled = [name for name, m in model.named_modules() if isinstance(m, _Recorder)]
    assert filled == [f"backbone.layer2.{i}.after_block" for i in (1, 3)] + [
        f"backbone.layer3.{i}.after_block" for i in (1, 3, 5)]
    plain = build_recognizer(depth=50, variant=variant, num_classes=3, base_channels=8, dropout=0.0).eval()
    plain.load_state_dict(model.state_dict())
    clip = torch.randn(2, 3, 8, 64, 64)
    torch.testing.assert_close(model(clip), plain(clip))  # identity blocks change nothing
    res3 = [s for s in recorder.seen if s[0] == 8 * 2 * 4]
    res4 = [s for s in recorder.seen if s[0] == 8 * 4 * 4]
    assert len(res3) == 2 and len(res4) == 3
    assert res3[0] == (64, res3_frames, (2, 64, res3_frames, 8, 8))
    assert res4[0] == (128, res3_frames, (2, 128, res3_frames, 4, 4))


def test_before_conv1_position_gets_block_input_channels(recorder):
    build_recognizer(depth=50, variant="r2d", num_classes=3, base_channels=8, num_frames=2,
                     blocks=[{"name": "_test_recorder", "plan": "res2: 0", "position": "before_conv1"}]
                     )(torch.randn(1, 3, 2, 32, 32))
    assert recorder.seen == [(8, 2, (1, 8, 2, 8, 8))]  # res2 block 0 receives the stem's 8 channels


def test_plan_errors_at_build_time():
    with pytest.raises(ConfigError, match="res3 has only 2 residual blocks"):
        build_recognizer(depth=18, num_classes=3, base_channels=8, blocks=[{"name": "identity", "plan": "res3: 2"}])
    with pytest.raises(ConfigError, match="two insertions target site res2.0.before_conv1 .*'chain' block"):
        build_recognizer(depth=18, variant="tsm", num_classes=3, base_channels=8,
                         blocks=[{"name": "identity", "plan": "res2: 0", "position": "before_conv1"}])
    with pytest.raises(ConfigError, match="two insertions target site res3.0.replace_conv2"):
        build_recognizer(depth=18, num_classes=3, base_channels=8, blocks=[
            {"name": "conv", "plan": "res3: 0", "position": "replace_conv2"},
            {"name": "conv", "plan": "res3: 0", "position": "replace_conv2"}])
    with pytest.raises(ConfigError, match="may have 'plan', 'position', 'options'"):
        build_recognizer(depth=18, num_classes=3, base_channels=8, blocks=[{"name": "identity", "where": "x"}])
