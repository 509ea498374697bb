"""Errors a user meets with bad data: one readable line, and a wrong ``data.root`` found before starting."""

import json
import shutil

import pytest

from videoattn.cli import main
from videoattn.engine import evaluate, train
from videoattn.errors import DataError


@pytest.fixture
def corrupt_train_video(synthetic_root, tmp_path):
    data_root = tmp_path / "data"
    shutil.copytree(synthetic_root, data_root)
    train_ids = [entry["id"] for entry in json.loads((data_root / "train.json").read_text())]
    broken = next((data_root / "videos").glob(f"{train_ids[0]}.*"))
    broken.write_bytes(b"not a video")
    return data_root, broken


def _data(data_root, **extra):
    return {"root": str(data_root / "videos"), "train_annotations": str(data_root / "train.json"),
            "val_annotations": None, "labels": str(data_root / "labels.json"), **extra}


def test_error_in_a_loader_worker_is_the_original_one_line_error(corrupt_train_video, make_config,
                                                                 make_config_file, tmp_path, capsys):
    data_root, broken = corrupt_train_video
    data = _data(data_root, strict=True, num_workers=1)
    with pytest.raises(DataError) as caught:
        train(make_config(tmp_path / "api", data=data, train={"val_interval": 0, "epochs": 1}))
    message = str(caught.value)
    assert str(broken) in message and "\n" not in message and "Traceback" not in message

    config_path = make_config_file(tmp_path / "c.yaml", tmp_path / "cli", data=data,
                                   train={"val_interval": 0, "epochs": 1})
    code = main(["train", "--config", str(config_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("videoattn train: error: ") and str(broken) in err


def test_wrong_data_root_is_found_before_training_with_the_likely_root(synthetic_root, make_config_file,
                                                                       tmp_path, capsys):
    # A new user's mistake: the videos are under ROOT/videos, the config says ROOT.
    config_path = make_config_file(tmp_path / "c.yaml", tmp_path / "run",
                                   data={"root": str(synthetic_root)})
    code = main(["train", "--config", str(config_path)])
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2 and err.count("\n") == 1, err
    assert "16 of 16 files" in err and "missing" in err  # every training video
    assert f"data.root={synthetic_root / 'videos'}" in err
    assert "starting" not in captured.out + err and not (tmp_path / "run" / "last.pt").exists()


def test_wrong_data_root_is_found_before_evaluation(synthetic_root, make_config, tmp_path):
    from videoattn.engine.builders import build_model
    from videoattn.engine.checkpoint import save_checkpoint

    config = make_config(tmp_path / "run", data={"root": str(synthetic_root)})
    model = build_model(config.model, 8, pretrained=False)
    save_checkpoint({"model": model.state_dict(), "config": config.to_dict(), "num_classes": 8},
                    tmp_path / "model.pt")
    with pytest.raises(DataError, match="missing") as caught:
        evaluate(config, [str(tmp_path / "model.pt")])
    assert str(synthetic_root / "videos") in str(caught.value)


class Records:
    """The one attribute check_media_present reads from a dataset."""

    def __init__(self, records):
        self.records = records


def test_check_media_present_counts_a_sample_and_stays_quiet_when_all_exist(tmp_path):
    from videoattn.data.annotations import VideoRecord
    from videoattn.engine.preflight import check_media_present

    (tmp_path / "here").mkdir()
    present = []
    for i in range(5):
        (tmp_path / "here" / f"{i}.mp4").write_bytes(b"x")
        present.append(VideoRecord(path=str(tmp_path / "here" / f"{i}.mp4"), label=0))
    check_media_present(Records(present), str(tmp_path / "here"), "data.train_annotations")
    missing = [VideoRecord(path=str(tmp_path / "here" / f"gone{i}.mp4"), label=0) for i in range(3000)]
    with pytest.raises(DataError, match=r"of 2000 sampled .*more than data.missing_tolerance=0.05") as caught:
        check_media_present(Records(present + missing), str(tmp_path / "here"), "data.train_annotations",
                            sample_size=2000, tolerance=0.05)
    assert "\n" not in str(caught.value)


def test_a_few_really_missing_videos_warn_within_the_tolerance(tmp_path, capsys):
    """Kinetics-style: 1 of 40 videos is gone for good (nowhere near the root): warn, don't stop."""
    from videoattn.data.annotations import VideoRecord
    from videoattn.engine.preflight import check_media_present

    (tmp_path / "root").mkdir()
    records = []
    for i in range(40):
        path = tmp_path / "root" / f"{i}.mp4"
        if i != 7:
            path.write_bytes(b"x")
        records.append(VideoRecord(path=str(path), label=0))
    assert check_media_present(Records(records), str(tmp_path / "root"), "data.train_annotations",
                               tolerance=0.05) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 of 40 files" in err and "7.mp4" in err and "within data.missing_tolerance" in err
    with pytest.raises(DataError, match="more than data.missing_tolerance=0"):
        check_media_present(Records(records), str(tmp_path / "root"), "data.train_annotations", tolerance=0.0)


def test_missing_videos_within_tolerance_train_and_are_left_out_of_evaluation(synthetic_root, make_config,
                                                                              tmp_path):
    data_root = tmp_path / "data"
    shutil.copytree(synthetic_root, data_root)
    val_ids = [entry["id"] for entry in json.loads((data_root / "validation.json").read_text())]
    gone = next((data_root / "videos").glob(f"{val_ids[0]}.*"))
    gone.unlink()
    data = {"root": str(data_root / "videos"), "train_annotations": str(data_root / "train.json"),
            "val_annotations": str(data_root / "validation.json"), "labels": str(data_root / "labels.json"),
            "missing_tolerance": 0.5}
    config = make_config(tmp_path / "run", data=data, train={"epochs": 1})
    train(config)
    metrics = evaluate(config, [str(tmp_path / "run" / "last.pt")])
    assert metrics["videos_evaluated"] == metrics["videos_total"] - 1
    assert [s["path"] for s in metrics["skipped"]] == [str(gone)]


# --- command-line flags and checkpoint files (issue 30) ------------------------------------------------


def test_device_flag_error_names_the_flag(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    assert main(["predict", str(tmp_path / "v.webm"), "--config", str(tmp_path / "c.yaml"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--device: got 'cuda' but this PyTorch is a CPU-only build; use --device cpu" in err
    assert "train.device" not in err and len(err.splitlines()) == 1


def test_text_file_as_checkpoint_has_no_stray_code(tmp_path):
    from videoattn.engine.checkpoint import load_checkpoint
    from videoattn.errors import CheckpointError

    text = tmp_path / "notes.pt"
    text.write_text("hello world\n")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(text)
    message = str(caught.value)
    assert message.endswith("cannot be read (truncated or not a torch file?): it is a text file"), message
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"not a torch file\?\): the file is empty$"):
        load_checkpoint(empty)


@pytest.mark.parametrize("command", [["test", "--config", "c.yaml", "--checkpoint", "x.pt"],
                                     ["predict", "v.webm", "--config", "c.yaml"]])
def test_views_flag_error_names_the_flag(tmp_path, capsys, command):
    assert main([*command, "--views", "2x2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--views: got '2x2'; the number of spatial crops must be 1" in err and "eval.views" not in err
