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
    assert "| gta | GTA | gta |" in markdown and "![accuracy](accuracy.png)" in markdown
    assert any("generating the synthetic dataset" in m for m in messages)

    # The second run reuses the cached dataset instead of generating it again.
    messages.clear()
    run_demo(quick=True, models=["r2d"], out=str(tmp_path / "out2"), settings=TINY, log=messages.append)
    assert any("using the cached synthetic dataset" in m for m in messages)
    assert not [p for p in os.listdir(tmp_path / "cache") if p.startswith(".")]  # no staging left behind
    from videoattn.utils.io import current_umask

    (dataset,) = os.listdir(tmp_path / "cache")  # a folder with the usual permissions, not mkdtemp's 0700
    assert os.stat(tmp_path / "cache" / dataset).st_mode & 0o777 == 0o777 & ~current_umask()


def test_demo_errors_are_clear(tmp_path, capsys):
    with pytest.raises(ConfigError, match="unknown model\\(s\\) transformer"):
        run_demo(models=["transformer"], out=str(tmp_path), settings=TINY)
    with pytest.raises(DataError, match="expected the Something-Something-v2 layout.*labels.json"):
        run_demo(data=str(tmp_path), models=["r2d"], out=str(tmp_path / "o"), settings=TINY)
    assert main(["demo", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_demo_shows_the_order_gap(tmp_path, monkeypatch):
    """The claim of the demo, measured on the default models: every order-aware model is at least 20
    points above every order-blind one within pairs (the README's conclusion, at the --quick size)."""
    monkeypatch.setenv("VIDEOATTN_CACHE", str(tmp_path / "cache"))
    report = run_demo(quick=True, out=str(tmp_path / "out"))
    rows = report["models"]
    blind = max(r["within_pair_top1"] for r in rows if not r["order_aware"])
    aware = min(r["within_pair_top1"] for r in rows if r["order_aware"])
    assert blind < 0.6 and aware - blind >= 0.20, rows


# --------------------------------------------------------------------------------------------------
# Class pairs inferred from names, and the report's explanation on the user's own data


def test_class_pairs_inferred_from_real_ssv2_names():
    from videoattn.demo import infer_class_pairs

    classes = [
        "Moving something from left to right",           # 0
        "Moving something from right to left",           # 1
        "Pushing something from left to right",          # 2
        "Pushing something from right to left",          # 3
        "Pulling something from left to right",          # 4
        "Pulling something from right to left",          # 5
        "Opening something",                             # 6
        "Closing something",                             # 7
        "Covering something with something",             # 8
        "Uncovering something",                          # 9
        "Moving something up",                           # 10
        "Moving something down",                         # 11
        "Putting something on a surface",                # 12
        "Moving something towards the camera",           # 13
        "Moving something away from the camera",         # 14
        "Moving something and something closer to each other",    # 15
        "Moving something and something away from each other",   # 16
        "Putting something behind something",            # 17
        "Putting something in front of something",      # 18
        "Folding something",                             # 19
        "Unfolding something",                           # 20
        "Turning the camera left while filming something",    # 21
        "Turning the camera right while filming something",   # 22
        "Picking something up",                          # 23
    ]
    pairs = infer_class_pairs(classes)
    assert sorted(pairs) == [(0, 1), (2, 3), (4, 5), (6, 7), (10, 11), (13, 14), (15, 16), (17, 18),
                             (19, 20), (21, 22)]
    # Exact names only: "Uncovering something" is not "Covering something with something" with one word
    # swapped; "Putting something on a surface" and "Picking something up" have no twin. Pushing
    # from left to right pairs with its mirror, not with pulling (left/right comes first).
    paired = {c for pair in pairs for c in pair}
    assert {8, 9, 12, 23}.isdisjoint(paired)
    assert infer_class_pairs(["Opening something", "closing SOMETHING"]) == [(0, 1)]  # case-insensitive
    assert infer_class_pairs(["abseiling", "archery"]) == []


def test_inferred_pairs_match_the_synthetic_generator():
    from videoattn.data import synthetic_classes
    from videoattn.demo import infer_class_pairs

    classes = [name for name, _ in synthetic_classes(5)]  # twins adjacent: labels 2p and 2p+1
    assert infer_class_pairs(classes) == [(2 * p, 2 * p + 1) for p in range(5)]


def test_report_explains_the_numbers_on_user_data():
    from videoattn.demo import render_markdown

    report = {"dataset": "/data/mine", "synthetic": False, "num_classes": 10, "num_val_videos": 200,
              "majority_share": 0.15, "class_pairs": [["Opening something", "Closing something"]],
              "pairs_source": "class names", "settings": {}, "figures": {}, "total_seconds": 1.0,
              "models": [
                  {"model": "r2d", "block": "none", "params": 10, "top1": 0.30, "top5": 0.70,
                   "within_pair_top1": 0.52, "train_seconds": 3},
                  {"model": "gta", "block": "gta", "params": 12, "top1": 0.42, "top5": 0.80,
                   "within_pair_top1": 0.81, "train_seconds": 4}]}
    text = render_markdown(report)
    meaning = text.split("## What it means", 1)[1].split("## Figures", 1)[0]
    assert "10.0%" in meaning and "50.0%" in meaning  # chance for top-1 and for top-5
    assert "15.0%" in meaning  # always answering the most frequent class
    assert "200 validation videos" in meaning
    assert "gta" in meaning and "12.0 points" in meaning and "r2d" in meaning  # best and by how much
    assert "Opening something" in meaning and "within-pair" in meaning.lower()
    assert "within noise)" not in meaning
    report["models"][1]["top1"] = 0.33  # 3 points ahead with 200 videos: not a real difference
    assert "3.0 points ahead of r2d (30.0%) (within noise)" in render_markdown(report)


def test_demo_on_user_data_infers_pairs_and_explains(tmp_path, monkeypatch):
    from videoattn.data import generate_synthetic

    data = generate_synthetic(tmp_path / "mine", num_videos=16, frames=8, size=32, seed=1)
    (data / "synthetic.json").unlink()  # now it is just a dataset in SSv2 layout
    report = run_demo(data=str(data), models=["r2d"], out=str(tmp_path / "out"), settings=TINY,
                      log=lambda message: None)
    assert report["synthetic"] is False and len(report["class_pairs"]) == 4
    assert report["pairs_source"] == "class names"
    assert report["models"][0]["within_pair_top1"] is not None
    markdown = (tmp_path / "out" / "report.md").read_text()
    meaning = markdown.split("## What it means", 1)[1].split("## Figures", 1)[0]
    assert "chance" in meaning and "12.5%" in meaning and "within-pair" in meaning.lower()
    assert "r2d" in meaning


def test_demo_decodes_each_video_once_in_process_for_its_loader_workers(tmp_path, monkeypatch):
    # The demo trains with one loader worker per model; the worker forked for each model must find
    # every video already decoded in the frame cache it inherits, so it never decodes again.
    from videoattn.data import cache as cache_module
    from videoattn.demo import _config_for, _dataset_files, ensure_synthetic_dataset, warm_decoded_cache
    from videoattn.engine.builders import build_dataset_for

    monkeypatch.setenv("VIDEOATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache_module, "_SHARED", None)  # a fresh process-wide cache
    files = _dataset_files(ensure_synthetic_dataset(TINY, 0, log=lambda _: None))
    config = _config_for(DEMO_MODELS["r2d"], TINY, files, tmp_path / "run", 0)
    assert config.data.num_workers >= 1 and config.data.options["cache_decoded"]
    warm_decoded_cache(config)
    cache = cache_module.shared_frame_cache()
    videos = sum(len(build_dataset_for(config, split)) for split in ("train", "val"))
    assert len(cache) == videos and cache.misses == videos
    warm_decoded_cache(config)  # a second pass (what a forked worker does) only hits
    assert cache.misses == videos and cache.hits >= videos
