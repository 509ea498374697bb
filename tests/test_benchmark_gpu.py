"""benchmarks/gpu.py end to end on the CPU at toy sizes (``--device cpu --tiny``), with stand-in
"official" repositories written here (the real ones are fetched by whoever runs it on a GPU)."""

import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

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
    paths = {row["label"]: row for row in report["attention_paths"]}
    assert set(paths) == {f"NL {site} {impl}" for site in ("res3", "res4") for impl in ("explicit", "sdpa")}
    for site in ("res3", "res4"):  # auto's choice is recorded (CPU at 1 clip, 2 threads: the CPU rule's path)
        auto = next(row for row in report["blocks"] if row["label"] == f"NL {site}")
        assert all(auto["ours"][p]["auto_attention"] for p in ("fp32", "fp32_tf32", "bf16"))
        assert all(paths[f"NL {site} sdpa"]["ours"][p]["ms"] > 0 for p in ("fp32", "fp32_tf32", "bf16"))

    models = {row["model"]: row for row in report["models"]}
    for name in ("r2d50", "r2d50_gta", "tsn50_rsa", "bninception_sagsm", "c2d50_bat3d", "slowfast50_gta"):
        assert models[name]["frames_per_s"] > 0 and models[name]["gmacs_per_clip"] > 0
    assert models["tsn50_rsa"]["trunk"] == "tsm50" and models["tsn50_rsa"]["macs_over_trunk"] > 1.0
    assert ("torchvision_resnet50" in models) == (importlib.util.find_spec("torchvision") is not None)

    printed = capsys.readouterr().out
    assert "| NL res3 |" in printed and "| tsn50_rsa |" in printed and printed.strip() == report["markdown"]
    assert "| NL res4 auto |" in printed and "| NL res4 sdpa |" in printed


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
    with pytest.raises(ConfigError, match="unknown module 'bnl'"):
        gpu.parse_official([f"bnl={tmp_path}"])
    with pytest.raises(ConfigError, match="ops/non_local.py"):
        gpu.parse_official([str(tmp_path)])


# Stand-ins with the released constructors' signatures (names and defaults as in the releases; the
# bodies are ours): each records its arguments and checks the layout it is fed.
_STAND_INS = {
    "rnl": ("ops/rnl.py", """
        from torch import nn
        from .depthwise_conv import DepthwiseConv3d  # the release imports its sibling relatively

        CALLS = []

        class NONLocalBlock3D(nn.Module):
            def __init__(self, in_channels, ratio, ks, sub_sample):
                super().__init__()
                CALLS.append(dict(in_channels=in_channels, ratio=ratio, ks=ks, sub_sample=sub_sample))
                self.penta = DepthwiseConv3d(in_channels // ratio, ks)

            def forward(self, x):
                assert x.dim() == 5
                return x * self.penta.scale
    """, {"ops/depthwise_conv.py": """
        import torch
        from torch import nn

        def DepthwiseConv3d(in_channels, ks=[3, 7, 7], stride=1):
            assert isinstance(ks, list)
            module = nn.Module()
            module.scale = nn.Parameter(torch.ones(1))
            return module
    """, "ops/__init__.py": "raise ImportError('the package __init__ must not run')\n"}),
    "bat": ("model_zoo/non_local.py", """
        import torch
        from torch import nn

        CALLS = []

        class BATBlock(nn.Module):
            def __init__(self, in_channels, r=2, s=4, k=4, dropout=0.2, **kwargs):
                super().__init__()
                CALLS.append(dict(in_channels=in_channels, r=r, s=s, k=k, dropout=dropout))
                self.scale = nn.Parameter(torch.ones(1))

            def forward(self, x):
                assert x.dim() == 4
                return x * self.scale
    """, {}),
    "bat3d": ("models/non_local.py", """
        import torch
        from torch import nn

        CALLS = []

        class BATBlock(nn.Module):
            def __init__(self, in_channels, r=2, s=7, ts=4, k=4, tk=1, dropout=0.2, **kwargs):
                super().__init__()
                CALLS.append(dict(in_channels=in_channels, r=r, s=s, ts=ts, k=k, tk=tk, dropout=dropout))
                self.scale = nn.Parameter(torch.ones(1))

            def forward(self, x):
                assert x.dim() == 5
                return x * self.scale
    """, {}),
    "sagsm": ("gsm.py", """
        import torch
        from torch import nn

        CALLS = []

        class GSM(nn.Module):
            def __init__(self, fPlane, num_segments=3):
                super().__init__()
                CALLS.append(dict(fPlane=fPlane, num_segments=num_segments))
                self.scale = nn.Parameter(torch.ones(1))

            def forward(self, x):
                assert x.dim() == 4 and x.shape[0] % CALLS[-1]["num_segments"] == 0
                return x * self.scale
    """, {}),
}


def _write_stand_in(root: Path, name: str) -> Path:
    path, code, siblings = _STAND_INS[name]
    for relative, text in {path: code, **siblings}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(textwrap.dedent(text))
    return root


