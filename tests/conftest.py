"""Test-suite settings shared by every test module."""

import os

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` run only with VIDEOATTN_SLOW=1 (they check long-running claims)."""
    if os.environ.get("VIDEOATTN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow check: set VIDEOATTN_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
