"""The training loop on the real model and the real (synthetic) data: files, resume, NaN, BN modes."""

import json

import pytest
import torch

from videoattn.engine import train
from videoattn.engine.builders import build_model
from videoattn.engine.checkpoint import load_checkpoint
from videoattn.engine.trainer import TrainingDivergedError
from videoattn.errors import ConfigError


def test_run_writes_work_dir_and_reports_history(make_config, tmp_path):
    events = []
    # train.device left at auto: the run reports what auto picks on this machine.
    config = make_config(tmp_path / "run", train={"checkpoint_interval": 3, "device": "auto"})
    threads = torch.get_num_threads()
    result = train(config, callbacks=[lambda event, record: events.append((event, record))])
    # The run used 1 thread and deterministic algorithms; the caller's settings are restored.
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()
    work = tmp_path / "run"
    for name in ("config.yaml", "metadata.json", "metrics.jsonl", "last.pt", "best.pt", "summary.json"):
        assert (work / name).is_file(), name
    assert list((work / "tensorboard").glob("events.out.tfevents.*"))
    metadata = json.loads((work / "metadata.json").read_text())
    assert metadata["videoattn_version"] and metadata["torch_version"] == torch.__version__
    assert metadata["decoder_backend"] and metadata["world_size"] == 1
    assert metadata["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert "git_commit" in metadata

    assert [record["epoch"] for record in result.history] == [1, 2]
    for record in result.history:
        assert {"train_loss", "train_top1", "val_top1", "val_top5", "val_mean_class_accuracy", "seconds",
                "clips_per_second", "data_wait_fraction", "lr"} <= set(record)
        assert 0.0 <= record["data_wait_fraction"] <= 1.0
    assert result.global_step == 2 * result.summary["global_step"] // 2 > 0
    assert result.best_checkpoint is not None and result.best_top1 is not None

    summary = json.loads((work / "summary.json").read_text())
    assert summary["clips_per_second"] > 0 and "skipped_samples" in summary
    lines = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines if line["kind"] == "epoch"] == [1, 2]
    assert sum(line["kind"] == "step" for line in lines) == result.global_step

    last = load_checkpoint(work / "last.pt")
    assert last["position"] == {**last["position"], "epoch": 2, "step_in_epoch": 0,
                                "global_step": result.global_step}
    assert set(last["model"]) == set(load_checkpoint(work / "best.pt")["model"])
    assert [e for e, _ in events].count("epoch") == 2 and events[-1][0] == "end"

    with pytest.raises(ConfigError, match="already holds a run"):
        train(config)


def test_stop_and_resume_equals_uninterrupted(make_config, tmp_path):
    # With a loader worker process: each sample's randomness must not depend on worker state.
    data = {"num_workers": 1}
    full = train(make_config(tmp_path / "full", train={"val_interval": 0}, data=data))
    # Stop mid-epoch 1 (step 3 of 4 per epoch), then resume to the end.
    train(make_config(tmp_path / "split", train={"val_interval": 0, "max_steps": 3}, data=data))
    stopped = load_checkpoint(tmp_path / "split" / "last.pt")
    assert stopped["position"]["global_step"] == 3 and stopped["position"]["step_in_epoch"] == 3
    resumed = train(make_config(tmp_path / "split", train={"val_interval": 0}, data=data), resume=True)
    assert resumed.global_step == full.global_step
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines if '"step"' in line and '"kind": "step"' in line] \
        == list(range(1, full.global_step + 1))


class _NaNAfter(torch.nn.Module):
    def __init__(self, inner, calls):
        super().__init__()
        self.inner = inner
        self.calls = calls

    def forward(self, video):
        self.calls -= 1
        logits = self.inner(video)
        return logits * float("nan") if self.calls < 0 else logits


