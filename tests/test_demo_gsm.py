"""``videoattn demo --models gsm,sa_gsm``: the gate-shift contestants train and report through the demo."""

import json

from videoattn.demo import DEMO_MODELS, DemoSettings, run_demo

TINY = DemoSettings(num_videos=16, video_frames=8, video_size=32, num_frames=4, size=32, base_channels=8,
                    epochs=1, batch_size=8, lr=0.05)


def test_gsm_and_sa_gsm_run_in_the_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOATTN_CACHE", str(tmp_path / "cache"))
    run_demo(quick=True, models=["gsm", "sa_gsm"], out=str(tmp_path / "out"), settings=TINY, log=lambda m: None)
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [(m["model"], m["block"]) for m in saved["models"]] == [("gsm", "gsm"), ("sa_gsm", "sa_gsm")]
    assert saved["models"][1]["params"] > saved["models"][0]["params"]
    for key in ("gsm", "sa_gsm"):
        (insertion,) = DEMO_MODELS[key].options["blocks"]
        assert insertion["position"] == "before_conv1" and insertion["plan"] == "all"
