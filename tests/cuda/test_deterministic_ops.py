"""Which of the operators our blocks use have no deterministic CUDA kernel (docs/reliability.md).

Under ``torch.use_deterministic_algorithms(True)`` (``train.deterministic: true``) an operator
without a deterministic implementation raises a RuntimeError when it runs. The lists below are the
ones docs/reliability.md names: on CUDA the first set raises in backward (so a model using it cannot
train in deterministic mode there), the second set has a deterministic path; on the CPU every one
of them runs.
"""

import pytest
import torch
import torch.nn.functional as F


def _video(device):
    return torch.randn(2, 4, 4, 6, 6, device=device, requires_grad=True)


def _image(device):
    return torch.randn(2, 4, 6, 6, device=device, requires_grad=True)


#: (name as in the docs, where in videoattn, function of the device -> a tensor whose sum is differentiated)
NO_DETERMINISTIC_CUDA_BACKWARD = {
    "avg_pool3d (RNL aggregation='avg')": lambda d: F.avg_pool3d(_video(d), 3, stride=1, padding=1),
    "avg_pool3d (RSA stride 2)": lambda d: F.avg_pool3d(_video(d), (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
    "adaptive_avg_pool2d to s x s (BAT matrix='downsampling')": lambda d: F.adaptive_avg_pool2d(_image(d), (3, 3)),
    "interpolate bilinear (BAT downsampling)": lambda d: F.interpolate(_image(d), size=(12, 12), mode="bilinear",
                                                                       align_corners=False),
    "interpolate linear (TAPE/GTA temporal_resize)": lambda d: F.interpolate(
        torch.randn(1, 4, 8, device=d, requires_grad=True), size=(6,), mode="linear", align_corners=True),
}

DETERMINISTIC = {
    "adaptive_avg_pool2d to 1 (recognizer head)": lambda d: F.adaptive_avg_pool2d(_image(d), 1),
    "max_pool3d (RNL aggregation='max')": lambda d: F.max_pool3d(_video(d), 3, stride=1, padding=1),
    "pad replicate (I3D time padding)": lambda d: F.pad(_video(d), (0, 0, 0, 0, 1, 1), mode="replicate"),
    "index_select (GSM channel order)": lambda d: _video(d).index_select(1, torch.tensor([1, 0, 3, 2], device=d)),
    "cross_entropy on (N, classes) logits (the loss)": lambda d: F.cross_entropy(
        torch.randn(4, 8, device=d, requires_grad=True), torch.tensor([0, 1, 2, 3], device=d)),
}


@pytest.fixture
def deterministic_mode():
    saved = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(saved)


@pytest.mark.cuda
@pytest.mark.parametrize("name", list(NO_DETERMINISTIC_CUDA_BACKWARD))
def test_op_without_deterministic_cuda_backward_raises(deterministic_mode, name, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    out = NO_DETERMINISTIC_CUDA_BACKWARD[name]("cuda")
    with pytest.raises(RuntimeError, match="deterministic"):
        out.sum().backward()
        torch.cuda.synchronize()


@pytest.mark.cuda
@pytest.mark.parametrize("name", list(DETERMINISTIC))
def test_op_with_deterministic_cuda_path_runs(deterministic_mode, name, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    DETERMINISTIC[name]("cuda").sum().backward()
    torch.cuda.synchronize()


@pytest.mark.parametrize("name", [*NO_DETERMINISTIC_CUDA_BACKWARD, *DETERMINISTIC])
def test_every_listed_op_is_deterministic_on_cpu(deterministic_mode, name):
    """CPU twin: deterministic mode refuses none of them on the CPU, and two backward passes agree."""
    table = {**NO_DETERMINISTIC_CUDA_BACKWARD, **DETERMINISTIC}
    grads = []
    for _ in range(2):
        torch.manual_seed(0)
        out = table[name]("cpu")
        leaves = _leaves(out)
        out.sum().backward()
        grads.append([leaf.grad.clone() for leaf in leaves])
    assert grads[0] and all(torch.equal(a, b) for a, b in zip(*grads))


def _leaves(tensor):
    """The leaf tensors requiring grad that ``tensor`` was computed from."""
    found, stack, seen = [], [tensor.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):
            found.append(fn.variable)
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return found


# res3 of the 32-px tiny recipe is 4 x 4 (avg_pool3d refuses an input smaller than its kernel).
RNL_AVG = {"options": {"variant": "tsm", "base_channels": 8,
                       "blocks": [{"name": "rnl", "plan": "res3: 1",
                                   "options": {"aggregation": "avg", "kernel_size": [3, 3, 3]}}]}}


@pytest.mark.cuda
def test_training_a_block_without_deterministic_cuda_kernel_is_one_config_error(make_config, tmp_path):
    from videoattn.engine import train
    from videoattn.errors import ConfigError

    steps = {"device": "cuda", "max_steps": 1, "val_interval": 0}
    with pytest.raises(ConfigError, match=r"^config key 'train.deterministic'.*runs avg_pool3d_backward_cuda"):
        train(make_config(tmp_path / "det", train={**steps, "deterministic": True}, model=RNL_AVG))
    assert train(make_config(tmp_path / "free", train={**steps, "deterministic": False},
                             model=RNL_AVG)).global_step == 1


def test_the_same_block_trains_in_deterministic_mode_on_cpu(make_config, tmp_path):
    """CPU twin: on the CPU avg_pool3d's backward is deterministic, so the same recipe trains."""
    from videoattn.engine import train

    config = make_config(tmp_path / "cpu", train={"device": "cpu", "deterministic": True, "max_steps": 1,
                                                  "val_interval": 0}, model=RNL_AVG)
    assert train(config).global_step == 1
