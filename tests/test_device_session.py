"""scripts/device_session.sh, the one prepared run for a lent GPU machine: its plan and its refusals (the
stages themselves need a GPU)."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device_session.sh"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_dry_run_lists_the_stages_and_passes_each_official_repository(tmp_path):
    for name in ("tsm", "rnl"):
        (tmp_path / name / "ops").mkdir(parents=True)
    result = _run("--dry-run", "--official", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["cuda-tests", "gpu", "loader"]
    gpu = next(line for line in lines if line.split()[0] == "gpu")
    assert f"--official {tmp_path / 'rnl'}" in gpu and f"--official {tmp_path / 'tsm'}" in gpu
    assert "--compile r2d50,r2d50_gta" in gpu and "benchmarks/gpu.py" in gpu
    only = _run("--dry-run", "--stages", "loader")
    assert [line.split()[0] for line in only.stdout.splitlines()[1:]] == ["loader"]


def test_bad_usage_is_one_line_and_exit_2(tmp_path):
    for args, words in ((["--stages", "gpu,nope"], "unknown stage 'nope'"),
                        (["--official", str(tmp_path / "missing")], "is not a directory"),
                        (["--frobnicate"], "unknown argument '--frobnicate'")):
        result = _run(*args)
        assert result.returncode == 2 and words in result.stderr and len(result.stderr.splitlines()) == 1
