"""GPU tests reuse the engine tests' tiny synthetic dataset and config builders.

Every test here that needs a GPU is marked ``cuda`` (skipped where ``torch.cuda.is_available()`` is
false, see tests/conftest.py); the CPU twins beside them exercise the same engine logic on the CPU.
"""

import pytest
import torch

from tests.engine.conftest import make_config, make_config_file, synthetic_root, tiny_config_dict  # noqa: F401


@pytest.fixture
def no_tf32(monkeypatch):
    """Full float32 products on CUDA (cuDNN convolutions default to TF32), so that CUDA and CPU
    results can be compared with float32 tolerances."""
    if torch.cuda.is_available():
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


class RecordingModel(torch.nn.Module):
    """Wraps the engine's model: keeps its initial state (on the CPU, before the trainer moves it),
    records the logits' dtype, and makes the gradient of call ``inf_gradient_at`` infinite while
    the loss itself stays finite (what an fp16 overflow in backward looks like)."""

    def __init__(self, inner: torch.nn.Module, inf_gradient_at: int | None = None):
        super().__init__()
        self.inner = inner
        self.initial = {k: v.detach().clone() for k, v in inner.state_dict().items()}
        self.inf_gradient_at = inf_gradient_at
        self.calls = 0
        self.dtypes: list[torch.dtype] = []

    def forward(self, video):
        self.calls += 1
        logits = self.inner(video)
        self.dtypes.append(logits.dtype)
        return _InfGradient.apply(logits) if self.calls == self.inf_gradient_at else logits


class _InfGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


@pytest.fixture
def recording_model(monkeypatch):
    """``recording_model(inf_gradient_at=None)`` -> a list that receives the RecordingModel the
    trainer builds next."""
    import videoattn.engine.trainer as trainer_module

    def install(inf_gradient_at=None):
        built = []
        real_build = trainer_module.build_model

        def build(*args, **kwargs):
            built.append(RecordingModel(real_build(*args, **kwargs), inf_gradient_at))
            return built[-1]

        monkeypatch.setattr(trainer_module, "build_model", build)
        return built

    return install


def unwrapped(state: dict) -> dict:
    """A RecordingModel state dict with the wrapper's ``inner.`` prefix removed."""
    return {key.removeprefix("inner."): value for key, value in state.items()}
