import pytest
import torch

from videoattn.backbones import ResNet, load_pretrained
from videoattn.errors import CheckpointError
from videoattn.models import build_recognizer, create_model


def test_local_torchvision_style_checkpoint_loads_into_video_model(tmp_path):
    image = create_model("resnet18", num_classes=1000, num_frames=None, base_channels=8)
    path = tmp_path / "resnet18.pth"
    # Wrapped and prefixed the way training scripts often save them.
    torch.save({"state_dict": {f"module.{k}": v for k, v in image.state_dict().items()}}, path)
    video = create_model("r2d18", num_classes=7, base_channels=8, pretrained=str(path))
    for key, value in image.state_dict().items():
        if not key.startswith("fc."):
            torch.testing.assert_close(video.backbone.state_dict()[key], value)
    assert video.fc.out_features == 7


def test_report_lists_ignored_head_missing_and_unexpected(tmp_path):
    image = create_model("resnet18", num_classes=1000, num_frames=None, base_channels=8)
    state = image.state_dict()
    state.pop("layer4.1.bn2.weight")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    report = load_pretrained(ResNet(18, "r2d", base_channels=8), path)
    assert report.ignored_head == ["fc.weight", "fc.bias"]
    assert report.missing == ["layer4.1.bn2.weight"]
    assert report.unexpected == ["extra.weight"]
    assert "missing (kept at initialisation): layer4.1.bn2.weight" in report.summary()


def test_wrong_width_names_the_key_and_shapes(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(create_model("resnet18", num_frames=None, base_channels=16).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"'conv1.weight' has shape \(16, 3, 7, 7\).*\(8, 3, 7, 7\)"):
        load_pretrained(ResNet(18, "r2d", base_channels=8), path)


def test_missing_file_non_resnet_and_pickled_code_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found.*never downloads"):
        load_pretrained(ResNet(18, "r2d", base_channels=8), tmp_path / "absent.pth")
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="shares no parameter name"):
        load_pretrained(ResNet(18, "r2d", base_channels=8), other)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "hook": _NotATensor()}, unsafe)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_pretrained(ResNet(18, "r2d", base_channels=8), unsafe)


class _NotATensor:
    """A pickled object: ``weights_only=True`` must refuse to load it."""


def _static_clip(frames=8):
    image = torch.randn(2, 3, 1, 48, 48)
    return image.expand(2, 3, frames, 48, 48).contiguous()


def test_inflated_i3d_matches_its_2d_source_on_a_static_clip(tmp_path):
    source = build_recognizer(depth=18, variant="c2d", num_classes=4, base_channels=8, dropout=0.0).eval()
    for module in source.modules():  # non-trivial BN statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "c2d.pth"
    torch.save(source.state_dict(), path)
    inflated = build_recognizer(depth=18, variant="i3d", num_classes=4, base_channels=8, dropout=0.0,
                                temporal_padding="replicate").eval()
    report = load_pretrained(inflated.backbone, path)  # "backbone." prefixes are stripped
    inflated.fc.load_state_dict(source.fc.state_dict())
    # stem + conv1 of the inflated basic blocks: res2 both, res3 and res4 block 0, res5 block 1.
    assert len(report.inflated) == 1 + 2 + 1 + 1 + 1
    clip = _static_clip()
    with torch.no_grad():
        torch.testing.assert_close(inflated.forward_frame_logits(clip), source.forward_frame_logits(clip),
                                   rtol=1e-4, atol=1e-5)
        # With the papers' zero temporal padding the boundary frames differ; the interior of a single
        # inflated layer still matches (checked on the stem, whose receptive field is 5 frames).
        zeros = build_recognizer(depth=18, variant="i3d", num_classes=4, base_channels=8).eval()
        load_pretrained(zeros.backbone, path)
        frames = clip.transpose(1, 2).reshape(-1, 3, 48, 48)
        stem_3d, _ = zeros.backbone.conv1.forward_frames(frames, 8)
        stem_2d = source.backbone.conv1(frames)
        stem_3d, stem_2d = stem_3d.view(2, 8, -1), stem_2d.view(2, 8, -1)
        torch.testing.assert_close(stem_3d[:, 2:6], stem_2d[:, 2:6], rtol=1e-4, atol=1e-5)
        assert not torch.allclose(stem_3d[:, 0], stem_2d[:, 0], atol=1e-3)
