"""Data-parallel scaling on one machine: ``configs/tiny.yaml`` with 1 process vs 2 under torchrun (gloo).

Both runs train the same global batch (16) for ``--epochs`` epochs on the config's synthetic dataset
(generated if missing); each reports training clips/s in its ``summary.json`` (all processes' clips
over the step time). One process uses 2 threads; under torchrun each of the 2 processes uses 1
(OMP_NUM_THREADS=1), so both use the machine's 2 cores. Rounds alternate 1 and 2 processes so the
machine's load hits both alike; the ratio is reported per round.

    python benchmarks/scaling.py [--rounds 2] [--epochs 3] [--out benchmarks/results/train_step.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(processes: int, epochs: int, work_dir: Path) -> dict:
    synthetic = REPO / "work_dirs" / "synthetic"
    overrides = [f"data.{key}={synthetic / name}" for key, name in (
        ("root", "videos"), ("train_annotations", "train.json"), ("val_annotations", "validation.json"),
        ("labels", "labels.json"))]
    overrides += [f"train.work_dir={work_dir}", f"train.epochs={epochs}", "train.val_interval=0"]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                 str(processes)] if processes > 1 else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, 2 // processes)),
           "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [*launcher, "-m", "videoattn", "train", "--config", str(REPO / "configs" / "tiny.yaml"),
               "--no-progress", "--set", *overrides]
    subprocess.run(command, check=True, capture_output=True, text=True, env=env, timeout=1200)
    summary = json.loads((work_dir / "summary.json").read_text())
    return {"processes": processes, "clips_per_second": summary["clips_per_second"],
            "data_wait_fraction": summary["data_wait_fraction"], "world_size": summary["world_size"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default=None, help="JSON file; its 'scaling' section is replaced")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    synthetic = REPO / "work_dirs" / "synthetic"
    if not (synthetic / "train.json").exists():
        from videoattn.data import generate_synthetic

        generate_synthetic(synthetic, num_videos=320, frames=24, size=48)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.rounds):
            one = run(1, args.epochs, Path(tmp) / f"one_{index}")
            two = run(2, args.epochs, Path(tmp) / f"two_{index}")
            rounds.append({"one_process": one, "two_processes": two,
                           "speedup": two["clips_per_second"] / one["clips_per_second"]})
            print(json.dumps(rounds[-1]), file=sys.stderr)
    result = {"config": "configs/tiny.yaml", "backend": "gloo", "epochs": args.epochs, "rounds": rounds,
              "load_average": os.getloadavg()}
    if args.out:
        from videoattn.utils.io import update_json_section

        update_json_section(args.out, "scaling", result)
    else:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
