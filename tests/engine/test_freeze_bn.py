"""Frozen BatchNorm (``train.freeze_bn``) freezes the backbone's BN layers, never an inserted block's.

The attention blocks start as the identity because their output BN is zero-initialised; freezing that
BN would keep gamma/beta at 0 for good, so the block would stay the identity and its projections would
never receive a gradient.
"""

import pytest
import torch
from torch import nn

import videoattn
from videoattn.blocks import is_registered_block, registered_blocks
from videoattn.engine.builders import apply_bn_mode, frozen_bn_layers


def _small(name: str) -> nn.Module:
    options = {"block_options": {"num_groups": 4}} if name == "r2d18_gta" else {}
    torch.manual_seed(0)
    return videoattn.create_model(name, num_classes=5, base_channels=16, num_frames=4, pretrained=None,
                                  **options)


def _backbone_bns(model: nn.Module) -> list[nn.Module]:
    """BN layers in model order, those inside inserted blocks left out."""
    inside = {id(m) for _, block in registered_blocks(model) for m in block.modules()}
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in inside]


def _bn_state(layer: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in (layer.weight, layer.bias, layer.running_mean, layer.running_var)]


@pytest.mark.parametrize("name", ["r2d18_gta", "r2d18_nl"])
@pytest.mark.parametrize("mode", ["none", "partial", "all"])
def test_inserted_blocks_train_under_every_freeze_bn_mode(name, mode):
    model = _small(name)
    blocks = registered_blocks(model)
    assert blocks and all(is_registered_block(block) for _, block in blocks)
    frozen = frozen_bn_layers(model, mode)
    backbone = _backbone_bns(model)
    inside = {id(m) for _, block in blocks for m in block.modules()}
    assert not any(id(layer) in inside for layer in frozen)
    expected = {"none": [], "partial": backbone[1:], "all": backbone}[mode]
    assert [id(layer) for layer in frozen] == [id(layer) for layer in expected]

    apply_bn_mode(model, frozen)
    block_before = {f"{b}.{k}": v.detach().clone() for b, block in blocks
                    for k, v in block.named_parameters()}
    bn_before = [_bn_state(layer) for layer in backbone]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    video = torch.randn(2, 3, 4, 64, 64, generator=generator)
    labels = torch.tensor([0, 1])
    model.train()
    apply_bn_mode(model, frozen)
    block_parameters = {f"{b}.{k}": v for b, block in blocks for k, v in block.named_parameters()}
    got_gradient = set()
    for _ in range(4):
        loss = nn.functional.cross_entropy(model(video), labels)
        optimizer.zero_grad()
        loss.backward()
        got_gradient |= {key for key, v in block_parameters.items() if v.grad is not None and v.grad.any()}
        optimizer.step()

    # Early in training the projections' gradients are tiny (~1e-12: the output norm's gamma has only
    # just left 0), so an SGD update may round away in float32; what matters is that every block
    # parameter is trained (gets a gradient) and the block's output norms move off zero.
    never = sorted(set(block_parameters) - got_gradient)
    assert not never, f"block parameters that never got a gradient under freeze_bn={mode}: {never}"
    norms = [f"{b}.{k}" for b, block in blocks for k, m in block.named_modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms
    for norm in norms:
        for suffix in ("weight", "bias"):
            key = f"{norm}.{suffix}"
            assert not torch.equal(block_parameters[key].detach(), block_before[key]), key
    for index, layer in enumerate(backbone):
        moved = any(not torch.equal(a, b) for a, b in zip(bn_before[index], _bn_state(layer)))
        assert moved == (layer not in frozen), (index, mode)

    seen = []
    hooks = [block.register_forward_hook(lambda _m, args, out: seen.append((args[0], out)))
             for _, block in blocks]
    model.eval()
    with torch.no_grad():
        model(video)
    for hook in hooks:
        hook.remove()
    assert len(seen) == len(blocks)
    for block_input, block_output in seen:
        assert not torch.allclose(block_input, block_output), "the block is still the identity"


@pytest.mark.parametrize("mode", ["partial", "all"])
def test_units_trained_from_scratch_keep_their_batch_norms_training(mode):
    """A from-scratch unit (RSA-style replace_conv2 insertion) has no pretrained statistics, and its
    last BN starts at gamma 0: frozen, it would stay the identity for good."""
    model = videoattn.create_model("r2d18", num_classes=5, base_channels=8, num_frames=2, blocks=[
        {"name": "conv", "plan": "res3: 1", "position": "replace_conv2", "from_scratch": True}])
    unit = model.backbone.layer2[1]
    frozen = {id(m) for m in frozen_bn_layers(model, mode)}
    assert not any(id(bn) in frozen for bn in (unit.bn1, unit.bn2))
    assert id(model.backbone.layer2[0].bn1) in frozen and id(model.backbone.layer3[1].bn2) in frozen
