"""Memory layout and host memory on CUDA: ``model.channels_last`` and pinned-memory loading."""

import pytest
import torch

from videoattn.engine import train
from videoattn.engine.builders import build_dataset_for, build_loader_for, build_model
from videoattn.engine.checkpoint import load_checkpoint
from videoattn.engine.sampler import ResumableSampler


@pytest.mark.cuda
def test_channels_last_model_on_cuda_computes_the_contiguous_function(make_config, tmp_path, no_tf32):
    plain_config = make_config(tmp_path / "a")
    last_config = make_config(tmp_path / "b", model={"channels_last": True})
    torch.manual_seed(0)
    plain = build_model(plain_config.model, 8, pretrained=False).cuda().eval()
    torch.manual_seed(0)
    last = build_model(last_config.model, 8, pretrained=False).cuda().eval()
    kernels = [m.weight for m in last.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]
    assert kernels and all(w.is_cuda and w.is_contiguous(memory_format=torch.channels_last) for w in kernels)
    assert not all(w.is_contiguous() for w in kernels)  # really NHWC, not only trivially both
    clip = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0)).cuda()
    with torch.no_grad():
        torch.testing.assert_close(last(clip), plain(clip), rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
def test_channels_last_training_on_cuda(make_config, tmp_path):
    config = make_config(tmp_path / "cl", train={"device": "cuda", "max_steps": 3, "val_interval": 0},
                         model={"channels_last": True})
    result = train(config)
    assert result.global_step == 3
    state = load_checkpoint(tmp_path / "cl" / "last.pt")["model"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def _first_batch(make_config, tmp_path, pin_memory):
    config = make_config(tmp_path / "loader")
    dataset = build_dataset_for(config, "train")
    sampler = ResumableSampler(len(dataset), shuffle=False, seed=0, num_replicas=1, rank=0, drop_last=True)
    loader = build_loader_for(dataset, 2, sampler, 1, pin_memory, seed=0, drop_last=True)
    return loader, next(iter(loader))


@pytest.mark.cuda
def test_loader_pins_batches_by_default_on_cuda(make_config, tmp_path):
    loader, batch = _first_batch(make_config, tmp_path, pin_memory=None)  # data.pin_memory: null = auto
    assert loader.pin_memory and batch["video"].is_pinned()
    on_gpu = batch["video"].to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    assert torch.equal(on_gpu.cpu(), batch["video"])
    loader, batch = _first_batch(make_config, tmp_path, pin_memory=False)
    assert not loader.pin_memory and not batch["video"].is_pinned()


@pytest.mark.cuda
def test_training_with_pinned_memory_and_workers_on_cuda(make_config, tmp_path):
    config = make_config(tmp_path / "pin", train={"device": "cuda", "max_steps": 2, "val_interval": 0},
                         data={"pin_memory": True, "num_workers": 1})
    assert train(config).global_step == 2


def test_loader_does_not_pin_without_cuda(make_config, tmp_path, monkeypatch):
    """CPU twin: ``data.pin_memory: null`` follows ``torch.cuda.is_available()``."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loader, batch = _first_batch(make_config, tmp_path, pin_memory=None)
    assert loader.pin_memory is False and batch["video"].shape[0] == 2
