"""Test-suite settings shared by every test module."""

import os

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` run only with VIDEOATTN_SLOW=1 (they check long-running claims); tests
    marked ``cuda`` only where a CUDA device is available (scripts/gpu_check.sh runs them)."""
    slow = os.environ.get("VIDEOATTN_SLOW") == "1"
    skip_slow = pytest.mark.skip(reason="slow check: set VIDEOATTN_SLOW=1 to run it")
    has_cuda = torch.cuda.is_available()
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is false)")
    for item in items:
        if "slow" in item.keywords and not slow:
            item.add_marker(skip_slow)
        if item.get_closest_marker("cuda") is not None and not has_cuda:  # a marker, not the word in a path
            item.add_marker(skip_cuda)


@pytest.fixture(scope="session", autouse=True)
def _one_intra_op_thread():
    """Every test runs tiny models, which gain nothing from intra-op threads; on a shared or loaded
    machine two spinning OpenMP threads per process made single cases take minutes instead of
    seconds. Tests that need more set it themselves (the engine applies ``train.num_threads``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