def test_nan_loss_stops_and_keeps_last_good_checkpoint(make_config, tmp_path, monkeypatch):
    import videoattn.engine.trainer as trainer_module

    real_build = trainer_module.build_model
    monkeypatch.setattr(trainer_module, "build_model",
                        lambda *args, **kwargs: _NaNAfter(real_build(*args, **kwargs), calls=3))
    config = make_config(tmp_path / "nan", train={"checkpoint_interval": 1, "val_interval": 0})
    with pytest.raises(TrainingDivergedError, match=r"loss became nan.*optimizer step 3.*last good checkpoint"):
        train(config)
    state = load_checkpoint(tmp_path / "nan" / "last.pt")
    assert state["position"]["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


# Accumulation changes only the float32 summation order of the batch's gradient (and, on CUDA, the
# kernels cuDNN picks for a batch of 2 instead of 4). The bound on the weight difference after the two
# steps is per device, measured: CPU below 1e-6 (7.5e-9 on the 2-core development machine); CUDA 3.7e-6 on an H200
# (torch 2.11, CUDA 13), where convolutions run in TF32 by default (10-bit mantissa products), so the
# CUDA tolerance is 2e-5, about 5x the measurement. Deterministic mode does not help here: it makes a
# run repeatable, not two different summation orders equal.
ACCUMULATION_ATOL = {"cpu": 1e-6, "cuda": 2e-5}


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_gradient_accumulation_matches_full_batch(make_config, tmp_path, device):
    # Frozen BN and no dropout: the update of 2 micro-batches of 2 equals one batch of 4.
    common = {"freeze_bn": "all", "val_interval": 0, "max_steps": 2, "device": device}
    one = train(make_config(tmp_path / "one", train=common, model={"dropout": 0.0}))
    two = train(make_config(tmp_path / "two", train={**common, "accumulation_steps": 2},
                        model={"dropout": 0.0}))
    assert one.global_step == two.global_step == 2
    state = load_checkpoint(tmp_path / "one" / "last.pt")
    a, b = state["model"], load_checkpoint(tmp_path / "two" / "last.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=ACCUMULATION_ATOL[device])
    # The comparison means something only if the two steps moved the weights well beyond it.
    torch.manual_seed(1)  # the config's seed: the trainer's initial weights
    initial = build_model(make_config(tmp_path / "unused").model, state["num_classes"]).state_dict()
    moved = max(float((a[key] - initial[key]).abs().max()) for key in initial if initial[key].is_floating_point())
    assert moved > 100 * ACCUMULATION_ATOL[device]


def test_deterministic_mode_sets_its_flags_before_the_device_is_chosen(make_config, tmp_path, monkeypatch):
    import os

    import videoattn.engine.trainer as trainer_module

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    at_device_choice = []
    real_init = trainer_module.init_distributed

    def init_distributed(device):  # where torch.cuda.set_device (the CUDA context) happens on a GPU
        at_device_choice.append(os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
        return real_init(device)

    monkeypatch.setattr(trainer_module, "init_distributed", init_distributed)
    during = []

    def callback(event, record):
        during.append((torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                       torch.backends.cudnn.benchmark))

    saved_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    config = make_config(tmp_path / "det", train={"deterministic": True, "max_steps": 2, "val_interval": 0})
    result = train(config, callbacks=[callback])
    assert result.global_step == 2 and (tmp_path / "det" / "last.pt").is_file()
    assert at_device_choice == [":4096:8"]
    assert during and set(during) == {(True, True, False)}
    # The caller's settings come back after the run.
    assert not torch.are_deterministic_algorithms_enabled()
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) == saved_cudnn


class _PutsIntoLogits(torch.nn.Module):
    """The model plus an operator torch refuses in deterministic mode even on the CPU (``put_``)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, video):
        logits = self.inner(video).clone()
        return logits.put_(torch.tensor([0]), logits.reshape(-1)[:1] * 1.0)


def test_operator_without_deterministic_kernel_is_one_config_error(make_config, make_config_file, tmp_path,
                                                                   monkeypatch, capsys):
    import videoattn.engine.trainer as trainer_module
    from videoattn.cli import main

    real_build = trainer_module.build_model
    monkeypatch.setattr(trainer_module, "build_model",
                        lambda *args, **kwargs: _PutsIntoLogits(real_build(*args, **kwargs)))
    common = {"max_steps": 1, "val_interval": 0}
    with pytest.raises(ConfigError) as caught:
        train(make_config(tmp_path / "det", train={**common, "deterministic": True}))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("config key 'train.deterministic'")
    assert "runs put_," in message and "train.deterministic=false" in message
    assert not torch.are_deterministic_algorithms_enabled()
    # The same model trains without deterministic mode: only torch's refusal is translated.
    assert train(make_config(tmp_path / "free", train={**common, "deterministic": False})).global_step == 1
    path = make_config_file(tmp_path / "c.yaml", tmp_path / "cli", train={**common, "deterministic": True})
    assert main(["train", "--config", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs put_" in err[0]


def test_partial_bn_freezes_all_but_first_bn_and_bf16_runs(make_config, tmp_path):
    config = make_config(tmp_path / "pbn",
                     train={"freeze_bn": "partial", "precision": "bf16", "max_steps": 2, "val_interval": 0})
    train(config)
    state = load_checkpoint(tmp_path / "pbn" / "last.pt")["model"]
    means = [key for key in state if key.endswith("running_mean")]
    assert not torch.equal(state[means[0]], torch.zeros_like(state[means[0]]))  # first BN learns stats
    for key in means[1:]:
        assert torch.equal(state[key], torch.zeros_like(state[key])), key  # the rest keep their init
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_fp16_without_cuda_fails_before_anything_is_written(make_config, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("fp16 is valid with CUDA")
    with pytest.raises(ConfigError, match="'train.precision'.*fp16.*bf16"):
        train(make_config(tmp_path / "fp16", train={"precision": "fp16"}))
    assert not (tmp_path / "fp16").exists()


def test_batch_that_does_not_split_over_accumulation_is_refused(make_config, tmp_path):
    with pytest.raises(ConfigError, match="train.batch_size"):
        make_config(tmp_path / "x", train={"batch_size": 6, "accumulation_steps": 4})
    with pytest.raises(ConfigError, match="fewer than one step"):
        train(make_config(tmp_path / "y", train={"batch_size": 64}))


def test_bad_video_is_skipped_and_listed_in_the_summary(synthetic_root, make_config, tmp_path):
    import json
    import shutil

    data_root = tmp_path / "data"
    shutil.copytree(synthetic_root, data_root)
    train_ids = [entry["id"] for entry in json.loads((data_root / "train.json").read_text())]
    broken = next((data_root / "videos").glob(f"{train_ids[0]}.*"))
    broken.write_bytes(b"not a video")
    config = make_config(tmp_path / "run", train={"val_interval": 0}, data={
        "root": str(data_root / "videos"), "train_annotations": str(data_root / "train.json"),
        "val_annotations": None, "labels": str(data_root / "labels.json")})
    result = train(config)
    skipped = result.summary["skipped_samples"]
    assert [item["path"] for item in skipped] == [str(broken)]
    assert skipped[0]["reason"] and skipped[0]["count"] >= 1
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["num_skipped"] == sum(item["count"] for item in skipped)
