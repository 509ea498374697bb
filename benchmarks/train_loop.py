"""Training-loop benchmark: engine overhead per step, and clips/s of configs/tiny.yaml.

1. Loop overhead. A no-op model (one linear layer on the clip's mean) and an in-memory dataset make
   the model step and data loading almost free, so what remains is the loop itself. The same steps run
   (a) in a bare ``for batch in loader: forward/backward/step`` loop and (b) through
   ``videoattn.engine.train`` (lr schedule, per-step re-seeding, NaN check, meters, JSONL/TensorBoard
   logging, progress bookkeeping). overhead_per_step = (b - a) / steps, from the step times the
   engine itself records (checkpoint writing at the epoch end and start-up are reported separately).
2. Tiny config. ``configs/tiny.yaml`` on the synthetic dataset (generated if missing): training
   clips/s and the fraction of step time spent waiting for data, as the run summary reports them.

    python benchmarks/train_loop.py [--steps 200] [--tiny-epochs 1] [--out benchmarks/results/train_loop.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]


class NoOpModel(nn.Module):
    """Logits from a linear layer on the clip's mean colour: microseconds of compute."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(3, num_classes)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.fc(video.mean(dim=(2, 3, 4)))


class MemoryDataset(torch.utils.data.Dataset):
    """Fixed random clips held in memory, with the interface the engine expects from a dataset."""

    def __init__(self, num_videos: int, num_classes: int, shape=(3, 4, 16, 16)):
        generator = torch.Generator().manual_seed(0)
        self.videos = torch.randn(num_videos, *shape, generator=generator)
        self.labels = torch.arange(num_videos) % num_classes
        self.classes = [f"class{i}" for i in range(num_classes)]
        self.decoder_backend = "memory"
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, key):
        index = int(key[0]) if isinstance(key, (tuple, list)) else int(key)
        return {"video": self.videos[index], "label": int(self.labels[index]), "index": index, "skipped": []}


def bare_loop(dataset, batch_size: int, steps: int, lr: float) -> list[float]:
    from videoattn.data import build_loader

    torch.manual_seed(0)
    model = NoOpModel(len(dataset.classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    criterion = nn.CrossEntropyLoss()
    loader = build_loader(dataset, batch_size=batch_size, shuffle=True, num_workers=0, drop_last=True)
    times = []
    done = 0
    while done < steps:
        batches = iter(loader)
        while done < steps:
            start = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                break
            loss = criterion(model(batch["video"]), batch["label"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            float(loss.detach())
            times.append(time.perf_counter() - start)
            done += 1
    return times


def engine_loop(dataset, batch_size: int, steps: int, lr: float, work_dir: Path) -> dict:
    import videoattn.engine.trainer as trainer_module
    from videoattn.config import config_from_dict

    steps_per_epoch = len(dataset) // batch_size
    config = config_from_dict({
        "model": {"name": "r2d18"},
        "data": {"root": "memory", "train_annotations": "memory", "num_workers": 0},
        "train": {"work_dir": str(work_dir), "epochs": -(-steps // steps_per_epoch), "batch_size": batch_size,
                  "lr": lr, "weight_decay": 1e-4, "max_steps": steps, "val_interval": 0, "log_interval": 10,
                  "progress": False},
    })
    originals = trainer_module.build_model, trainer_module.build_dataset_for
    trainer_module.build_model = lambda model_config, num_classes, pretrained=True: NoOpModel(num_classes)
    trainer_module.build_dataset_for = lambda config, split, **kwargs: dataset
    try:
        start = time.perf_counter()
        result = trainer_module.train(config)
        total = time.perf_counter() - start
    finally:
        trainer_module.build_model, trainer_module.build_dataset_for = originals
    return {"step_seconds": result.summary["train_seconds"], "steps": result.global_step, "wall_seconds": total}


def tiny_run(epochs: int, work_dir: Path) -> dict:
    from videoattn.config import load_config
    from videoattn.data import generate_synthetic
    from videoattn.engine import train

    config = load_config(REPO / "configs" / "tiny.yaml")
    synthetic = Path(config.data.train_annotations).parent
    if not synthetic.is_absolute():
        synthetic = REPO / synthetic
    if not (synthetic / "train.json").exists():  # the command of the config's header
        generate_synthetic(synthetic, num_videos=320, frames=24, size=48)
    overrides = {"root": str(synthetic / "videos"), "train_annotations": str(synthetic / "train.json"),
                 "val_annotations": str(synthetic / "validation.json"), "labels": str(synthetic / "labels.json")}
    for key, value in overrides.items():
        setattr(config.data, key, value)
    config.train.work_dir = str(work_dir)
    config.train.epochs = epochs
    config.train.progress = False
    config.train.val_interval = 0
    start = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - start
    summary = result.summary
    return {"epochs": epochs, "steps": result.global_step, "batch_size": config.train.batch_size,
            "num_workers": config.data.num_workers, "clips_per_second": summary["clips_per_second"],
            "data_wait_fraction": summary["data_wait_fraction"], "train_seconds": summary["train_seconds"],
            "wall_seconds_including_startup_and_checkpoints": wall,
            "final_train_loss": result.history[-1]["train_loss"] if result.history else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny-epochs", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_loop.json"))
    args = parser.parse_args()

    batch_size = 8
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the no-op model has nothing to parallelise; fewer threads, less noise
    dataset = MemoryDataset(num_videos=batch_size * args.steps, num_classes=8)  # one epoch
    bare, engine = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            times = bare_loop(dataset, batch_size, args.steps, lr=0.01)
            bare.append(sum(times) / len(times))
            run = engine_loop(dataset, batch_size, args.steps, lr=0.01, work_dir=Path(tmp) / f"noop{repeat}")
            engine.append(run["step_seconds"] / run["steps"])
        torch.set_num_threads(threads)
        tiny = tiny_run(args.tiny_epochs, Path(tmp) / "tiny")
    # The fastest repeat is the least disturbed by other processes on a shared machine.
    bare_step, engine_step = min(bare), min(engine)
    result = {
        "benchmark": "train_loop",
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": threads,
                    "python": platform.python_version(), "load_average_at_end": os.getloadavg()},
        "noop_model": {
            "steps": args.steps, "repeats": args.repeats, "batch_size": batch_size,
            "bare_loop_seconds_per_step": bare_step, "engine_seconds_per_step": engine_step,
            "overhead_seconds_per_step": engine_step - bare_step,
            "bare_runs": bare, "engine_runs": engine,
            "note": "fastest of the repeats (mean step time within a repeat), 1 intra-op thread; the "
                    "engine time includes lr schedule, re-seeding, NaN check, meters and "
                    "JSONL/TensorBoard logging every 10 steps",
        },
        "tiny_config": tiny,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"overhead_us_per_step": 1e6 * (engine_step - bare_step),
                      "bare_us_per_step": 1e6 * bare_step, "engine_us_per_step": 1e6 * engine_step,
                      "tiny_clips_per_second": tiny["clips_per_second"],
                      "tiny_data_wait_fraction": tiny["data_wait_fraction"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
