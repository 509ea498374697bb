import pytest
import torch

from videoattn.backbones import DEPTHS, ResNet
from videoattn.backbones.resnet import I3D_INFLATE
from videoattn.errors import ShapeError
from videoattn.models import build_recognizer, create_model

# Published parameter counts of torchvision's ImageNet ResNets (1000 classes).
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}


def expected_torchvision_keys(depth: int) -> list[str]:
    """torchvision's ResNet state-dict keys, written from the architecture (not imported)."""
    bottleneck = depth >= 50
    layers = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}[depth]
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = ["conv1.weight"] + [f"bn1.{k}" for k in bn]
    for stage, num_blocks in enumerate(layers, start=1):
        for block in range(num_blocks):
            prefix = f"layer{stage}.{block}"
            for conv in range(1, 4 if bottleneck else 3):
                keys.append(f"{prefix}.conv{conv}.weight")
                keys += [f"{prefix}.bn{conv}.{k}" for k in bn]
            if block == 0 and (stage > 1 or bottleneck):
                keys.append(f"{prefix}.downsample.0.weight")
                keys += [f"{prefix}.downsample.1.{k}" for k in bn]
    return keys + ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_image_resnet_keys_and_params_match_torchvision(depth):
    with torch.device("meta"):
        model = create_model(f"resnet{depth}", num_frames=None)
    assert list(model.state_dict()) == expected_torchvision_keys(depth)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS[depth]
    state = model.state_dict()
    assert tuple(state["conv1.weight"].shape) == (64, 3, 7, 7)
    assert tuple(state["fc.weight"].shape) == (1000, 512 if depth < 50 else 2048)


def test_video_trunk_keys_are_torchvision_keys():
    video = build_recognizer(depth=50, variant="tsm", num_classes=10, base_channels=16)
    image = create_model("resnet50", num_classes=10, num_frames=None, base_channels=16)
    # TSM's shift has no parameters: the video model's backbone keys equal the image model's.
    backbone_keys = [k[len("backbone."):] for k in video.state_dict() if k.startswith("backbone.")]
    assert backbone_keys + ["fc.weight", "fc.bias"] == list(image.state_dict())


@pytest.mark.parametrize("variant,frames_out", [("r2d", 8), ("tsm", 8), ("c2d", 4), ("i3d", 4)])
def test_video_variants_shapes(variant, frames_out):
    backbone = ResNet(18, variant, base_channels=8)
    features, frames = backbone(torch.randn(2, 3, 8, 64, 64))
    assert frames == frames_out
    assert features.shape == (2 * frames_out, 64, 2, 2)
    assert backbone.stage_num_frames(8)["res3"] == frames_out


def test_odd_frame_count_c2d_drops_last_frame_and_one_frame_is_refused():
    backbone = ResNet(18, "c2d", base_channels=8)
    _, frames = backbone(torch.randn(1, 3, 5, 32, 32))
    assert frames == 2
    with pytest.raises(ShapeError, match="needs >= 2 frames"):
        backbone(torch.randn(1, 3, 1, 32, 32))


def test_r2d_is_the_image_network_applied_per_frame():
    image = create_model("resnet18", num_classes=5, num_frames=None, base_channels=8).eval()
    video = build_recognizer(depth=18, variant="r2d", num_classes=5, base_channels=8, dropout=0.0).eval()
    video.backbone.load_state_dict({k: v for k, v in image.state_dict().items() if not k.startswith("fc.")})
    video.fc.load_state_dict(image.fc.state_dict())
    clip = torch.randn(2, 3, 4, 48, 48)
    per_frame = torch.stack([image(clip[:, :, t]) for t in range(4)], dim=1)
    torch.testing.assert_close(video.forward_frame_logits(clip), per_frame, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(video(clip), per_frame.mean(1), rtol=1e-4, atol=1e-5)


def test_c2d_temporal_pool_is_max_over_frame_pairs():
    backbone = ResNet(18, "c2d", base_channels=8).eval()
    clip = torch.randn(1, 3, 4, 32, 32)
    # Reference: per-frame res2 features, then max over (0,1) and (2,3).
    x = clip.transpose(1, 2).reshape(4, 3, 32, 32)
    x = backbone.maxpool(torch.relu(backbone.bn1(backbone.conv1(x))))
    for block in backbone.layer1:
        x = block(x, 4)
    pooled = torch.stack([torch.maximum(x[0], x[1]), torch.maximum(x[2], x[3])])
    for _, blocks in backbone.stages()[1:]:
        for block in blocks:
            pooled = block(pooled, 2)
    features, frames = backbone(clip)
    assert frames == 2
    torch.testing.assert_close(features, pooled)


def test_video_model_rejects_images_with_a_clear_message():
    model = create_model("r2d18", num_classes=3, base_channels=8)
    with pytest.raises(ShapeError, match=r"\(N, 3, T, H, W\).*unsqueeze"):
        model(torch.randn(2, 3, 32, 32))
    with pytest.raises(ShapeError, match=r"got shape \(2, 1, 4, 32, 32\)"):
        model(torch.randn(2, 1, 4, 32, 32))
    image = create_model("resnet18", num_classes=3, num_frames=None, base_channels=8)
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)"):
        image(torch.randn(2, 3, 4, 32, 32))


def test_i3d_inflates_the_documented_blocks():
    backbone = ResNet(50, "i3d", base_channels=8)
    assert tuple(backbone.conv1.weight.shape[2:]) == (5, 7, 7)
    for stage, blocks in backbone.stages():
        for index, block in enumerate(blocks):
            expected = 3 if I3D_INFLATE[stage](index, len(blocks)) else None
            kernel = block.conv1.weight.shape[2] if block.conv1.weight.dim() == 5 else None
            assert kernel == expected, (stage, index)
    # NL paper / mmaction2 I3D-R50 pattern: 3 + 2 + 3 + 1 inflated blocks.
    assert sum(b.conv1.weight.dim() == 5 for b in backbone.residual_blocks()) == 9
