"""``model.sync_bn`` on CUDA under everything docs/cluster.md promises: two processes (NCCL,
SyncBatchNorm over the global batch) preempted by a signal on one rank, resumed with ``--resume auto``,
equal to an uninterrupted run. Needs two CUDA devices (NCCL refuses two ranks on one GPU); skipped
elsewhere."""

from __future__ import annotations

import pytest
import torch

from tests.engine._cluster import Processes, assert_close_states, child_env, torchrun, train_command
from videoattn.engine.checkpoint import load_checkpoint
from videoattn.engine.preemption import PREEMPTED_EXIT_CODE

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                                reason="needs two CUDA devices")

SYNC_BN = {"train": {"epochs": 2, "batch_size": 4, "lr": 0.05, "val_interval": 0, "checkpoint_interval": 1,
                     "device": "cuda", "deterministic": True},
           "model": {"dropout": 0.0, "sync_bn": True}}


def _run(config_path, *args, **env):
    processes = Processes()
    try:
        processes.start(torchrun("--standalone", "--nproc-per-node", "2", *train_command(config_path, *args)),
                        child_env(**env))
        return processes.wait_all(timeout=300)[0]
    finally:
        processes.close()


def test_sync_bn_preempted_on_one_rank_resumes_equal_to_uninterrupted(make_config_file, tmp_path):
    reference = make_config_file(tmp_path / "reference.yaml", tmp_path / "reference", **SYNC_BN)
    code, output = _run(reference)
    assert code == 0, output[-4000:]
    state = load_checkpoint(tmp_path / "reference" / "last.pt")
    assert any(".running_mean" in key for key in state["model"])

    config_path = make_config_file(tmp_path / "run.yaml", tmp_path / "run", **SYNC_BN)
    code, output = _run(config_path, "--resume", "auto", VIDEOATTN_FAULT="step:2:signal=SIGUSR1",
                        VIDEOATTN_FAULT_RANK="1")
    assert code != 0 and str(PREEMPTED_EXIT_CODE) in output, output[-4000:]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["position"]["global_step"] == 3
    code, output = _run(config_path, "--resume", "auto")
    assert code == 0, output[-4000:]
    assert_close_states(tmp_path / "reference" / "last.pt", tmp_path / "run" / "last.pt", exact=False)
