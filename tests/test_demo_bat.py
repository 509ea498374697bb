"""The demo's bat and bat3d contestants build on its small R2D-18 at the demo's 32 px clips (4x4 maps at
res3, 2x2 at res4, which s = 2 divides) and put their blocks where the other attention contestants do."""

import pytest
import torch

from videoattn.demo import DEFAULT_MODELS, DEMO_MODELS, DemoSettings
from videoattn.models import create_model


@pytest.mark.parametrize("key", ["bat", "bat3d"])
def test_demo_bat_models_build_and_run_at_the_demo_size(key):
    settings = DemoSettings.preset(quick=True)
    spec = DEMO_MODELS[key]
    assert (key in DEFAULT_MODELS) == (key == "bat3d")  # 3D BAT is BAT's model in the default run
    model = create_model(spec.preset, num_classes=4, num_frames=settings.num_frames, base_channels=8,
                         **spec.options)
    sites = [model.backbone.layer2[1].after_block, model.backbone.layer3[1].after_block]
    assert [s.registered_block_name for s in sites] == [key, key]
    with torch.no_grad():
        assert model(torch.randn(1, 3, settings.num_frames, settings.size, settings.size)).shape == (1, 4)
