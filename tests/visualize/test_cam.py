"""Grad-CAM explains a backbone stage output (the last one larger than 1x1), checked against a float64
Grad-CAM written here from the definition on the module the test picks itself."""

import pytest
import torch

from videoattn import create_model
from videoattn.visualize.cam import grad_cam


def _reference(model, video, paths, class_index):
    """``ReLU(sum_c alpha_c(t) A_c(t))``, ``alpha_c(t) = mean_{h,w} dy/dA_c(t)`` per pathway, summed on
    the longest pathway's time axis, normalised by its maximum (loops, float64)."""
    outputs = {}
    handles = [model.backbone.get_submodule(p).register_forward_hook(
        lambda _m, _a, out, p=p: outputs.__setitem__(p, out)) for p in paths]
    try:
        logits = model(video)
    finally:
        for handle in handles:
            handle.remove()
    maps = [outputs[p] for p in paths]
    grads = torch.autograd.grad(logits[0, class_index], maps)
    frames = max(m.shape[0] for m in maps)
    _, _, height, width = maps[0].shape
    total = torch.zeros(frames, height, width, dtype=torch.float64)
    for features, gradient in zip(maps, grads):
        for t in range(frames):
            source = t * features.shape[0] // frames
            for c in range(features.shape[1]):
                alpha = gradient[source, c].sum() / (height * width)
                total[t] += alpha * features[source, c]
    cam = total.clamp_min(0)
    return (cam / cam.max().clamp_min(1e-12)).detach().numpy()


@pytest.mark.parametrize("name, options, frames, size, expected", [
    ("r2d18", {}, 4, 32, ["layer3.1"]),  # res5 is 1x1 at 32 px: res4's output
    ("r2d18", {}, 4, 64, ["layer4.1"]),  # res5 2x2: the last stage
    ("tsm50_gta", {}, 8, 32, ["layer3.5"]),  # bottleneck: not layer4.0.bn1 (2x2 inside res5)
    ("i3d50", {}, 4, 32, ["layer3.5"]),
    ("bninception", {}, 4, 32, ["inception_3c"]),  # inception4/5 are 1x1 at 32 px
    ("slowfast50", {}, 8, 32, ["fast.layer3.5", "slow.layer3.5"]),  # both pathways
])
def test_grad_cam_explains_the_last_stage_output_larger_than_1x1(name, options, frames, size, expected):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, num_frames=frames, base_channels=8, **options).double().eval()
    video = torch.randn(1, 3, frames, size, size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    cam, chosen, logits, layer = grad_cam(model, video)
    assert layer.endswith(f"({' + '.join(expected)})"), layer
    assert chosen == int(logits.argmax())
    reference = _reference(model, video, expected, chosen)
    assert cam.shape == reference.shape
    assert cam.max() == pytest.approx(1.0)
    assert abs(cam - reference).max() < 1e-10
    other = (chosen + 1) % 3
    cam_other, _, _, _ = grad_cam(model, video, other)
    assert abs(cam_other - _reference(model, video, expected, other)).max() < 1e-10


def test_grad_cam_refuses_a_clip_with_no_map_larger_than_1x1():
    from videoattn.errors import ConfigError

    model = create_model("r2d18", num_classes=3, num_frames=2, base_channels=8).eval()
    with pytest.raises(ConfigError, match=r"no backbone stage output is larger than 1x1 for this 4x4 clip"):
        grad_cam(model, torch.randn(1, 3, 2, 4, 4))
