"""The common block contract, checked for EVERY registered block (new families are picked up
automatically through ``list_blocks()``).

Conventions a block may declare as class attributes (documented in docs/blocks.md):

* ``identity_at_init`` (default False): a freshly built block returns its input unchanged.
* ``supports_export`` (default True): ``torch.export.export`` can capture it.

Per-block construction options for this tiny test shape go in ``CONTRACT_OPTIONS``.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from videoattn.blocks import create, get_block_spec, list_blocks
from videoattn.errors import ShapeError

BATCH, CHANNELS, FRAMES, HEIGHT, WIDTH = 2, 32, 4, 6, 6

# Options some blocks need at this small shape (none so far: C=32 gives GTA a C/4 = 8-wide value
# that divides into its default 8 groups).
CONTRACT_OPTIONS: dict[str, dict] = {
    # composites: the folded paths (NL within each frame, NL along time at each position)
    "decoupled": {"spatial": "nl", "temporal": {"name": "nl", "options": {"sub_sample": False}}},
    "chain": {"blocks": ["sa", {"name": "ta", "options": {"inner_channels": 4}}]},
    "bat": {"s": 3, "k": 2},
    "bat3d": {"s": 3, "k": 2, "tk": 2},
}

# Blocks that are pure pass-throughs and therefore do not validate their input.
NO_INPUT_CHECK = {"identity"}


def build(name: str) -> nn.Module:
    spec = get_block_spec(name)
    return create(name, CHANNELS, num_frames=FRAMES if spec.needs_num_frames else None,
                  **CONTRACT_OPTIONS.get(name, {}))


def clip(dtype=torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(7)
    return torch.randn(BATCH, CHANNELS, FRAMES, HEIGHT, WIDTH, generator=gen).to(dtype)


def perturb_(block: nn.Module) -> nn.Module:
    """Move parameters off their init (zero BN gammas included) so no path is trivially dead."""
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for param in block.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=gen, dtype=param.dtype))
        for module in block.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.weight is not None:
                module.weight.fill_(1.0)
    return block


@pytest.fixture(params=list_blocks())
def name(request):
    return request.param


def test_shape_finite_and_gradient_to_every_parameter(name):
    block = perturb_(build(name)).train()
    x = clip().requires_grad_(True)
    out = block(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    weights = torch.linspace(-1.0, 1.0, out.numel()).view_as(out)
    (out * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for param_name, param in block.named_parameters():
        assert param.grad is not None, f"{name}: no gradient reaches {param_name}"
        assert param.grad.abs().sum() > 0, f"{name}: zero gradient for {param_name}"


def test_float64_agrees_with_float32(name):
    block32 = perturb_(build(name)).eval()
    block64 = copy.deepcopy(block32).double()
    with torch.no_grad():
        out32 = block32(clip())
        out64 = block64(clip(torch.float64))
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-4)


def test_identity_at_init_where_promised(name):
    block = build(name)
    if not getattr(block, "identity_at_init", False):
        pytest.skip(f"{name} does not promise identity at init")
    x = clip()
    with torch.no_grad():
        torch.testing.assert_close(block.train()(x), x)
        torch.testing.assert_close(block.eval()(x), x)


def test_bf16_autocast_runs(name):
    block = perturb_(build(name)).train()
    x = clip().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    assert out.shape == (BATCH, CHANNELS, FRAMES, HEIGHT, WIDTH)
    assert torch.isfinite(out.float()).all()
    out.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_accepts_non_contiguous_input(name):
    block = perturb_(build(name)).eval()
    trunk = torch.randn(BATCH * FRAMES, CHANNELS, HEIGHT, WIDTH)  # the backbone's (N*T, C, H, W) trunk
    view = trunk.view(BATCH, FRAMES, CHANNELS, HEIGHT, WIDTH).permute(0, 2, 1, 3, 4)
    with torch.no_grad():
        torch.testing.assert_close(block(view), block(view.contiguous()))


def test_rejects_wrong_rank_and_channels(name):
    if name in NO_INPUT_CHECK:
        pytest.skip(f"{name} is a pass-through")
    block = build(name)
    with pytest.raises(ShapeError):
        block(torch.randn(BATCH, CHANNELS, HEIGHT, WIDTH))
    with pytest.raises(ShapeError, match=str(CHANNELS)):
        block(torch.randn(BATCH, CHANNELS + 8, FRAMES, HEIGHT, WIDTH))


def test_torch_export(name):
    block = perturb_(build(name)).eval()
    if not getattr(block, "supports_export", True):
        pytest.skip(f"{name} declares supports_export = False")
    x = clip()
    exported = torch.export.export(block, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), block(x))


# Public nn.Module classes of block modules that are parts of registered blocks, not blocks themselves.
BLOCK_PARTS = {
    "videoattn.blocks.gta.GlobalTemporalAttention",  # GTA's temporal module inside the registered 'gta'
    "videoattn.blocks.gsm.FrameSelfAttention",  # SA-GSM's per-frame SAGAN attention inside 'sa_gsm'
}


def test_every_block_module_is_discovered_and_registers_its_blocks():
    """Blocks are found by walking the package, not by a hand-kept import list, and a block module
    cannot define a block class it does not register: every public ``nn.Module`` class of a block
    module is registered, a base class of registered ones (``BATBase``) or a listed part."""
    import importlib
    import inspect
    from pathlib import Path

    import videoattn.blocks as package
    from videoattn.blocks import block_modules

    files = sorted(p.stem for p in Path(package.__file__).parent.glob("*.py")
                   if not p.stem.startswith("_") and p.stem != "registry")
    assert [m.rsplit(".", 1)[1] for m in block_modules()] == files
    factories = [get_block_spec(name).factory for name in list_blocks()]
    for module_name in block_modules():
        module = importlib.import_module(module_name)
        registered = [f for f in factories if f.__module__ == module_name]
        assert registered, f"{module_name} registers no block"
        for attr, cls in vars(module).items():
            if attr.startswith("_") or not inspect.isclass(cls) or not issubclass(cls, nn.Module) \
                    or cls.__module__ != module_name:
                continue
            known = (cls in registered or any(inspect.isclass(f) and issubclass(f, cls) for f in factories)
                     or f"{module_name}.{attr}" in BLOCK_PARTS)
            assert known, f"{module_name}.{attr} is an nn.Module that is not registered with @register_block"
