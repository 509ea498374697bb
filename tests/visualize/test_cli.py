"""`videoattn visualize KIND`: a PNG for every kind, and one-line errors."""

import json
from pathlib import Path

import pytest

from videoattn.cli import main
from videoattn.visualize import visualize


def _run(capsys, *argv):
    code = main(["visualize", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("kind, files", [
    ("gta-matrices", ["gta_matrices.png"]),
    ("gta-regions", ["gta_regions.png"]),
    ("attention", ["attention.png", "gsm_gates.png"]),
    ("bat", ["bat.png"]),
    ("cam", ["cam.png"]),
])
def test_every_clip_kind_writes_its_png(tiny_setup, tmp_path, capsys, kind, files):
    config, checkpoint, video, _ = tiny_setup
    code, out, err = _run(capsys, kind, "--config", config, "--checkpoint", checkpoint, "--video", video,
                          "--query", "1,20,8", "--out", tmp_path)
    assert code == 0, err
    for name in files:
        path = tmp_path / name
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote {path}" in out


def test_tsne_and_curves(tiny_setup, tmp_path, capsys):
    from videoattn.engine.runlog import RunLogger

    config, checkpoint, _, _ = tiny_setup
    code, _, err = _run(capsys, "tsne", "--config", config, "--checkpoint", checkpoint, "--split", "train",
                        "--max-videos", "6", "--out", tmp_path)
    assert code == 0, err
    assert (tmp_path / "tsne.png").is_file()
    assert "t-SNE features (train)" in err  # the progress bar
    runs = []
    for name, offset in (("run_a", 0.0), ("run_b", 5.0)):
        logger = RunLogger(tmp_path / name, enabled=True, tensorboard=False)
        for epoch in (1, 2, 3):
            values = {"epoch": epoch, "train_loss": 2.0 / epoch, "train_top1": 20.0 * epoch + offset}
            if epoch != 2:
                values.update(val_loss=2.2 / epoch, val_top1=15.0 * epoch, val_top5=40.0 + 10 * epoch)
            logger.log("epoch", 10 * epoch, values)
            logger.log("step", 10 * epoch + 1, {"loss": 1.0})
        logger.close()
        runs += ["--run", tmp_path / name]
    code, _, err = _run(capsys, "curves", *runs, "--out", tmp_path / "curves")
    assert code == 0, err
    assert (tmp_path / "curves" / "curves.png").is_file()


def test_python_api_takes_a_built_model(tiny_setup, tmp_path):
    from videoattn.config import load_config

    from .conftest import tiny_model

    config, _, video, _ = tiny_setup
    num_classes = len(json.loads(Path(load_config(config).data.labels).read_text()))
    paths = visualize("attention", config, video=video, model=tiny_model(num_classes), queries=["2,4,28"],
                      select="layer2", out=tmp_path)
    assert [p.name for p in paths] == ["attention.png"]


def test_errors_are_one_line(tiny_setup, tmp_path, capsys):
    config, checkpoint, video, root = tiny_setup
    common = ["--config", config, "--checkpoint", checkpoint, "--out", tmp_path]
    code, _, err = _run(capsys, "gta-matrices", *common, "--block", "layer3")
    assert code == 2 and err.count("\n") == 1
    assert "has no GTA block whose path contains 'layer3'; it has bat x1" in err and "gta x1 (layer2.0" in err
    code, _, err = _run(capsys, "bat", *common, "--video", root / "nope.webm")
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err and "nope.webm" in err
    for query in ("1,2", "a,b,c", "9,0,0", "0,40,0"):
        code, _, err = _run(capsys, "attention", *common, "--video", video, "--query", query)
        assert code == 2 and err.count("\n") == 1 and f"--query {query!r}" in err, err
    code, _, err = _run(capsys, "heatmap", *common)
    assert code == 2 and "unknown visualize kind 'heatmap'" in err and "gta-matrices" in err
    code, _, err = _run(capsys, "curves", "--run", tmp_path / "missing", "--out", tmp_path)
    assert code == 2 and "no metrics.jsonl" in err


def test_kind_without_the_block_names_what_the_model_has(tmp_path, tiny_setup, capsys):
    from videoattn.engine.checkpoint import save_checkpoint

    from .conftest import tiny_model

    config, _, video, _ = tiny_setup
    plain = tiny_model(4, blocks=[])
    save_checkpoint({"model": plain.state_dict(), "num_classes": 4,
                     "config": {"model": {"name": "r2d18", "num_classes": 4, "num_frames": 4,
                                          "options": {"base_channels": 8}}}}, tmp_path / "plain.pt")
    for kind in ("attention", "bat", "gta-regions"):
        code, _, err = _run(capsys, kind, "--config", config, "--checkpoint", tmp_path / "plain.pt", "--video", video,
                            "--out", tmp_path)
        assert code == 2 and err.count("\n") == 1 and "it has no inserted blocks" in err, err
    code, _, err = _run(capsys, "cam", "--config", config, "--checkpoint", tmp_path / "plain.pt", "--video", video,
                        "--out", tmp_path)
    assert code == 0, err


@pytest.mark.parametrize("block", [{"name": "gta", "plan": "res3: 0", "options": {"num_groups": 2, "spatial": False}},
                                   {"name": "tape", "plan": "res3: 1"}])
def test_attention_of_temporal_only_blocks(tiny_setup, tmp_path, block):
    """GTA without SA (Table 9 "+ Pixel GTA") and TAPE without SA still get a row (temporal weights)."""
    from .conftest import tiny_model

    config, _, video, _ = tiny_setup
    blocks = [block]
    paths = visualize("attention", config, video=video, model=tiny_model(8, blocks=blocks), out=tmp_path)
    assert [p.name for p in paths] == ["attention.png"]
