"""Released BAT checkpoints: files written here in the authors' key names and shapes load into our presets."""

from __future__ import annotations

import pytest
import torch

import videoattn
from videoattn.errors import CheckpointError
from videoattn.models import load_weights


def _release_block(prefix: str, channels: int, k: int, s: int, tk: int, ts: int, video: bool) -> dict:
    """One BATBlock of the release: conv1 / batransform.{conv1, conv_p, conv_q, conv_t, conv2} / conv2."""
    inner = channels // 2
    one = (1, 1, 1) if video else (1, 1)
    gen = torch.Generator().manual_seed(len(prefix))
    state = {}

    def conv_bn(name, cin, cout):
        state[f"{prefix}{name}.0.weight"] = torch.randn((cout, cin, *one), generator=gen)
        state[f"{prefix}{name}.0.bias"] = torch.randn(cout, generator=gen)
        for stat in ("weight", "bias", "running_mean"):
            state[f"{prefix}{name}.1.{stat}"] = torch.randn(cout, generator=gen)
        state[f"{prefix}{name}.1.running_var"] = torch.rand(cout, generator=gen) + 0.5
        state[f"{prefix}{name}.1.num_batches_tracked"] = torch.tensor(3)

    conv_bn("conv1", channels, inner)
    conv_bn("batransform.conv1", inner, k)
    p_kernel, q_kernel = ((1, s, 1), (1, 1, s)) if video else ((s, 1), (1, s))
    state[f"{prefix}batransform.conv_p.weight"] = torch.randn((s * s * k, k, *p_kernel), generator=gen)
    state[f"{prefix}batransform.conv_p.bias"] = torch.randn(s * s * k, generator=gen)
    state[f"{prefix}batransform.conv_q.weight"] = torch.randn((s * s * k, k, *q_kernel), generator=gen)
    state[f"{prefix}batransform.conv_q.bias"] = torch.randn(s * s * k, generator=gen)
    if tk:
        state[f"{prefix}batransform.conv_t.weight"] = torch.randn((ts * ts * tk, k, ts, 1, 1), generator=gen)
        state[f"{prefix}batransform.conv_t.bias"] = torch.randn(ts * ts * tk, generator=gen)
    conv_bn("batransform.conv2", inner, inner)
    conv_bn("conv2", inner, channels)
    return state


def _release_file(tmp_path, trunk, sites, *, video, k, s, tk=0, ts=1):
    """Trunk keys are torchvision's (5-D kernels in the video release), blocks at layer<S>.nl<i>."""
    state = {}
    for key, value in trunk.state_dict().items():
        if key.startswith("fc."):
            continue
        key = key.removeprefix("backbone.")
        if video and value.dim() == 4:
            value = value.unsqueeze(2)
        state[key] = value.clone() + 0.5 if value.is_floating_point() else value.clone()
    for layer, index, channels in sites:
        state.update(_release_block(f"{layer}.nl{index}.", channels, k, s, tk, ts, video))
    fc = trunk.fc.weight
    state["fc.weight"] = torch.randn(fc.shape + ((1, 1, 1) if video else ()))
    state["fc.bias"] = torch.randn(fc.shape[0])
    path = tmp_path / "release.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return path, state


def test_c2d50_bat3d_loads_the_video_release(tmp_path):
    options = {"s": 2, "normalisation": "softmax"}
    base = videoattn.create_model("c2d50", num_classes=5, base_channels=16, num_frames=4)
    sites = [("layer2", 1, 128), ("layer2", 3, 128), ("layer3", 1, 256), ("layer3", 3, 256), ("layer3", 5, 256)]
    path, state = _release_file(tmp_path, base, sites, video=True, k=8, s=2, tk=4, ts=2)
    model = videoattn.create_model("c2d50_bat3d", num_classes=5, base_channels=16, num_frames=4,
                                   block_options=options)
    report = load_weights(model, path, "bat-video", strict=True)
    assert not report.missing and not report.unexpected
    ours = model.state_dict()
    torch.testing.assert_close(ours["backbone.layer3.5.after_block.row_conv.weight"],
                               state["layer3.nl5.batransform.conv_p.weight"].view(32, 8, 2))
    torch.testing.assert_close(ours["backbone.layer2.1.after_block.time_conv.weight"],
                               state["layer2.nl1.batransform.conv_t.weight"].view(16, 8, 2))
    torch.testing.assert_close(ours["backbone.conv1.weight"], state["conv1.weight"][:, :, 0])
    torch.testing.assert_close(ours["fc.weight"], state["fc.weight"].view(5, -1))
    assert model.eval()(torch.randn(1, 3, 4, 32, 64)).shape == (1, 5)  # random weights: values overflow


def test_resnet50_bat_loads_the_image_release_and_refuses_other_normalisation(tmp_path):
    base = videoattn.create_model("resnet50", num_classes=5, base_channels=16)
    sites = [("layer2", 1, 128), ("layer2", 3, 128), ("layer3", 1, 256), ("layer3", 3, 256), ("layer3", 5, 256)]
    path, state = _release_file(tmp_path, base, sites, video=False, k=4, s=2)
    with pytest.raises(CheckpointError, match="sigmoid"):
        videoattn.create_model("resnet50_bat", num_classes=5, base_channels=16, block_options={"s": 2},
                               weights=str(path), weights_layout="bat-image")
    model = videoattn.create_model("resnet50_bat", num_classes=5, base_channels=16,
                                   block_options={"s": 2, "normalisation": "sigmoid"})
    report = load_weights(model, path, "bat-image", strict=True)
    assert not report.missing
    torch.testing.assert_close(model.state_dict()["layer2.3.after_block.mix.1.running_var"],
                               state["layer2.nl3.batransform.conv2.1.running_var"])


def test_c2d50_bat_starts_from_image_bat_weights(tmp_path):
    """Table 7 "pre-trained": an image BAT model's blocks initialise the video model's (same k)."""
    image = videoattn.create_model("resnet50_bat", num_classes=5, base_channels=16, block_options={"s": 2})
    torch.save(image.state_dict(), tmp_path / "image.pth")
    video = videoattn.create_model("c2d50_bat", num_classes=7, base_channels=16, num_frames=4,
                                   block_options={"s": 2, "k": 4}, pretrained=str(tmp_path / "image.pth"))
    torch.testing.assert_close(video.state_dict()["backbone.layer3.5.after_block.row_conv.weight"],
                               image.state_dict()["layer3.5.after_block.row_conv.weight"])
    from videoattn.backbones import load_pretrained

    report = load_pretrained(video.backbone, tmp_path / "image.pth")
    assert len(report.loaded_blocks) == sum(1 for k in image.state_dict() if ".after_block." in k)
    assert not report.new_blocks and "tensors of inserted blocks loaded" in report.summary()
