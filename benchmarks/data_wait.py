"""The training loader's wait as a fraction of step time, as the engine's run summary reports it.

Cases (each one ``videoattn.engine.train`` run; ``data_wait_fraction`` and ``clips_per_second`` are
read from its summary):

* ``tiny``: ``configs/tiny.yaml`` on its synthetic dataset (generated here if missing), as shipped
  and with the other data settings compared (decoding every epoch vs ``cache_decoded``, 1 or 2
  workers), ``--tiny-epochs`` epochs;
* ``demo``: the demo's settings (``DemoSettings.preset(quick=True)``: R2D-18 with 16 base channels,
  32 px, batch 16, num_workers 0, ``cache_decoded``), ``--tiny-epochs`` epochs;
* ``r2d50``: R2D-50 at 8 x 224, batch 2, 2 workers, fp32, on 320x240 h264 mp4 videos (10 s, 30 fps,
  written here), ``--r2d50-steps`` steps.

    python benchmarks/data_wait.py [--cases tiny,demo,r2d50] [--out benchmarks/results/train_step.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))


def _run(config) -> dict:
    from videoattn.engine import train

    start = time.perf_counter()
    result = train(config)
    summary = result.summary
    return {"steps": result.global_step, "clips_per_second": summary["clips_per_second"],
            "data_wait_fraction": summary["data_wait_fraction"], "train_seconds": summary["train_seconds"],
            "wall_seconds": time.perf_counter() - start,
            "per_epoch_data_wait_fraction": [record["data_wait_fraction"] for record in result.history]}


def tiny_cases(epochs: int, work: Path) -> dict:
    from videoattn.config import load_config
    from videoattn.data import generate_synthetic

    synthetic = REPO / "work_dirs" / "synthetic"
    if not (synthetic / "train.json").exists():
        generate_synthetic(synthetic, num_videos=320, frames=24, size=48)
    variants = {
        "decode_every_epoch_workers1": {"num_workers": 1, "options": {"cache_decoded": False}},
        "decode_every_epoch_workers2": {"num_workers": 2, "options": {"cache_decoded": False}},
        "cache_decoded_workers0": {"num_workers": 0, "options": {"cache_decoded": True}},
        "cache_decoded_workers1": {"num_workers": 1, "options": {"cache_decoded": True}},
        "shipped": {},
    }
    out = {}
    for name, data in variants.items():
        config = load_config(REPO / "configs" / "tiny.yaml")
        for key in ("root", "train_annotations", "val_annotations", "labels"):
            setattr(config.data, key, str(REPO / getattr(config.data, key)))
        for key, value in data.items():
            setattr(config.data, key, value)
        config.train.work_dir = str(work / f"tiny_{name}")
        config.train.epochs = epochs
        config.train.progress = False
        config.train.val_interval = 0
        out[name] = {"num_workers": config.data.num_workers, "data_options": dict(config.data.options),
                     **_run(config)}
        print(name, json.dumps(out[name]), file=sys.stderr)
    return out


def demo_case(epochs: int, work: Path) -> dict:
    import dataclasses

    from videoattn.demo import DEMO_MODELS, DemoSettings, _config_for, _dataset_files, ensure_synthetic_dataset

    settings = dataclasses.replace(DemoSettings.preset(quick=True), epochs=epochs)
    files = _dataset_files(ensure_synthetic_dataset(settings, 0, cache_dir=work / "demo_data", log=lambda m: None))
    out = {}
    for key in ("r2d", "gta"):
        config = _config_for(DEMO_MODELS[key], settings, files, work / f"demo_{key}", 0)
        config.train.val_interval = 0
        out[key] = {"num_workers": config.data.num_workers, **_run(config)}
        print("demo", key, json.dumps(out[key]), file=sys.stderr)
    return out


def r2d50_case(steps: int, work: Path) -> dict:
    from data import _write_media
    from videoattn.config import config_from_dict

    media = work / "media"
    media.mkdir(exist_ok=True)
    paths = _write_media(media, 8, 300, 30)["mp4"]
    listing = media / "train.txt"
    listing.write_text("".join(f"{os.path.basename(p)} {i % 4}\n" for i, p in enumerate(paths)))
    config = config_from_dict({
        "model": {"name": "r2d50", "num_frames": 8, "num_classes": 4},
        "data": {"format": "video_list", "root": str(media), "train_annotations": str(listing), "size": 224,
                 "num_workers": 2},
        "train": {"work_dir": str(work / "r2d50"), "epochs": 1, "batch_size": 2, "max_steps": steps,
                  "val_interval": 0, "progress": False, "lr": 0.01}})
    out = {"videos": "h264 mp4 320x240, 300 frames, keyframe every 30", "batch_size": 2, "num_workers": 2,
           **_run(config)}
    print("r2d50", json.dumps(out), file=sys.stderr)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="tiny,demo,r2d50")
    parser.add_argument("--tiny-epochs", type=int, default=3)
    parser.add_argument("--r2d50-steps", type=int, default=4)
    parser.add_argument("--section", default="data_wait", help="key of the output JSON to write")
    parser.add_argument("--out", default=None, help="JSON file; its --section key is replaced")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    cases = args.cases.split(",")
    result: dict = {"load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "tiny" in cases:
            result["tiny"] = tiny_cases(args.tiny_epochs, work)
        if "demo" in cases:
            result["demo"] = demo_case(args.tiny_epochs, work)
        if "r2d50" in cases:
            result["r2d50_8x224"] = r2d50_case(args.r2d50_steps, work)
    result["load_average_after"] = os.getloadavg()
    if args.out:
        from videoattn.utils.io import update_json_section

        update_json_section(args.out, args.section, result)
    else:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
