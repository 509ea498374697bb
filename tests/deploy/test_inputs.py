"""What predict reads and how (issue 31 items 7, 8 and "Smaller"; issue 30 "Deployment"): one input
collector and decoder choice for ``predict``, :class:`Predictor` and ``visualize``, no training decode
cache, overrides on a Config object, timeline names unique per input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.engine.conftest import write_config
from videoattn import Predictor
from videoattn.cli import main
from videoattn.config import load_config


def _frames_folder(folder: Path, count: int = 8, seed: int = 0) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    for index in range(1, count + 1):
        pixels = (torch.rand(32, 32, 3, generator=generator) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{index:05d}.jpg")
    return folder


def _config_with(trained, tmp_path, **data) -> Path:
    _, _, config_dict = trained
    changed = {**config_dict, "data": {**config_dict["data"], **data}}
    return write_config(tmp_path / "config.yaml", changed)


def test_predict_never_uses_the_training_decode_cache(trained, synthetic_root, tmp_path):
    from videoattn.data.cache import shared_frame_cache

    _, checkpoint, _ = trained
    config_path = _config_with(trained, tmp_path, options={"cache_decoded": True})
    video = tmp_path / "clip.webm"
    video.write_bytes(sorted((synthetic_root / "videos").iterdir())[0].read_bytes())
    predictor = Predictor(config_path, checkpoint, topk=1)
    result = predictor.predict(video)
    assert result["num_frames"] == 8
    # the whole decoded video is not kept in the process-wide cache the training loader fills
    assert not any(os.path.abspath(video) in key for key in list(shared_frame_cache()._items))
    assert predictor.config.data.options == {"cache_decoded": True}  # the caller's config is unchanged


def test_pyav_config_reads_frame_folders_and_videos(trained, synthetic_root, tmp_path):
    _, checkpoint, _ = trained
    config_path = _config_with(trained, tmp_path, decoder="pyav")
    frames = _frames_folder(tmp_path / "inbox" / "clip_frames")
    video = tmp_path / "inbox" / "clip.webm"
    video.write_bytes(sorted((synthetic_root / "videos").iterdir())[0].read_bytes())
    predictor = Predictor(config_path, checkpoint, topk=1)
    results, skipped = predictor.predict_many([tmp_path / "inbox"])
    assert not skipped, skipped
    assert sorted(r["path"] for r in results) == sorted([str(frames), str(video)])
    out = tmp_path / "cli.json"
    assert main(["predict", str(tmp_path / "inbox"), "--config", str(config_path), "--checkpoint",
                 str(checkpoint), "--out", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert not report["skipped"] and len(report["results"]) == 2


def test_decoder_choice_follows_the_input():
    from videoattn.deploy import decoder_for_input

    assert decoder_for_input("pyav", frames=True) == "auto"
    assert decoder_for_input("torchcodec", frames=True) == "auto"
    assert decoder_for_input("frames", frames=False) == "auto"
    assert decoder_for_input("nvjpeg", frames=False) == "auto"  # a model trained on SSv1 folders scores a video
    assert decoder_for_input("nvjpeg", frames=True) == "nvjpeg"
    assert decoder_for_input("pyav", frames=False) == "pyav"
    assert decoder_for_input("frames", frames=True) == "frames"


def test_predict_many_on_a_folder_of_videos_equals_the_cli(trained, synthetic_root, tmp_path):
    config_path, checkpoint, _ = trained
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    videos = sorted((synthetic_root / "videos").iterdir())[:3]
    targets = [folder / videos[0].name, folder / videos[1].name, folder / "sub" / videos[2].name]
    for video, target in zip(videos, targets):
        target.write_bytes(video.read_bytes())
    (tmp_path / "empty").mkdir()
    predictor = Predictor(config_path, checkpoint, topk=2)
    results, skipped = predictor.predict_many([folder, tmp_path / "empty"])
    assert sorted(r["path"] for r in results) == sorted(str(t) for t in targets)
    assert skipped == [{"path": str(tmp_path / "empty"),
                        "reason": "no video file or frame folder found in this folder"}]
    out = tmp_path / "cli.json"
    assert main(["predict", str(folder), "--config", str(config_path), "--checkpoint", str(checkpoint),
                 "--topk", "2", "--out", str(out), "--no-progress"]) == 0
    cli = {r["path"]: r["top"] for r in json.loads(out.read_text())["results"]}
    assert cli == {r["path"]: r["top"] for r in results}
    from videoattn.errors import DataError

    with pytest.raises(DataError, match="names 3 videos, not one"):
        predictor.predict(folder)


def test_predictor_applies_overrides_to_a_config_object(trained):
    from videoattn.visualize.loading import resolve_config

    config_path, checkpoint, _ = trained
    config = load_config(config_path)
    predictor = Predictor(config, checkpoint, overrides=["eval.views=2x3", "data.size=24"])
    assert predictor.views == "2x3" and predictor.config.data.size == 24
    assert config.data.size == 32  # the caller's object is not modified
    assert resolve_config(config, ["data.size=24"]).data.size == 24


def test_timelines_of_same_named_videos_do_not_overwrite_each_other(trained, tmp_path):
    from videoattn.data.synthetic import encode_video

    config_path, checkpoint, _ = trained
    generator = torch.Generator().manual_seed(5)
    for folder in ("a", "b"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        frames = (torch.rand(40, 32, 32, 3, generator=generator) * 255).to(torch.uint8).numpy()
        encode_video(frames, tmp_path / "in" / folder / "1.webm", fmt="webm", fps=10)
    out = tmp_path / "out" / "out.json"
    assert main(["predict", str(tmp_path / "in" / "a" / "1.webm"), str(tmp_path / "in" / "b" / "1.webm"),
                 "--config", str(config_path), "--checkpoint", str(checkpoint), "--window", "16", "--long", "24",
                 "--out", str(out), "--no-progress"]) == 0
    timelines = [Path(r["timeline"]) for r in json.loads(out.read_text())["results"]]
    assert len(set(timelines)) == 2 and all(t.is_file() for t in timelines)
    assert sorted(t.relative_to(out.parent).as_posix() for t in timelines) == ["a/1.webm.timeline.png",
                                                                               "b/1.webm.timeline.png"]
