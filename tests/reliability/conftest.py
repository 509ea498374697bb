"""Reliability tests reuse the engine tests' tiny synthetic dataset and config builders."""

import os

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


# Hypothesis: modest example counts by default, more with VIDEOATTN_SLOW=1; always derandomized
# (the same cases every run, so a failure in CI reproduces locally) and no deadline (a shared machine
# is noisy). The example database is off: nothing is written into the checkout.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("videoattn", max_examples=60, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("videoattn-slow", max_examples=600, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile("videoattn-slow" if os.environ.get("VIDEOATTN_SLOW") == "1" else "videoattn")


def pytest_terminal_summary(terminalreporter):
    """Outcomes of the property tests (cases that succeeded / were refused, per error type)."""
    from tests.reliability._props import OUTCOMES

    if OUTCOMES:
        terminalreporter.section("videoattn property outcomes")
        for name, counter in sorted(OUTCOMES.items()):
            terminalreporter.write_line(f"{name}: {sum(counter.values())} cases, {dict(sorted(counter.items()))}")