@pytest.mark.parametrize("name,row_label,expected", [
    ("rnl", "RNL res3 3x7x7", dict(in_channels=512, ratio=2, ks=[3, 7, 7], sub_sample=False)),
    ("rnl", "RNL res4 3x3x3", dict(in_channels=1024, ratio=2, ks=[3, 3, 3], sub_sample=False)),
    ("bat", "BAT 2D res3", dict(in_channels=512, r=2, s=7, k=8, dropout=0.0)),
    ("bat3d", "BAT 3D res4", dict(in_channels=1024, r=2, s=7, ts=8, k=8, tk=4, dropout=0.0)),
    ("sagsm", "SA-GSM C192 28x28", dict(fPlane=192, num_segments=8)),
])
def test_new_official_specs_load_and_build_at_our_rows_configuration(gpu, tmp_path, name, row_label, expected):
    """RNL, BAT (2-D and 3-D) and SA-GSM: the spec finds its file and class, imports it (RNL's relative
    import without running the package's __init__), and builds it with our row's configuration."""
    root = _write_stand_in(tmp_path / name, name)
    assert gpu.parse_official([f"{name}={root}"]) == {name: root}
    assert gpu.parse_official([str(root)]) == {name: root}  # a bare DIR finds it by file and class
    row = next(r for r in gpu.block_rows(False) if r.label == row_label)
    assert row.official == name
    cls = gpu.load_official(name, root)
    assert cls.__name__ == gpu.OFFICIAL[name].cls
    gpu.OFFICIAL[name].build(cls, row.c, 8, dict(row.options))
    assert cls.__init__.__globals__["CALLS"][-1] == expected
    assert not any(key.startswith(f"_official_{name}") for key in sys.modules)  # nothing left registered


def test_new_official_specs_run_in_the_tiny_benchmark(gpu, tmp_path):
    """Every row with an official spec times the stand-in in its own layout (video or frames folded into
    the batch); the two ``gsm.py`` releases are told apart by their class."""
    roots = {name: _write_stand_in(tmp_path / name, name) for name in ("rnl", "bat", "bat3d", "sagsm")}
    official = gpu.parse_official([str(root) for root in roots.values()])
    assert official == roots
    rows = [r for r in gpu.block_rows(True) if r.official in roots]
    assert {r.block for r in rows} == {"rnl", "bat", "bat3d", "sa_gsm"}
    results = gpu.run_blocks(rows, official, torch.device("cpu"), clips=1, frames=4, warmup=0, repeats=1)
    for entry in results:
        assert "error" not in entry["official"], entry
        assert all(entry["official"][p]["ms"] > 0 for p in ("fp32", "fp32_tf32", "bf16")), entry["label"]
    gsm_repo = _stand_in_repos(tmp_path)[1]
    assert gpu.parse_official([str(gsm_repo)]) == {"gsm": gsm_repo}  # gsmModule, not SA-GSM's GSM
    with pytest.raises(ConfigError, match="without class GSM"):
        gpu.parse_official([f"sagsm={gsm_repo}"])


def test_compile_rows_time_eager_and_compiled_steps(gpu, tmp_path, capsys):
    """``--compile`` measures model.compile's gain per preset (here with the fast aot_eager backend, blocks
    and models skipped through a tiny run of only the compile section's preset)."""
    report = gpu.main(["--device", "cpu", "--tiny", "--skip-blocks", "--skip-models", "--compile", "r2d50_gta",
                       "--compile-backend", "aot_eager", "--out", str(tmp_path / "c.json")])
    assert "blocks" not in report and report["complete"] is True
    (row,) = report["compiled"]
    assert row["model"] == "r2d50_gta" and row["backend"] == "aot_eager"
    assert row["eager_step_s"] > 0 and row["compiled_step_s"] > 0 and row["compile_s"] > 0
    assert row["speedup"] == pytest.approx(row["eager_step_s"] / row["compiled_step_s"])
    assert "| r2d50_gta | aot_eager |" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="model.compile_backend"):
        gpu.main(["--device", "cpu", "--tiny", "--skip-models", "--compile", "r2d50", "--compile-backend", "nope",
                  "--out", str(tmp_path / "d.json")])


def test_each_section_is_saved_as_soon_as_it_is_measured(gpu, tmp_path, monkeypatch):
    """A run stopped in a later section (a device session's time limit) keeps the sections before it."""
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt("time limit")

    monkeypatch.setattr(gpu, "run_models", stopped)
    out = tmp_path / "partial.json"
    with pytest.raises(KeyboardInterrupt):
        gpu.main(["--device", "cpu", "--tiny", "--out", str(out)])
    partial = json.loads(out.read_text())
    assert partial["complete"] is False and partial["blocks"] and partial["attention_paths"]
    assert "models" not in partial and "| NL res3 |" in partial["markdown"]
