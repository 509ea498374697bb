"""Reliability tests reuse the engine tests' tiny synthetic dataset and config builders."""

from tests.engine.conftest import make_config, make_config_file, synthetic_root  # noqa: F401
