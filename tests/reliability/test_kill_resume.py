"""SIGKILL at a chosen point of a run, then ``--resume``: the final state is bit-identical (CPU).

The model has attention blocks (space-time non-local) and the loader has 2 worker processes. The
process kills itself deterministically (``VIDEOATTN_FAULT=<point>:<n>``, see
``videoattn.utils.faults``), so the test never depends on timing: during a step (after the n-th
optimizer step, before it is recorded), during a checkpoint write (bytes in the temporary file, not
yet renamed) and during evaluation (scores computed, not recorded). The default suite kills once,
in a checkpoint write; VIDEOATTN_SLOW=1 kills at every kind of point and also several times in a row.
"""

from __future__ import annotations

import pytest

from tests.reliability._runs import assert_killed, assert_same_final_state, run_cli, sections
from videoattn.engine.checkpoint import load_checkpoint


def _kill_and_resume(tmp_path, make_config_file, reference, faults):
    work_dir = tmp_path / "run"
    config_path = make_config_file(tmp_path / "run.yaml", work_dir, **sections(workers=2))
    for number, fault in enumerate(faults):
        killed = run_cli(config_path, *(["--resume"] if number else []), fault=fault)
        assert_killed(killed)
        if (work_dir / "last.pt").exists():  # not after a kill inside the very first checkpoint write
            assert load_checkpoint(work_dir / "last.pt")["position"]["global_step"] >= 1
    resumed = run_cli(config_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_final_state(reference, work_dir / "last.pt")
    assert not list(work_dir.glob(".*.tmp")), "a temporary file survived the resumed run"


def test_kill_during_checkpoint_write_then_resume(tmp_path, make_config_file, reference):
    _kill_and_resume(tmp_path, make_config_file, reference, ["checkpoint_write:3"])


@pytest.mark.slow
@pytest.mark.parametrize("faults", [["step:3"], ["step:4"], ["evaluation:1"], ["evaluation:2"],
                                    ["checkpoint_write:1"], ["checkpoint_write:5"],
                                    ["step:2", "checkpoint_write:2", "evaluation:1"]],
                         ids=lambda faults: "+".join(faults))
def test_kill_anywhere_then_resume(tmp_path, make_config_file, reference, faults):
    _kill_and_resume(tmp_path, make_config_file, reference, faults)
