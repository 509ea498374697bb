"""What machines do to a run, in-process: corrupt last.pt, full disk, two runs on one work dir,
a loader worker killed, NaN/Inf losses. Each ends in a clear error or a recovered run, and every
resumed run ends bit-identical to the uninterrupted reference (see conftest.py)."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys

import pytest
import torch

from tests.reliability._runs import assert_same_final_state, sections
from videoattn.engine import train
from videoattn.engine.checkpoint import load_checkpoint
from videoattn.engine.guard import LoaderWorkerDiedError
from videoattn.engine.lock import work_dir_lock
from videoattn.engine.trainer import TrainingDivergedError
from videoattn.errors import CheckpointError, ConfigError


def _stop_at(make_config, work_dir, step, **extra):
    """A run of the reference recipe stopped after ``step`` optimizer steps (a resumable last.pt)."""
    return train(make_config(work_dir, **sections(**extra, max_steps=step)))


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_corrupt_last_falls_back_to_previous_good_checkpoint(make_config, tmp_path, reference, damage, capfd):
    work_dir = tmp_path / "run"
    _stop_at(make_config, work_dir, 3, checkpoint_interval=2)  # last.pt at step 3, last.prev.pt at 2
    last = work_dir / "last.pt"
    data = bytearray(last.read_bytes())
    if damage == "truncated":  # e.g. a non-atomic copy made by a user on a disk that filled up
        last.write_bytes(data[: len(data) // 2])
    else:  # bytes inside tensor data changed: the zip container still reads
        data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
        last.write_bytes(data)
    assert load_checkpoint(work_dir / "last.prev.pt")["position"]["global_step"] == 2
    train(make_config(work_dir, **sections()), resume=True)
    err = capfd.readouterr().err
    assert "last.pt" in err and "previous good checkpoint" in err
    assert (work_dir / "last.corrupt.pt").is_file()  # kept for inspection, never rotated into last.prev.pt
    assert_same_final_state(reference, last)


def test_no_usable_checkpoint_is_a_clear_error(make_config, tmp_path):
    work_dir = tmp_path / "run"
    _stop_at(make_config, work_dir, 1)
    (work_dir / "last.pt").write_bytes(b"not a checkpoint")
    (work_dir / "last.prev.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="cannot resume.*last.pt.*last.prev.pt"):
        train(make_config(work_dir, **sections()), resume=True)


def test_full_disk_while_saving_keeps_last_good_checkpoint(make_config, tmp_path, reference, monkeypatch):
    work_dir = tmp_path / "run"
    real_save, calls = torch.save, []

    def save_then_fill_disk(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the third checkpoint: half written, then the disk is full
            handle.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_fill_disk)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*last\.pt.*No space left.*left as it "
                                              r"was"):
        train(make_config(work_dir, **sections()))
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(work_dir / "last.pt")["position"]["global_step"] == 2
    assert not list(work_dir.glob(".*.tmp")), "the half-written temporary file was left behind"
    train(make_config(work_dir, **sections()), resume=True)
    assert_same_final_state(reference, work_dir / "last.pt")


def test_second_run_on_a_work_dir_refuses(make_config, tmp_path):
    work_dir = tmp_path / "run"
    refused = pytest.raises(ConfigError, match=rf"in use by another run \(pid {os.getpid()} on host")
    with work_dir_lock(work_dir), refused:  # another run holds the work dir
        train(make_config(work_dir, **sections(max_steps=1)))
    assert not (work_dir / "last.pt").exists()


def test_lock_of_a_killed_run_is_released(make_config, tmp_path):
    work_dir = tmp_path / "run"
    code = ("import os, signal, sys\nfrom videoattn.engine.lock import work_dir_lock\n"
            "with work_dir_lock(sys.argv[1]):\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    killed = subprocess.run([sys.executable, "-c", code, str(work_dir)], env={**os.environ, "PYTHONPATH": src},
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert json.loads((work_dir / "train.lock").read_text())["pid"] != os.getpid()
    result = train(make_config(work_dir, **sections(max_steps=1)))  # not refused
    assert result.global_step == 1


def _kill_worker_at(monkeypatch, index):
    """Loader workers building sample ``index`` die from SIGKILL, as under the OOM killer."""
    from videoattn.data.dataset import VideoDataset

    original = VideoDataset.__getitem__

    def getitem(self, key):  # the loader passes (index, epoch) pairs
        position = key[0] if isinstance(key, tuple) else key
        if torch.utils.data.get_worker_info() is not None and self.split == "train" and position == index:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, key)

    monkeypatch.setattr(VideoDataset, "__getitem__", getitem)


def test_killed_loader_worker_is_reported_and_run_resumes(make_config, tmp_path, reference, monkeypatch):
    from videoattn.data.sampler import ResumableSampler

    work_dir = tmp_path / "run"
    config = make_config(work_dir, **sections(workers=2))
    order = ResumableSampler(16, seed=config.train.seed).epoch_indices()  # 16 training videos
    victim = order[9]  # epoch 1, optimizer step 3 (batch 4)
    _kill_worker_at(monkeypatch, victim)
    with pytest.raises(LoaderWorkerDiedError, match=r"DataLoader worker .*(killed|exited).*--resume") as caught:
        train(config)
    message = str(caught.value)
    assert "died building one of the batches it had not delivered" in message, message
    named = [int(i) for group in re.findall(r"indices \[([\d, ]+)\]", message) for i in group.split(",")]
    assert victim in named, message
    position = load_checkpoint(work_dir / "last.pt")["position"]
    assert position["epoch"] == 0 and position["step_in_epoch"] <= 2  # a step boundary before the victim
    monkeypatch.undo()
    train(make_config(work_dir, **sections(workers=2)), resume=True)
    assert_same_final_state(reference, work_dir / "last.pt")


def _nonfinite_at(monkeypatch, steps):
    """The loss is NaN at the given (0-based) optimizer steps."""
    criterion, calls = torch.nn.CrossEntropyLoss.forward, []

    def forward(self, logits, labels):
        calls.append(1)
        loss = criterion(self, logits, labels)
        return loss * float("nan") if len(calls) - 1 in steps else loss

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", forward)


def test_nonfinite_steps_are_skipped_within_budget(make_config, tmp_path, monkeypatch):
    _nonfinite_at(monkeypatch, {1, 5})
    result = train(make_config(tmp_path / "run", **sections(skip_nonfinite_steps=2)))
    assert result.global_step == 8 and result.summary["nonfinite_steps_skipped"] == 2
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert all(torch.isfinite(s["momentum_buffer"]).all() for s in last["optimizer"]["state"].values())
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "nonfinite"] == [1, 5]


def test_skipped_step_leaves_weights_and_momentum_untouched(make_config, tmp_path, monkeypatch):
    before = load_checkpoint(_stop_at(make_config, tmp_path / "a", 1).last_checkpoint)
    _nonfinite_at(monkeypatch, {1})
    after = load_checkpoint(_stop_at(make_config, tmp_path / "b", 2, skip_nonfinite_steps=1).last_checkpoint)
    for key, value in before["model"].items():
        if value.is_floating_point() and "running" not in key:
            assert torch.equal(value, after["model"][key]), key
    for key, value in before["optimizer"]["state"].items():
        assert torch.equal(value["momentum_buffer"], after["optimizer"]["state"][key]["momentum_buffer"])


def test_too_many_nonfinite_steps_stop_the_run(make_config, tmp_path, monkeypatch):
    _nonfinite_at(monkeypatch, {1, 2})
    with pytest.raises(TrainingDivergedError, match=r"1 earlier bad step\(s\) skipped.*skip_nonfinite_steps=1"):
        train(make_config(tmp_path / "run", **sections(skip_nonfinite_steps=1)))


def test_skip_nonfinite_steps_is_validated(make_config, tmp_path):
    with pytest.raises(ConfigError, match="train.skip_nonfinite_steps"):
        make_config(tmp_path / "run", train={"skip_nonfinite_steps": -1})


def test_killed_validation_worker_is_reported_and_validation_recovers(make_config, tmp_path, reference, monkeypatch,
                                                                       capfd):
    from videoattn.data.dataset import VideoDataset

    original = VideoDataset.__getitem__

    def getitem(self, key):  # a validation worker dies (the in-process retry has no worker info)
        if torch.utils.data.get_worker_info() is not None and self.split == "val":
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, key)

    monkeypatch.setattr(VideoDataset, "__getitem__", getitem)
    work_dir = tmp_path / "run"
    train(make_config(work_dir, **sections(workers=2)))
    err = capfd.readouterr().err
    # both epochs' validations lost their workers and were scored again in-process
    assert len(re.findall(r"evaluation: DataLoader worker .*(?:killed|exited).*again without loader workers", err)) == 2
    assert_same_final_state(reference, work_dir / "last.pt")  # same weights and the same val_top1 history
