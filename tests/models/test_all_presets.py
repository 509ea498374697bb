"""Every registered preset is built, run forward and backward, and saved and reloaded.

One parametrized test over ``videoattn.list_models()`` (like timm's ``tests/test_models.py``), so
presets added by any family are picked up without touching this file. Each model is built narrow
(``base_channels=16``), for 4 frames and 3 classes, and run on a 2 x 3 x 4 x 32 x 64 clip
(2 x 3 x 32 x 32 images for the ImageNet classifiers; batch 2 so that train-mode batch norm has more
than one value per channel at the 1 x 1 res5 of a 32-pixel image). The clip is 64 wide because at
32 x 32 res4 is 2 x 2 and spatial attention, which max-pools its keys 1x2x2, would have ONE key per
frame: its softmax is then constant and its query/key weights get exactly zero gradient. A preset
that cannot be made small with these options gets its own entry in ``SMALL_OPTIONS``.

Gradients are checked twice:

1. on the model as built: every trainable parameter gets a gradient (not None: it is in the graph)
   and the gradient is finite. Inserted attention blocks are the identity at init (their output BN
   gamma and beta are 0), so most of their gradients are exactly 0 here and this alone would not
   show a block whose parameters stopped influencing the output;
2. after opening those gates (every parameter that is all zeros, i.e. zero-initialised BN gammas
   and betas, biases and any zero-initialised gate, is set to 0.5): every trainable parameter now
   gets a finite gradient that is not all zeros.

The ``state_dict`` round trip uses that opened model after its train-mode passes (so the blocks
contribute to the output and the BN running statistics differ from a fresh model's) and requires the
freshly built model to differ before loading and to match exactly after.
"""

from __future__ import annotations

import io

import pytest
import torch

from videoattn.models import build_image_classifier, create_model, get_preset, list_models

NUM_CLASSES, FRAMES, SIZE, BATCH = 3, 4, 32, 2
VIDEO_WIDTH = 64  # res4 is 2 x 4, so attention pooled 1x2x2 still has two keys per frame
SMALL = {"base_channels": 16}

# Extra construction options for presets the generic small settings do not fit (none so far).
SMALL_OPTIONS: dict[str, dict] = {
    # SlowFast: alpha 2 so the slow pathway (where the blocks are) sees 2 of the 4 frames
    **{name: {"alpha": 2, "base_channels": 8}
       for name in ("slowfast50", "slowfast50_nl", "slowfast50_dnl", "slowfast50_gta",
                    "slowfast101", "slowfast101_nl", "slowfast101_gta")},
    # BAT: s = 7 needs 7k x 7k maps; the small clip's res3/res4 maps are 4x8 / 2x4 (images 4x4 / 2x2)
    **{name: {"block_options": {"s": 2}} for name in (
        "c2d50_bat", "c2d50_bat3d", "i3d50_bat", "resnet18_bat", "resnet50_bat", "resnet101_bat", "resnet152_bat")},
    # stochastic depth off: a dropped branch would leave its parameters without gradient in a pass;
    # a 3x3x3 neighbourhood keeps the CPU time small (stochastic depth: tests/models/test_rsa_presets.py)
    "tsn50_rsa": {"stochastic_depth": 0.0, "block_options": {"kernel_size": 3}},
    # GloRe is cubic in its input (states x projection x projection, as released): with every gate
    # forced to 0.5 and running statistics from two passes, five chained blocks overflow float32 in
    # eval mode (x^(3^5)); one block (res4 5) still runs every GloRe parameter through the model
    "r2d50_glore": {"blocks": ({"name": "glore", "plan": {"res4": [5]}},)},
    "r2d50_glore_decoupled": {"blocks": ({"name": "decoupled", "plan": {"res4": [5]},
                                          "options": {"spatial": "glore", "temporal": "glore"}},)},
}

# Value the zero-initialised parameters are opened to in step 2 (0.5 unless listed). GSM's gate sums
# 27*C/2 taps of ReLU(BN(x)) >= 0 (plus the opened trunk biases): at 0.5 per weight tanh saturates to
# exactly 1 in float32 and the gate gets no gradient at all, so the GSM presets open to 0.01.
OPEN_VALUES: dict[str, float] = {"bninception_gsm": 0.01, "bninception_sagsm": 0.01}


def _is_image_model(name: str) -> bool:
    return get_preset(name).builder is build_image_classifier


def _build(name: str, seed: int) -> torch.nn.Module:
    accepted = set(get_preset(name).accepted_arguments())
    options = {key: value for key, value in SMALL.items() if key in accepted}
    options.update(SMALL_OPTIONS.get(name, {}))
    torch.manual_seed(seed)
    return create_model(name, num_classes=NUM_CLASSES, num_frames=None if _is_image_model(name) else FRAMES,
                        **options)


def _input(name: str) -> torch.Tensor:
    shape = (BATCH, 3, SIZE, SIZE) if _is_image_model(name) else (BATCH, 3, FRAMES, SIZE, VIDEO_WIDTH)
    return torch.randn(shape, generator=torch.Generator().manual_seed(1))


def _backward(model: torch.nn.Module, x: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    out = model(x)
    assert out.shape == (BATCH, NUM_CLASSES) and torch.isfinite(out).all()
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    (out * weights).sum().backward()


def _trainable(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    assert params
    return params


@pytest.mark.parametrize("name", list_models())
def test_preset_builds_trains_and_round_trips(name):
    model = _build(name, seed=0).train()
    x = _input(name)

    # 1. as built: a gradient reaches every trainable parameter
    _backward(model, x)
    for param_name, param in _trainable(model):
        assert param.grad is not None, f"{name}: no gradient for {param_name}"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient for {param_name}"

    # 2. gates opened: every trainable parameter influences the loss
    with torch.no_grad():
        opened = [p for _, p in _trainable(model) if not p.any()]
        for param in opened:
            param.fill_(OPEN_VALUES.get(name, 0.5))
    _backward(model, x)
    for param_name, param in _trainable(model):
        assert param.grad is not None and torch.isfinite(param.grad).all(), f"{name}: {param_name}"
        assert param.grad.any(), f"{name}: gradient of {param_name} is all zeros with every gate open"

    # 3. state_dict round trip into a freshly built model
    model.eval()
    with torch.no_grad():
        expected = model(x)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = _build(name, seed=1).eval()
    with torch.no_grad():
        assert not torch.equal(fresh(x), expected), f"{name}: a fresh model already gives the same output"
    fresh.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), expected, rtol=0, atol=0)


def test_every_preset_is_covered():
    """The parametrization above is taken from the registry, not from a hand-written list."""
    from videoattn.models.presets import _PRESETS

    assert sorted(_PRESETS) == list_models()
