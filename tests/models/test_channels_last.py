import torch

import videoattn
from videoattn.models.recognizer import to_channels_last


def test_channels_last_recognizer_is_the_same_function_and_trains():
    torch.manual_seed(0)
    model = videoattn.create_model("r2d18_gta", num_classes=5, num_frames=4, base_channels=16).eval()
    clips = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        expected = model(clips)
    keys = list(model.state_dict())
    assert to_channels_last(model) is model
    assert model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert list(model.state_dict()) == keys
    with torch.no_grad():
        torch.testing.assert_close(model(clips), expected, rtol=1e-4, atol=1e-5)
    model.train()
    model(clips).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
