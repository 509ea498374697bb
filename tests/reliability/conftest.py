"""Reliability tests reuse the engine tests' tiny synthetic dataset and config builders."""

import pytest

from tests.engine.conftest import make_config, make_config_file, synthetic_root, tiny_config_dict  # noqa: F401
from tests.reliability._runs import sections


@pytest.fixture(scope="session")
def reference(tmp_path_factory, synthetic_root):  # noqa: F811
    """``last.pt`` of an uninterrupted 2-epoch run of the attention model (in-process, no workers:
    the data a step sees does not depend on the number of loader workers)."""
    from videoattn.config import config_from_dict
    from videoattn.engine import train

    work_dir = tmp_path_factory.mktemp("reference")
    train(config_from_dict(tiny_config_dict(synthetic_root, work_dir, **sections(workers=0))))
    return work_dir / "last.pt"
