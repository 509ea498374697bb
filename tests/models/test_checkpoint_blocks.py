"""``model.checkpoint_blocks``: activation checkpointing of inserted blocks changes nothing but memory."""

from __future__ import annotations

import copy

import torch

from videoattn import create_model
from videoattn.config import config_from_dict
from videoattn.engine.builders import build_model
from videoattn.models.recognizer import set_block_checkpointing

SMALL = {"base_channels": 8, "dropout": 0.5}  # head dropout draws after the blocks


def _open_gates(model: torch.nn.Module) -> None:
    """Zero-initialised output BNs make blocks the identity; open them so the blocks matter."""
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.abs().sum() == 0:
                parameter.fill_(0.5)


def _step(model: torch.nn.Module, video: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
    model.train()
    torch.manual_seed(3)  # the same dropout draws in both models
    loss = torch.nn.functional.cross_entropy(model(video), torch.tensor([0, 3]))
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    return loss.detach(), grads, buffers


def test_checkpointed_blocks_give_identical_loss_gradients_and_statistics():
    torch.manual_seed(0)
    plain = create_model("r2d50_gta", num_classes=5, num_frames=4, **SMALL)
    _open_gates(plain)
    checkpointed = copy.deepcopy(plain)
    names = set_block_checkpointing(checkpointed, True)
    assert len(names) == 5  # the five GTA blocks of the NL/GTA layout
    video = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    loss_a, grads_a, buffers_a = _step(plain, video)
    loss_b, grads_b, buffers_b = _step(checkpointed, video)
    assert torch.equal(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-5, atol=1e-7, msg=name)
    for name in buffers_a:  # running statistics updated once, not again by the recomputation
        torch.testing.assert_close(buffers_b[name], buffers_a[name], rtol=0, atol=0, msg=name)
    # state-dict keys untouched; evaluation runs the block's own forward
    assert checkpointed.state_dict().keys() == plain.state_dict().keys()
    checkpointed.eval()
    with torch.no_grad():
        torch.testing.assert_close(checkpointed(video), plain.eval()(video))
    set_block_checkpointing(checkpointed, False)
    assert all("forward" not in block.__dict__ for block in checkpointed.modules())


def test_config_key_turns_checkpointing_on():
    config = config_from_dict({"model": {"name": "r2d50_gta", "num_frames": 4, "checkpoint_blocks": True,
                                         "options": {"base_channels": 8}}})
    model = build_model(config.model, num_classes=3, pretrained=False)
    wrapped = [m for m in model.modules() if "forward" in m.__dict__]
    assert wrapped, "no block was checkpointed"
    video = torch.randn(2, 3, 4, 32, 32)
    model.train()
    model(video).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)

