"""The demo's rnl and se_rnl contestants build on its small R2D-18 and put their blocks where it says."""

import pytest
import torch

from videoattn.demo import DEMO_MODELS
from videoattn.models import create_model


@pytest.mark.parametrize("key,blocks", [("rnl", ["rnl"]), ("se_rnl", ["se_add", "rnl"])])
def test_demo_rnl_models_build_and_run(key, blocks):
    spec = DEMO_MODELS[key]
    model = create_model(spec.preset, num_classes=4, num_frames=4, base_channels=8, **spec.options).eval()
    site = model.backbone.layer3[1].after_block
    names = [b.registered_block_name for b in site.blocks] if spec.block == "chain" else [site.registered_block_name]
    assert names == blocks
    with torch.no_grad():
        assert model(torch.randn(1, 3, 4, 64, 64)).shape == (1, 4)
