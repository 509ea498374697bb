"""Dependency audit (issue 24): deprecations in the project's own calls fail the suite, and the lower
bounds pyproject.toml declares are installed and tested.

``test_oldest_declared_versions`` is slow (it makes a virtual environment and installs packages from
the package index: a few minutes); run it with ``VIDEOATTN_SLOW=1``. It reuses the running
interpreter's torch (the torch wheel is the one download too large for a check) and installs every
other dependency of ``project.dependencies`` and the ``onnx`` extra at exactly its lower bound.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]

# The subset of the suite run with the oldest versions: decoding and data (numpy, PyAV, Pillow,
# PyYAML), a training run with its TensorBoard log and checkpoints (torch, tqdm, tensorboard),
# ONNX export (onnx, onnxruntime, onnxscript), and the plots and t-SNE (matplotlib, scikit-learn).
CORE_SUBSET = [
    "tests/data/test_decoders.py",
    "tests/data/test_decoders_pyav_compat.py",
    "tests/data/test_dataset.py",
    "tests/data/test_transforms.py",
    "tests/engine/test_train_loop.py",
    "tests/deploy/test_export.py",
    "tests/visualize",
]


@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning, FutureWarning])
def test_deprecations_in_the_projects_code_are_errors(category):
    """pyproject.toml's filterwarnings: attributed to a videoattn module -> error; elsewhere -> warning."""
    with pytest.raises(category, match="is deprecated"):
        warnings.warn_explicit("old_api is deprecated", category, "decoders.py", 1, module="videoattn.data.decoders")
    with pytest.warns(category):
        warnings.warn_explicit("old_api is deprecated", category, "core.py", 1, module="numpy.core")
    with pytest.warns(category):  # a module whose name merely starts with the project's is not the project
        warnings.warn_explicit("old_api is deprecated", category, "x.py", 1, module="videoattn_extras.x")


def _lower_bounds() -> dict[str, str]:
    """``{distribution: lowest version}`` of ``project.dependencies`` and the ``onnx`` extra."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounds = {}
    for requirement in project["dependencies"] + project["optional-dependencies"]["onnx"]:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*", requirement)
        assert match, f"pyproject.toml: dependency {requirement!r} has no plain lower bound 'name>=version'"
        bounds[match.group(1).lower()] = match.group(2)
    return bounds


def _run(command: list[str], **options) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **options)
    assert result.returncode == 0, (f"{' '.join(command[:4])} ... failed:\n{result.stdout[-6000:]}\n"
                                    f"{result.stderr[-6000:]}")
    return result


@pytest.mark.slow
@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the oldest declared numpy (1.24) has no wheel for "
                    "Python >= 3.12: the lower bounds are checked on Python 3.10 / 3.11")
@pytest.mark.timeout(1800)
def test_oldest_declared_versions(tmp_path):
    bounds = _lower_bounds()
    torch_bound = bounds.pop("torch")
    torch_version = importlib.metadata.version("torch")
    assert Version(torch_version).release >= Version(torch_bound).release, \
        f"the running torch {torch_version} is older than the declared bound {torch_bound}"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())

    # The running torch, and nothing else of this environment, made visible to the new one.
    torch_dist = importlib.metadata.distribution("torch")
    only_torch = tmp_path / "torch_only"
    only_torch.mkdir()
    tops = {Path(str(f)).parts[0] for f in torch_dist.files or []} - {"..", "bin"}
    for name in tops:
        source = Path(torch_dist.locate_file(name))
        if source.exists():
            (only_torch / name).symlink_to(source)
    (site / "_videoattn_running_torch.pth").write_text(f"{only_torch}\n")

    pins = [f"{name}=={version}" for name, version in sorted(bounds.items())]
    torch_needs = [r for r in importlib.metadata.requires("torch") or [] if "extra ==" not in r]
    _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
          *pins, *torch_needs, "pytest", "pytest-timeout", "pytest-xdist", "hypothesis"])

    installed = json.loads(_run([python, "-c", "import importlib.metadata as m, json; "
                                 f"print(json.dumps({{n: m.version(n) for n in {sorted(bounds)!r}}}))"]).stdout)
    assert {name: Version(v) for name, v in installed.items()} == {name: Version(v) for name, v in bounds.items()}, \
        f"pip installed {installed}, not the lower bounds {bounds}"

    env = {k: v for k, v in os.environ.items() if k not in ("VIDEOATTN_SLOW", "PYTHONPATH")}
    env["PYTHONPATH"] = str(ROOT / "src")
    result = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", *CORE_SUBSET],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"core subset failed with the oldest versions:\n{result.stdout[-8000:]}"
