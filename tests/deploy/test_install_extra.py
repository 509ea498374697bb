"""``bash scripts/run.sh install EXTRA`` installs an optional extra (e.g. onnx for ``export --format
onnx``) into the project's venv; checked with a stand-in venv whose python records what it is asked."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "run.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _fake_venv(folder: Path) -> tuple[Path, Path]:
    log = folder / "calls.log"
    python = folder / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/usr/bin/env bash\necho "$*" >> {str(log)!r}\nexit 0\n')
    python.chmod(0o755)
    return folder / "venv", log


def _run(venv: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIDEOATTN_VENV": str(venv)}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)


def test_install_extra_installs_it_once(tmp_path):
    venv, log = _fake_venv(tmp_path)
    done = _run(venv, "install", "onnx")
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert "-m pip install --quiet -e .[onnx]" in calls
    assert (venv / ".videoattn-installed").read_text().split()[1:] == ["onnx"]
    assert "installed videoattn[onnx]" in done.stderr
    again = _run(venv, "install", "onnx")  # already there: nothing reinstalled
    assert again.returncode == 0 and log.read_text().splitlines().count("-m pip install --quiet -e .[onnx]") == 1


@pytest.mark.parametrize("args", [("install",), ("install", "onnxx")])
def test_install_without_or_with_an_unknown_extra_lists_the_extras(tmp_path, args):
    venv = tmp_path / "venv"
    done = _run(venv, *args)
    assert done.returncode == 2 and "dev torchcodec dali nvjpeg onnx" in done.stderr and done.stderr.count("\n") == 1
    assert not venv.exists()  # nothing created
