"""docs/examples/serve_onnx.py runs an exported model with onnxruntime + PyAV + numpy only, and gives
the probabilities ``videoattn predict`` gives (1x1 view) for the same checkpoint, also for a model
exported at another crop size than its config's (``export --size``: the resize follows)."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from videoattn import Predictor
from videoattn.config import load_config
from videoattn.deploy import export_model

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "examples" / "serve_onnx.py"
# Resizing happens (40x56 frames -> shorter side 28 -> 24x24 centre crop), as on real videos.
OVERRIDES = ["data.size=24", "data.scale_size=28", "eval.views=1x1"]
# The same input, reached by `export --size 24` from a config of 32 px crops of a 37 px resize: the
# exported file must record a 28 px resize (24 * 37 / 32), the one predict uses with OVERRIDES.
SIZE_CHANGED = ["data.size=32", "data.scale_size=37", "eval.views=1x1"]


@pytest.mark.parametrize(("config_overrides", "export_size"), [(OVERRIDES, None), (SIZE_CHANGED, 24)],
                         ids=["config-size", "export-size"])
def test_serve_onnx_without_torch_matches_predict(trained, tmp_path, config_overrides, export_size):
    from videoattn.data.synthetic import encode_video

    config_path, checkpoint, _ = trained
    video = tmp_path / "clip.mp4"
    frames = torch.rand(12, 40, 56, 3, generator=torch.Generator().manual_seed(3))
    frames = torch.nn.functional.avg_pool2d(frames.permute(0, 3, 1, 2), 3, 1, 1).permute(0, 2, 3, 1)
    encode_video((frames * 255).to(torch.uint8).numpy(), video, fmt="mp4", fps=12, quality=10)
    model = tmp_path / "model.onnx"
    info = export_model(load_config(config_path, config_overrides), checkpoint, "onnx", model, size=export_size)
    assert (info["metadata"]["size"], info["metadata"]["scale_size"]) == (24, 28)

    # torch and videoattn cannot be imported by the script: it must need neither.
    runner = ("import sys, runpy; sys.modules['torch'] = None; sys.modules['videoattn'] = None; "
              f"sys.argv = ['serve_onnx.py', {str(model)!r}, {str(video)!r}, '--topk', '8', '--json']; "
              f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    served = json.loads(done.stdout)

    predicted = Predictor(config_path, checkpoint, overrides=OVERRIDES, topk=8).predict(video)
    assert [name for name, _ in served] == [item["class"] for item in predicted["top"]]
    assert [p for _, p in served] == pytest.approx([item["probability"] for item in predicted["top"]], abs=1e-4)


def test_serve_onnx_refuses_a_resize_smaller_than_the_crop():
    # files written before export kept the resize consistent with --size: say so instead of feeding
    # the graph an input of the wrong size
    import numpy as np

    script = runpy.run_path(str(SCRIPT))
    meta = {"num_frames": 4, "sampling": "tsn", "frame_interval": 1, "size": 48, "scale_size": 37,
            "mean": [0.5] * 3, "std": [0.25] * 3, "pixel_range": 255}
    frames = np.zeros((8, 40, 56, 3), dtype=np.uint8)
    with pytest.raises(SystemExit, match="resize of 37 px, smaller than its 48 px input crop"):
        script["prepare_clip"](frames, meta)
    clip = script["prepare_clip"](frames, {**meta, "scale_size": 56})
    assert clip.shape == (1, 3, 4, 48, 48)
