"""``benchmarks/loader_gpu.py`` end to end on CPU (``--device cpu --tiny``), and the SSv2-resolution
``videoattn data synth`` it generates its data with."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from videoattn.cli import main
from videoattn.data import build_dataset
from videoattn.data.synthetic import generate_synthetic, render_video
from videoattn.errors import ConfigError


@pytest.mark.parametrize(("kind", "size", "digest"), [("horizontal", 32, "c1bb91b4bbd443c7"),
                                                      ("rotate", 64, "c73ce72c372ce367")])
def test_square_frames_render_as_before(kind, size, digest):
    """Pixels pinned from the renderer before non-square frames existed (generator version 2)."""
    frames, _ = render_video(kind, np.random.default_rng([3, 7]), 8, size)
    assert hashlib.sha256(frames.tobytes()).hexdigest()[:16] == digest


@pytest.mark.parametrize("kind", ["horizontal", "vertical"])
def test_non_square_frames_move_along_their_own_axis(kind):
    frames, _ = render_video(kind, np.random.default_rng(4), 12, 24, 40)
    assert frames.shape == (12, 24, 40, 3) and frames.dtype == np.uint8
    # the object is where first and last frames differ most: its centre travels along the named axis
    moved = np.abs(frames[-1].astype(int) - frames[0].astype(int)).sum(-1) > 60
    rows, cols = np.nonzero(moved)
    spread_x, spread_y = cols.max() - cols.min(), rows.max() - rows.min()
    assert (spread_x / 40 > spread_y / 24) == (kind == "horizontal")


def test_synth_cli_writes_ssv2_resolution_videos(tmp_path, capsys):
    out = tmp_path / "ssv2like"
    assert main(["data", "synth", "--out", str(out), "--num-videos", "16", "--frames", "12", "--size", "24",
                 "--width", "40", "--format", "mp4"]) == 0
    assert "24x40 px" in capsys.readouterr().out
    settings = json.loads((out / "synthetic.json").read_text())
    assert (settings["size"], settings["width"], settings["frames"]) == (24, 40, 12)
    data = build_dataset("ssv2", root=out / "videos", annotations=out / "train.json", labels=out / "labels.json",
                         video_extension=".mp4", split="train", size=16, num_frames=4)
    data.set_transforms_on("device")  # items are the decoded frames: their size is the video's
    assert tuple(data[0]["video"].shape) == (4, 24, 40, 3)


def test_synth_refuses_odd_width(tmp_path):
    with pytest.raises(ConfigError, match="width must be an even number >= 8.*width=33"):
        generate_synthetic(tmp_path / "odd", num_videos=16, size=24, width=33)
    assert not (tmp_path / "odd").exists()  # refused before anything is written


def _script(*args, cwd):
    repo = Path(__file__).resolve().parents[1]
    # the caller's PYTHONPATH stays after src (a torchvision put there reaches the nvjpeg runs)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(repo / "src"), os.environ.get("PYTHONPATH"))
                                                       if p)}
    return subprocess.run([sys.executable, str(repo / "benchmarks" / "loader_gpu.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_loader_gpu_benchmark_runs_end_to_end_on_cpu(tmp_path):
    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "loader_gpu.json"
    before = results.stat().st_mtime_ns if results.exists() else None
    out = tmp_path / "loader_gpu.json"
    done = _script("--device", "cpu", "--tiny", "--out", str(out), "--work", str(tmp_path / "work"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["complete"] is True
    assert report["machine"]["device"] == "cpu" and report["settings"]["tiny"] is True
    assert report["settings"]["frame_size"] == [24, 32]
    # the data came from `videoattn data synth`, non-square as requested
    assert json.loads((tmp_path / "work" / "synth_webm" / "synthetic.json").read_text())["width"] == 32
    runs = report["runs"]
    decoders = report["settings"]["decoders"]["video"]
    folder_decoders = report["settings"]["decoders"]["frames"]
    # memory + (webm, mp4 per decoder, frames per decoder) x (cpu, device); dali, nvjpeg: device only, no
    # dali mp4 on a CPU; nvjpeg: frame folders only
    dali = int("dali" in decoders)
    nvjpeg = int("nvjpeg" in folder_decoders)
    assert "nvjpeg" not in decoders
    per_model = 1 + 2 * (2 * (len(decoders) - dali) + len(folder_decoders) - dali - nvjpeg) + dali + dali + nvjpeg
    assert len(runs) == 2 * per_model
    for model in ("r2d50", "r2d50_gta"):
        mine = [r for r in runs if r["model"] == model]
        assert [r["source"] for r in mine][0] == "memory" and mine[0]["fraction_of_memory_rate"] == 1.0
        combos = {(r["source"], r["decoder"], r["transforms_on"]) for r in mine[1:]}
        assert {("webm", "pyav", "device"), ("mp4", "pyav", "cpu"), ("frames", "frames", "device")} <= combos
        if dali:  # DALI's CPU backend stands in for the GPU: WebM and JPEG folders, device transforms
            assert {("webm", "dali", "device"), ("frames", "dali", "device")} <= combos
            assert not any(decoder == "dali" and (source == "mp4" or where == "cpu")
                           for source, decoder, where in combos)
        if nvjpeg:  # decode_jpeg on the CPU (libjpeg-turbo) stands in for nvJPEG: folders, device transforms
            assert ("frames", "nvjpeg", "device") in combos
            assert not any(decoder == "nvjpeg" and (source != "frames" or where == "cpu")
                           for source, decoder, where in combos)
        for run in mine:
            assert run["steps_measured"] == 2 and run["clips_per_second"] > 0
            assert 0.0 <= run["data_wait_fraction"] <= 1.0
        for run in mine[1:]:
            rate = run["clips_per_second"] / mine[0]["clips_per_second"]
            assert run["fraction_of_memory_rate"] == pytest.approx(rate)
            assert run["loader_clips_per_second"] > 0 and set(run["loader_clips_per_second_per_worker"]) == {"worker0"}
            assert run["max_peak_host_memory_mib"] > 10
    not_run = {row["decoder"]: row["status"] for row in report["not_run"]}
    assert ("nvjpeg" in not_run) == (not nvjpeg) and ("dali" in not_run) == (not dali)
    assert all(status.startswith("not available: ") for status in not_run.values())
    # CPU numbers never land in the results file
    assert (results.stat().st_mtime_ns if results.exists() else None) == before


def test_loader_gpu_benchmark_refuses_cpu_numbers_in_results(tmp_path):
    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "loader_gpu.json"
    before = results.stat().st_mtime_ns if results.exists() else None
    done = _script("--device", "cpu", "--tiny", "--out", str(results), cwd=tmp_path)
    assert done.returncode == 2 and "holds GPU measurements only" in done.stderr
    assert (results.stat().st_mtime_ns if results.exists() else None) == before


def test_loader_gpu_benchmark_picks_sources_and_refuses_unknown_ones(tmp_path):
    out = tmp_path / "webm.json"
    done = _script("--device", "cpu", "--tiny", "--models", "r2d50", "--sources", "webm", "--out", str(out),
                   "--work", str(tmp_path / "work"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["settings"]["sources"] == ["webm"]
    assert {run["source"] for run in report["runs"]} == {"memory", "webm"}
    assert not (tmp_path / "work" / "synth_mp4").exists()  # only the asked layouts are generated
    bad = _script("--device", "cpu", "--tiny", "--sources", "webm,avi", "--out", str(out), cwd=tmp_path)
    assert bad.returncode == 2 and "--sources: expected some of webm, mp4, frames, got avi" in bad.stderr
