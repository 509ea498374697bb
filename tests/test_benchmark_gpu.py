"""benchmarks/gpu.py end to end on the CPU at toy sizes (``--device cpu --tiny``), with stand-in
"official" repositories written here (the real ones are fetched by whoever runs it on a GPU)."""

import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import pytest

from videoattn.errors import ConfigError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def gpu():
    spec = importlib.util.spec_from_file_location("benchmark_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def _stand_in_repos(tmp_path: Path) -> tuple[Path, Path]:
    """A repository with an ``ops/non_local.py`` NL-like module (a helper import beside it, as released
    code has), and one whose ``gsm.py`` module fails when run, as CUDA-only code does on a CPU."""
    nl_repo = tmp_path / "nl_repo"
    (nl_repo / "ops").mkdir(parents=True)
    (nl_repo / "ops" / "helper.py").write_text("SCALE = 0.5\n")
    (nl_repo / "ops" / "non_local.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn
        from helper import SCALE

        class NONLocalBlock3D(nn.Module):
            def __init__(self, in_channels):
                super().__init__()
                self.proj = nn.Conv3d(in_channels, in_channels, 1)

            def forward(self, x):
                n, c, t, h, w = x.shape
                tokens = self.proj(x).flatten(2)
                attention = torch.softmax(tokens.transpose(1, 2) @ tokens * SCALE, dim=-1)
                return x + (tokens @ attention.transpose(1, 2)).view(n, c, t, h, w)
    """))
    gsm_repo = tmp_path / "gsm_repo"
    gsm_repo.mkdir()
    (gsm_repo / "gsm.py").write_text(textwrap.dedent("""
        from torch import nn

        class gsmModule(nn.Module):
            def __init__(self, fPlane, num_segments=3):
                super().__init__()
                self.num_segments = num_segments

            def forward(self, x):
                assert x.dim() == 4 and x.shape[0] % self.num_segments == 0
                raise RuntimeError("Torch not compiled with CUDA enabled")
    """))
    return nl_repo, gsm_repo


def test_tiny_cpu_run_times_every_row_and_writes_json(gpu, tmp_path, capsys):
    nl_repo, gsm_repo = _stand_in_repos(tmp_path)
    out = tmp_path / "gpu_cpu.json"
    report = gpu.main(["--device", "cpu", "--tiny", "--official", f"nl={nl_repo}", "--official", str(gsm_repo),
                       "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    labels = [row["label"] for row in report["blocks"]]
    for expected in ("NL res3", "NL res4", "GTA res3", "GTA res4", "DNL res3", "DNL res4", "RNL res4 3x3x3",
                     "BAT 2D res3", "BAT 3D res4", "GSM C16 8x8", "SA-GSM C32 4x4", "RSA C16 8x8",
                     "conv3d 3x3x3 C16 8x8"):
        assert expected in labels, expected
    assert len(labels) == 20
    for row in report["blocks"]:
        assert set(row["ours"]) == {"fp32", "fp32_tf32", "bf16"}
        assert all(row["ours"][p]["ms"] > 0 for p in row["ours"]), row["label"]
    nl_rows = [row for row in report["blocks"] if row["official"] and row["official"]["name"] == "nl"]
    assert len(nl_rows) == 6 and all(row["official"]["fp32"]["ms"] > 0 for row in nl_rows)  # NL, GTA, DNL x 2
    gsm_rows = [row for row in report["blocks"] if row["block"] == "gsm"]
    assert all("CUDA" in row["official"]["error"] for row in gsm_rows)
    assert all(row["official"] is None for row in report["blocks"] if row["block"] == "rsa")  # not given

    models = {row["model"]: row for row in report["models"]}
    for name in ("r2d50", "r2d50_gta", "tsn50_rsa", "bninception_sagsm", "c2d50_bat3d", "slowfast50_gta"):
        assert models[name]["frames_per_s"] > 0 and models[name]["gmacs_per_clip"] > 0
    assert models["tsn50_rsa"]["trunk"] == "tsm50" and models["tsn50_rsa"]["macs_over_trunk"] > 1.0
    assert ("torchvision_resnet50" in models) == (importlib.util.find_spec("torchvision") is not None)

    printed = capsys.readouterr().out
    assert "| NL res3 |" in printed and "| tsn50_rsa |" in printed and printed.strip() == report["markdown"]


def test_fused_kernel_rows_follow_their_torch_rows(gpu):
    plain = gpu.block_rows(False)
    fused = gpu.block_rows(False, fused=True)
    assert [row.label for row in plain] == [row.label for row in fused if not row.label.endswith(" triton")]
    twins = [row for row in fused if row.label.endswith(" triton")]
    assert {row.block for row in twins} == {"gta", "gsm", "sa_gsm", "rsa"} and len(twins) == 8
    for row in twins:
        torch_row = fused[fused.index(row) - 1]
        assert torch_row.label + " triton" == row.label and torch_row.options == {**row.options, "kernel": "torch"}
        assert row.options["kernel"] == "triton" and row.official is None
    assert "GSM C192 28x28 triton" in [row.label for row in twins]


def test_cpu_numbers_never_go_to_gpu_json_and_bad_official_paths_are_named(gpu, tmp_path):
    with pytest.raises(SystemExit, match="GPU numbers"):
        gpu.main(["--device", "cpu", "--tiny", "--out", str(gpu.DEFAULT_OUTPUT)])
    with pytest.raises(ConfigError, match="is not a directory"):
        gpu.parse_official([f"nl={tmp_path / 'missing'}"])
    with pytest.raises(ConfigError, match="unknown module 'bat'"):
        gpu.parse_official([f"bat={tmp_path}"])
    with pytest.raises(ConfigError, match="ops/non_local.py"):
        gpu.parse_official([str(tmp_path)])
