import pytest
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


def _float64_step(model, clips, labels):
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same dropout mask for both layouts
    loss = torch.nn.functional.cross_entropy(model(clips), labels)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ["r2d18_gta", "r2d18_nl", "r2d18_tape"])
def test_config_key_model_channels_last_gives_the_same_training_step(name):
    """``model.channels_last: true`` (build_model): NHWC trunk weights, identical loss, gradients and
    SGD update in float64 -- the inserted blocks take the channels-last activations without a copy."""
    from types import SimpleNamespace

    from videoattn.config import config_from_dict
    from videoattn.engine.builders import build_model
    from videoattn.engine.trainer import build_optimizer

    models = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        config = config_from_dict({"model": {"name": name, "num_frames": 4, "channels_last": channels_last,
                                             "options": {"base_channels": 16}}})
        models.append(build_model(config.model, num_classes=3, pretrained=False).double())
    plain, nhwc = models
    assert nhwc.backbone.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.backbone.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    for block in nhwc.modules():  # give the zero-initialised blocks something to do
        for bn_name in ("out_norm", "pixel_out_norm", "region_out_norm"):
            if hasattr(block, bn_name):
                torch.nn.init.constant_(getattr(block, bn_name).weight, 0.5)
    plain.load_state_dict(nhwc.state_dict())
    clips = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    labels = torch.tensor([0, 2])
    loss_plain, grads_plain = _float64_step(plain, clips, labels)
    loss_nhwc, grads_nhwc = _float64_step(nhwc, clips, labels)
    torch.testing.assert_close(loss_nhwc, loss_plain, rtol=1e-12, atol=1e-12)
    assert grads_nhwc.keys() == grads_plain.keys()
    for key, grad in grads_plain.items():
        torch.testing.assert_close(grads_nhwc[key], grad, rtol=1e-9, atol=1e-12, msg=key)
    settings = SimpleNamespace(lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=False)
    for model in (plain, nhwc):
        build_optimizer(model.parameters(), settings).step()
    for (key, a), b in zip(plain.state_dict().items(), nhwc.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12, msg=key)
