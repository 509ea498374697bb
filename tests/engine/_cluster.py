"""Helpers for the cluster tests: torchrun / training subprocesses that always end, free ports, comparisons."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from videoattn.engine.checkpoint import load_checkpoint

SRC = Path(__file__).resolve().parents[2] / "src"
#: The equality test's conditions (tests/engine/test_ddp.py): every BN frozen, no dropout, so a
#: sample's gradient does not depend on how the global batch is split among processes.
EQUAL_SPLIT = {"train": {"epochs": 2, "batch_size": 4, "lr": 0.05, "freeze_bn": "all", "val_interval": 0,
                         "checkpoint_interval": 1},
               "model": {"dropout": 0.0}}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("VIDEOATTN_FAULT", "TORCHELASTIC_", "SLURM_"))
           and key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(SRC), OMP_NUM_THREADS="1", **extra)
    return env


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def train_command(config_path: Path, *args: str) -> list[str]:
    return ["-m", "videoattn", "train", "--config", str(config_path), *args]


class Processes:
    """Start processes in their own sessions; :meth:`close` kills every process group still alive."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, command: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True, **kwargs)
        self.started.append(process)
        return process

    def wait_all(self, timeout: float) -> list[tuple[int, str]]:
        deadline = time.monotonic() + timeout
        results = []
        for process in self.started:
            try:
                output = process.communicate(timeout=max(deadline - time.monotonic(), 1))[0]
            except subprocess.TimeoutExpired:
                self.close()
                output = process.communicate()[0].decode(errors="replace")
                raise AssertionError(f"still running after {timeout} s:\n{output[-3000:]}") from None
            results.append((process.returncode, output.decode(errors="replace")))
        return results

    def close(self) -> None:
        """SIGKILL every process started here, its process group and every descendant (torchrun starts
        its workers in sessions of their own, so killing the agent's group alone would orphan them)."""
        for process in self.started:
            for pid in [process.pid, *descendants(process.pid)]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                process.wait(timeout=10)


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc), children first."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def wait_for(predicate, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended (code {process.returncode}) before {what}:\n"
                                 f"{process.communicate()[0].decode(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def max_weight_change(initial: dict, final: dict) -> float:
    return max(float((final[key] - initial[key]).abs().max()) for key in initial if initial[key].is_floating_point())


def assert_close_states(expected_path: Path, final_path: Path, exact: bool) -> None:
    """Same position; weights and momentum equal (bit for bit if ``exact``, else to 1e-4 relative / 1e-5
    absolute: the summation order of DDP's gradient average versus one process's batch mean)."""
    expected, final = load_checkpoint(expected_path), load_checkpoint(final_path)
    for key in ("epoch", "step_in_epoch", "global_step", "global_batch"):
        assert final["position"][key] == expected["position"][key], key
    pairs = [(f"model.{k}", v, final["model"][k]) for k, v in expected["model"].items()]
    pairs += [(f"momentum.{k}", v["momentum_buffer"], final["optimizer"]["state"][k]["momentum_buffer"])
              for k, v in expected["optimizer"]["state"].items()]
    for name, want, got in pairs:
        if exact:
            assert torch.equal(want, got), name
        else:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name)
