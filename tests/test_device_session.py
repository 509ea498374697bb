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
    assert [line.split()[0] for line in lines[1:]] == ["cuda-tests", "gpu", "loader"]  # compile: on request
    gpu = next(line for line in lines if line.split()[0] == "gpu")
    assert f"--official rnl={tmp_path / 'rnl'}" in gpu and f"--official tsm={tmp_path / 'tsm'}" in gpu
    assert "benchmarks/gpu.py" in gpu and "--compile" not in gpu
    compile_stage = _run("--dry-run", "--stages", "compile").stdout.splitlines()[1]
    assert "--skip-blocks --skip-models --compile r2d50,r2d50_gta" in compile_stage
    only = _run("--dry-run", "--stages", "loader")
    assert [line.split()[0] for line in only.stdout.splitlines()[1:]] == ["loader"]


def test_bad_usage_is_one_line_and_exit_2(tmp_path):
    for args, words in ((["--stages", "gpu,nope"], "unknown stage 'nope'"),
                        (["--official", str(tmp_path / "missing")], "is not a directory"),
                        (["--frobnicate"], "unknown argument '--frobnicate'")):
        result = _run(*args)
        assert result.returncode == 2 and words in result.stderr and len(result.stderr.splitlines()) == 1


def test_stage_official_copies_the_specs_folder_at_the_fetched_commit(tmp_path):
    """benchmarks/stage_official.py: the spec file's folder (its sibling imports, not the package's
    __init__) at HEAD of a fetched repository, plus a SOURCE line naming repository and commit."""
    import sys

    repo = tmp_path / "tsm"
    (repo / "ops").mkdir(parents=True)
    (repo / "ops" / "non_local.py").write_text("class NONLocalBlock3D:\n    pass\n")
    (repo / "ops" / "helper.py").write_text("X = 1\n")
    (repo / "ops" / "__init__.py").write_text("import training_code\n")
    (repo / "ops" / "notes.txt").write_text("not python\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "release"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (repo / "ops" / "helper.py").write_text("X = 2  # uncommitted: not staged\n")
    script = SCRIPT.parents[1] / "benchmarks" / "stage_official.py"
    out = tmp_path / "official"
    result = subprocess.run([sys.executable, str(script), "--repo", f"nl={repo}", "--out", str(out)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "nl/SOURCE", "nl/ops/helper.py", "nl/ops/non_local.py"]
    assert (out / "nl" / "ops" / "helper.py").read_text() == "X = 1\n"
    assert (out / "nl" / "SOURCE").read_text() == f"mit-han-lab/temporal-shift-module {commit}\n"
    bad = subprocess.run([sys.executable, str(script), "--repo", f"bnl={repo}", "--out", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown spec 'bnl'" in bad.stderr
