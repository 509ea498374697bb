import json
import os

import pytest

from videoattn.cli import main
from videoattn.demo import DEMO_MODELS, DemoSettings, run_demo, within_pair_accuracy
from videoattn.errors import ConfigError, DataError

TINY = DemoSettings(num_videos=16, video_frames=8, video_size=32, num_frames=4, size=32, base_channels=8,
                    epochs=1, batch_size=8, lr=0.05)


def test_within_pair_accuracy_counts_only_in_pair_predictions():
    # classes 0/1 and 2/3 are twins; class 4 unpaired
    confusion = [[5, 3, 1, 0, 0],
                 [1, 6, 0, 0, 0],
                 [0, 0, 2, 2, 0],
                 [0, 0, 2, 2, 9],
                 [0, 0, 0, 0, 1]]
    assert within_pair_accuracy(confusion, [(0, 1), (2, 3)]) == pytest.approx((5 + 6 + 2 + 2) / (15 + 4 + 4))
    assert within_pair_accuracy([[0, 0], [0, 0]], [(0, 1)]) is None


def test_quick_demo_writes_report_files_and_schema(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOATTN_CACHE", str(tmp_path / "cache"))
    messages = []
    report = run_demo(quick=True, models=["r2d", "gta"], out=str(tmp_path / "out"), settings=TINY,
                      log=messages.append)
    out = tmp_path / "out"
    saved = json.loads((out / "report.json").read_text())
    assert saved["models"] == report["models"]
    assert [m["model"] for m in saved["models"]] == ["r2d", "gta"]
    for entry in saved["models"]:
        assert {"model", "block", "params", "top1", "top5", "train_seconds"} <= set(entry)
        assert entry["block"] == DEMO_MODELS[entry["model"]].block
        assert 0.0 <= entry["top1"] <= entry["top5"] <= 1.0
        assert isinstance(entry["params"], int) and entry["params"] > 0
    assert saved["models"][0]["block"] == "none"
    assert len(saved["class_pairs"]) == 4 and saved["num_classes"] == 8
    for name in ("accuracy.png", "training_curves.png", "gta_temporal_matrices.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text()
    assert "| gta | gta |" in markdown and "![accuracy](accuracy.png)" in markdown
    assert any("generating the synthetic dataset" in m for m in messages)

    # The second run reuses the cached dataset instead of generating it again.
    messages.clear()
    run_demo(quick=True, models=["r2d"], out=str(tmp_path / "out2"), settings=TINY, log=messages.append)
    assert any("using the cached synthetic dataset" in m for m in messages)
    assert not [p for p in os.listdir(tmp_path / "cache") if p.startswith(".")]  # no staging left behind


def test_demo_errors_are_clear(tmp_path, capsys):
    with pytest.raises(ConfigError, match="unknown model\\(s\\) transformer"):
        run_demo(models=["transformer"], out=str(tmp_path), settings=TINY)
    with pytest.raises(DataError, match="expected the Something-Something-v2 layout.*labels.json"):
        run_demo(data=str(tmp_path), models=["r2d"], out=str(tmp_path / "o"), settings=TINY)
    assert main(["demo", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_demo_shows_the_order_gap(tmp_path, monkeypatch):
    """The claim of the demo, measured: order-aware models beat order-blind ones within pairs."""
    monkeypatch.setenv("VIDEOATTN_CACHE", str(tmp_path / "cache"))
    report = run_demo(quick=True, models=["r2d", "nl", "tape", "gta"], out=str(tmp_path / "out"))
    by_model = {m["model"]: m for m in report["models"]}
    for blind in ("r2d", "nl"):
        assert by_model[blind]["within_pair_top1"] < 0.65
    for aware in ("tape", "gta"):
        assert by_model[aware]["top1"] >= 0.75
