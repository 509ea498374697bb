"""What clusters do to a run: several nodes, a worker killed under torchrun's elastic agent, preemption
signals, and a resume on another number of processes (CPU, gloo, loopback only).

Every multi-process run here is compared with one in-process run with the same global batch (the
``reference`` fixture) under the equality test's conditions (frozen BN, no dropout; see
``tests/engine/test_ddp.py``): bit for bit where the process count is the same, to 1e-4 relative /
1e-5 absolute where DDP's gradient average replaces one process's batch mean (float summation order).
Each test bounds its own time and kills its process groups in ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.engine._cluster import (
    EQUAL_SPLIT,
    Processes,
    assert_close_states,
    child_env,
    free_port,
    torchrun,
    train_command,
    wait_for,
)
from videoattn.data.sampler import ResumableSampler
from videoattn.engine import train
from videoattn.engine.builders import build_model
from videoattn.engine.checkpoint import load_checkpoint
from videoattn.engine.preemption import PREEMPTED_EXIT_CODE, REPEAT_WINDOW_S
from videoattn.engine.train_state import check_world_size
from videoattn.errors import ConfigError


@pytest.fixture(scope="module")
def reference(tmp_path_factory, synthetic_root):
    """``last.pt`` of one uninterrupted in-process run: 2 epochs x 4 steps of global batch 4."""
    from tests.engine.conftest import tiny_config_dict
    from videoattn.config import config_from_dict

    work_dir = tmp_path_factory.mktemp("reference")
    config = config_from_dict(tiny_config_dict(synthetic_root, work_dir, **EQUAL_SPLIT))
    result = train(config)
    assert result.global_step == 8
    state = load_checkpoint(work_dir / "last.pt")
    torch.manual_seed(config.train.seed)  # the trainer's initial weights: the run must move them well
    initial = build_model(config.model, state["num_classes"])
    final = state["model"]
    assert max(float((final[k] - v).abs().max()) for k, v in initial.state_dict().items()
               if v.is_floating_point()) > 1e-3
    return work_dir / "last.pt"


def test_two_nodes_worker_killed_restarts_resumes_and_matches_one_process(make_config_file, tmp_path, reference):
    """Two torchrun agents (two "nodes", one worker each) meet through the c10d rendezvous on
    127.0.0.1. The worker of rank 1 SIGKILLs itself after optimizer step 3 in the first attempt
    (``VIDEOATTN_FAULT``); ``--max-restarts 1`` restarts the group, ``--resume auto`` picks up last.pt
    (step 2) and the run ends equal to one process with the same global batch."""
    work_dir = tmp_path / "run"
    config_path = make_config_file(tmp_path / "run.yaml", work_dir, **EQUAL_SPLIT)
    port = free_port()
    env = child_env(VIDEOATTN_FAULT="step:3", VIDEOATTN_FAULT_RANK="1", VIDEOATTN_FAULT_ONCE=str(tmp_path / "fired"),
                    TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")  # see docs/cluster.md: a fresh store per round
    agent = torchrun("--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                     "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "cluster-test", "--local-addr",
                     "127.0.0.1", "--max-restarts", "1", "--monitor-interval", "0.2",
                     *train_command(config_path, "--resume", "auto"))
    processes = Processes()
    try:
        for _ in range(2):
            processes.start(agent, env)
        results = processes.wait_all(timeout=150)
    finally:
        processes.close()
    for code, output in results:
        assert code == 0, output[-4000:]
    assert (tmp_path / "fired").exists()  # the fault fired (once)
    metadata = json.loads((work_dir / "metadata.json").read_text())
    assert metadata["world_size"] == 2 and metadata["backend"] == "gloo"
    assert metadata["resumed_from"].endswith("last.pt")  # the restarted group continued the run...
    assert load_checkpoint(work_dir / "last.pt")["history"][0]["step"] == 4
    assert_close_states(reference, work_dir / "last.pt", exact=False)  # ...and ended where one process does


def test_preemption_agreed_across_ranks_then_resume_on_one_process(make_config, make_config_file, tmp_path,
                                                                   reference):
    """Rank 1 alone gets SIGUSR1 (it sends it to itself after optimizer step 2). The flag travels in the
    step's all-reduce, so both ranks stop after step 3, rank 0 writes last.pt there and both exit with
    75. The run then resumes on ONE process (``train.resume: auto``): the sampler position is global,
    so it sees the same samples and ends equal to the uninterrupted run."""
    work_dir = tmp_path / "run"
    config_path = make_config_file(tmp_path / "run.yaml", work_dir, **EQUAL_SPLIT)
    env = child_env(VIDEOATTN_FAULT="step:2:signal=SIGUSR1", VIDEOATTN_FAULT_RANK="1",
                    TORCHELASTIC_ERROR_FILE="")
    processes = Processes()
    try:
        processes.start(torchrun("--standalone", "--nproc-per-node", "2", "--monitor-interval", "0.2",
                                 *train_command(config_path)), env)
        ((code, output),) = processes.wait_all(timeout=120)
    finally:
        processes.close()
    assert code != 0, output[-3000:]  # torchrun reports the workers' non-zero exit
    assert f"exitcode  : {PREEMPTED_EXIT_CODE}" in output or f"exitcode: {PREEMPTED_EXIT_CODE}" in output, \
        output[-3000:]
    assert "stopped by SIGUSR1" in output and "stopped by a signal on another rank" in output, output[-3000:]
    saved = load_checkpoint(work_dir / "last.pt")
    assert saved["position"]["global_step"] == 3 and saved["sampler"]["num_replicas"] == 2
    assert saved["sampler"]["samples_into_epoch"] == 12  # 3 steps x global batch 4, all ranks together
    assert not (work_dir / "summary.json").exists()

    resumed = train(make_config(work_dir, **{**EQUAL_SPLIT, "train": {**EQUAL_SPLIT["train"], "resume": "auto"}}))
    assert resumed.global_step == 8 and resumed.summary["world_size"] == 1
    assert_close_states(reference, work_dir / "last.pt", exact=False)


@pytest.mark.parametrize("sent", [signal.SIGUSR1, signal.SIGTERM], ids=lambda s: s.name)
def test_signal_stops_at_a_step_boundary_and_resume_is_bit_identical(make_config, make_config_file, tmp_path,
                                                                     reference, sent):
    """A real SIGUSR1 / SIGTERM from outside to a real ``videoattn train``: it exits with 75 after a whole
    step, last.pt holds that step, and the resume ends bit-identical to the uninterrupted run."""
    work_dir = tmp_path / "run"
    config_path = make_config_file(tmp_path / "run.yaml", work_dir, **EQUAL_SPLIT)
    # Step 2 hangs for 2 s, so the signal surely arrives before the run could finish.
    env = child_env(VIDEOATTN_FAULT="step:2:stall=2")
    processes = Processes()
    try:
        process = processes.start([sys.executable, *train_command(config_path)], env)
        wait_for(lambda: (work_dir / "last.pt").exists(), 60, "the first checkpoint", process)
        process.send_signal(sent)
        ((code, output),) = processes.wait_all(timeout=60)
    finally:
        processes.close()
    assert code == PREEMPTED_EXIT_CODE, output[-3000:]
    assert f"stopped by {sent.name}" in output and "--resume auto" in output
    stopped_at = load_checkpoint(work_dir / "last.pt")["position"]["global_step"]
    assert 2 <= stopped_at < 8
    assert not list(work_dir.glob(".*.tmp"))

    resumed = train(make_config(work_dir, **EQUAL_SPLIT), resume="auto")
    assert resumed.global_step == 8
    assert_close_states(reference, work_dir / "last.pt", exact=True)
    expected = load_checkpoint(reference)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in expected["history"]]


def test_second_signal_exits_at_once_and_keeps_the_last_good_checkpoint(make_config_file, tmp_path):
    work_dir = tmp_path / "run"
    config_path = make_config_file(tmp_path / "run.yaml", work_dir, **EQUAL_SPLIT)
    env = child_env(VIDEOATTN_FAULT="step:2:stall=60")  # step 2 hangs: the step boundary never comes
    processes = Processes()
    try:
        process = processes.start([sys.executable, *train_command(config_path)], env)
        last = work_dir / "last.pt"
        wait_for(last.exists, 60, "the first checkpoint", process)
        before = last.read_bytes()
        process.send_signal(signal.SIGTERM)
        time.sleep(REPEAT_WINDOW_S + 0.5)
        assert process.poll() is None, "the first SIGTERM alone must not end a hanging step"
        process.send_signal(signal.SIGTERM)
        ((code, output),) = processes.wait_all(timeout=20)
    finally:
        processes.close()
    assert code == 128 + signal.SIGTERM, output[-3000:]
    assert "exiting now" in output
    assert last.read_bytes() == before and load_checkpoint(last)["position"]["global_step"] == 1
    assert not (work_dir / "summary.json").exists()


def test_sampler_state_is_global_and_resumes_on_another_process_count():
    """8 samples in on 2 processes = position 4 of each shard; on 1 or 4 processes the rest of the epoch
    is the same global order (batch i of W processes together = batch i of one process)."""
    def rest(world: int, start: int) -> list[list[int]]:
        shards = []
        for rank in range(world):
            sampler = ResumableSampler(17, seed=3, num_replicas=world, rank=rank)
            sampler.set_epoch(2)
            sampler.set_global_start(start)
            shards.append(list(sampler))
        return shards

    two = rest(2, 8)
    one = rest(1, 8)[0]
    four = rest(4, 8)
    # Global batch 4: the next two steps take samples [8, 12) and [12, 16) of the epoch's order.
    for step in range(2):
        expected = sorted(one[4 * step: 4 * step + 4])
        assert sorted(two[0][2 * step: 2 * step + 2] + two[1][2 * step: 2 * step + 2]) == expected
        assert sorted(shard[step] for shard in four) == expected
    sampler = ResumableSampler(17, seed=3, num_replicas=2, rank=1)
    sampler.set_global_start(8)
    assert sampler.state_dict() == {"seed": 3, "epoch": 0, "samples_into_epoch": 8}
    with pytest.raises(ValueError, match="does not divide among 4"):
        ResumableSampler(17, num_replicas=4, rank=0).set_global_start(6)


def test_resume_on_a_process_count_the_global_batch_does_not_divide_says_why():
    state = {"sampler": {"num_replicas": 2}}
    assert check_world_size(4, 1, 1, state) == 4 and check_world_size(4, 1, 4, state) == 1
    with pytest.raises(ConfigError) as error:
        check_world_size(4, 1, 3, state)
    message = str(error.value)
    assert "\n" not in message and "3 process(es)" in message and "checkpointed on 2 process(es)" in message


def test_sbatch_script_runs_two_nodes_is_preempted_requeues_and_resumes(make_config_file, tmp_path, reference):
    """``scripts/slurm/train.sbatch`` run by bash with stand-ins for ``srun`` (runs each node's task on this
    machine) and ``scontrol`` (logs; ``show hostnames`` answers 127.0.0.1). First start: 2 nodes x 1
    process; USR1 to the script (what ``--signal=B:USR1@120`` does) travels script -> srun -> torchrun
    agents -> workers, the run stops at a step boundary and the script requeues the job. The requeued
    start (here on ONE node) continues from last.pt and ends equal to the uninterrupted run."""
    repo = Path(__file__).resolve().parents[2]
    work_dir = tmp_path / "run"
    config_path = make_config_file(tmp_path / "run.yaml", tmp_path / "unused", **EQUAL_SPLIT)
    log = tmp_path / "slurm.log"
    base = child_env(PATH=f"{repo / 'tests/engine/slurm_stub'}{os.pathsep}{os.environ['PATH']}",
                     SLURM_STUB_LOG=str(log), SLURM_JOB_ID="4242", SLURM_JOB_NODELIST="node[1-2]",
                     CONFIG=str(config_path), WORK_DIR=str(work_dir), PYTHON=sys.executable, NPROC_PER_NODE="1",
                     LOCAL_ADDR="127.0.0.1", MAX_RESTARTS="0")
    script = ["bash", str(repo / "scripts/slurm/train.sbatch")]
    processes = Processes()
    try:  # step 3 hangs for 3 s on both ranks, so the signal surely comes before the run ends
        first = processes.start(script, {**base, "SLURM_NNODES": "2", "RDZV_PORT": str(free_port()),
                                         "VIDEOATTN_FAULT": "step:3:stall=3"})
        wait_for(lambda: (work_dir / "last.pt").exists(), 90, "the first checkpoint", first)
        first.send_signal(signal.SIGUSR1)
        ((code, output),) = processes.wait_all(timeout=90)
    finally:
        processes.close()
    assert code == 0, output[-4000:]
    assert "scontrol requeue 4242" in log.read_text(), output[-4000:]
    stopped = load_checkpoint(work_dir / "last.pt")
    assert 2 <= stopped["position"]["global_step"] < 8 and stopped["sampler"]["num_replicas"] == 2
    assert not (work_dir / "summary.json").exists()

    processes = Processes()
    try:
        processes.start(script, {**base, "SLURM_NNODES": "1", "RDZV_PORT": str(free_port()),
                                 "SLURM_RESTART_COUNT": "1"})
        ((code, output),) = processes.wait_all(timeout=90)
    finally:
        processes.close()
    assert code == 0, output[-4000:]
    assert log.read_text().count("requeue") == 1
    assert json.loads((work_dir / "summary.json").read_text())["world_size"] == 1
    assert_close_states(reference, work_dir / "last.pt", exact=False)
