import pytest
import torch

import videoattn
from videoattn.errors import ConfigError, UnknownNameError


def test_create_model_and_list_models():
    assert {"r2d18", "r2d50", "c2d50", "tsm50", "i3d50", "resnet18", "resnet50"} <= set(videoattn.list_models())
    assert [n for n in videoattn.list_models("resnet*") if "_" not in n] == [
        "resnet101", "resnet152", "resnet18", "resnet34", "resnet50"]
    model = videoattn.create_model("tsm50", num_classes=11, num_frames=4, base_channels=8)
    logits = model(torch.randn(2, 3, 4, 32, 32))
    assert logits.shape == (2, 11)
    assert model.dropout.p == 0.5


def test_unknown_names_and_options():
    with pytest.raises(UnknownNameError, match="Did you mean 'tsm50'"):
        videoattn.create_model("tsm5")
    with pytest.raises(ConfigError, match="has no option\\(s\\) widht"):
        videoattn.create_model("r2d18", widht=3)
    with pytest.raises(ConfigError, match="num_classes must be a positive int"):
        videoattn.create_model("r2d18", num_classes=0, base_channels=8)
    with pytest.raises(ConfigError, match="dropout must be in"):
        videoattn.create_model("r2d18", dropout=1.0, base_channels=8)


def test_training_step_reaches_every_parameter():
    model = videoattn.create_model("i3d50", num_classes=3, num_frames=4, base_channels=8)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 4, 32, 32)), torch.tensor([0, 2]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_head_averages_frame_logits():
    model = videoattn.create_model("r2d18", num_classes=4, num_frames=3, base_channels=8).eval()
    clip = torch.randn(2, 3, 3, 32, 32)
    frame_logits = model.forward_frame_logits(clip)
    assert frame_logits.shape == (2, 3, 4)
    torch.testing.assert_close(model(clip), frame_logits.mean(1))


def test_image_classifier_takes_the_config_dropout_without_new_keys():
    # The engine passes model.dropout to every preset; an image classifier must accept it too.
    plain = videoattn.create_model("resnet18", num_classes=3, base_channels=8)
    dropped = videoattn.create_model("resnet18", num_classes=3, base_channels=8, dropout=0.5)
    assert list(dropped.state_dict()) == list(plain.state_dict())  # still torchvision's keys
    dropped.eval()
    assert dropped(torch.randn(2, 3, 32, 32)).shape == (2, 3)
