"""The demo's dataset generation killed with SIGKILL part-way, then run again: the cache holds the
complete dataset, identical to an uninterrupted generation, and the torn attempt is never used."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from videoattn.demo import DemoSettings, ensure_synthetic_dataset

SETTINGS = dict(num_videos=16, video_frames=4, video_size=16, num_frames=4, size=16, base_channels=8, epochs=1,
                batch_size=4, lr=0.1)
SCRIPT = ("import sys\nfrom pathlib import Path\nfrom videoattn.demo import DemoSettings, ensure_synthetic_dataset\n"
          f"ensure_synthetic_dataset(DemoSettings(**{SETTINGS!r}), 0, Path(sys.argv[1]), log=lambda m: None)\n")


def _files(folder: Path) -> dict[str, object]:
    """Every file's bytes; for videos their decoded frames (the muxer stamps each file differently)."""
    from videoattn.data.decoders import PyAVDecoder

    decoder = PyAVDecoder()
    return {str(p.relative_to(folder)): (decoder.read(str(p), lambda n: list(range(n))).tobytes()
                                         if p.suffix == ".webm" else p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_killed_generation_then_rerun_gives_the_same_dataset(tmp_path):
    reference = ensure_synthetic_dataset(DemoSettings(**SETTINGS), 0, tmp_path / "reference", log=lambda m: None)
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
           "VIDEOATTN_FAULT": "synthetic_video:9"}
    # Output to a file, not a pipe: the generator's pool workers, orphaned by the kill, may hold a pipe
    # open for a while after the process is gone.
    with open(tmp_path / "killed.log", "w") as log:
        killed = subprocess.run([sys.executable, "-c", SCRIPT, str(cache)], env=env, stdout=log, stderr=log,
                                timeout=300)
    assert killed.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-2000:]
    assert not [p for p in cache.iterdir() if not p.name.startswith(".")], "a torn dataset was published"
    env.pop("VIDEOATTN_FAULT")
    rerun = subprocess.run([sys.executable, "-c", SCRIPT, str(cache)], env=env, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    (published,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert published.name == reference.name
    assert _files(published) == _files(reference)
