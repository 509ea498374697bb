"""Figure layout, checked on the artists after ``fig.canvas.draw()`` (issue 30): tick labels clear of
the panels, a colour key for Region GTA, train and val curves told apart; runs of the same folder name
kept apart and overrides on a Config honoured (issue 31)."""

import json
from pathlib import Path

import numpy as np
import pytest

from videoattn.config import load_config
from videoattn.errors import ConfigError, DataError
from videoattn.visualize import visualize

from .conftest import tiny_model


@pytest.fixture
def figures(monkeypatch):
    """``(file name, figure, renderer)`` of every figure the visualize kinds save, drawn
    (``fig.canvas.draw()``) before it is written."""
    from videoattn.visualize import curves as curves_module
    from videoattn.visualize import figures as figures_module

    drawn = []

    def keeping(original):
        def save(fig, path):
            fig.canvas.draw()
            drawn.append((Path(path).name, fig, fig.canvas.get_renderer()))
            return original(fig, path)
        return save

    monkeypatch.setattr(figures_module, "save_compact", keeping(figures_module.save_compact))
    monkeypatch.setattr(curves_module, "save_figure", keeping(curves_module.save_figure))
    return drawn


def _num_classes(config) -> int:
    return len(json.loads(Path(load_config(config).data.labels).read_text()))


def _boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_attention_bar_labels_clear_the_last_frame(tiny_setup, tmp_path, figures):
    config, _, video, _ = tiny_setup
    model = tiny_model(_num_classes(config), blocks=[{"name": "dnl", "plan": "res3: 0"}])
    visualize("attention", config, video=video, model=model, out=tmp_path)
    (name, fig, renderer), = figures
    assert name == "attention.png"
    bar_axes = [ax for ax in fig.axes if ax.patches]
    assert bar_axes, "no temporal bar chart drawn"
    panels = [ax for ax in fig.axes if ax.images]
    for ax in bar_axes:
        labels = [t for t in ax.get_yticklabels() + ax.get_xticklabels() if t.get_visible() and t.get_text()]
        assert labels
        for label in labels:
            box = label.get_window_extent(renderer)
            for panel in panels:
                assert not _boxes_overlap(box, panel.get_window_extent(renderer)), \
                    f"tick label {label.get_text()!r} overlaps a frame panel"
        boxes = [label.get_window_extent(renderer) for label in ax.get_yticklabels() if label.get_text()]
        assert not any(_boxes_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_gta_regions_has_a_colour_key_per_row(tiny_setup, tmp_path, figures):
    config, checkpoint, video, _ = tiny_setup
    visualize("gta-regions", config, checkpoint, video, out=tmp_path)
    (name, fig, renderer), = figures
    assert name == "gta_regions.png"
    panels = [ax for ax in fig.axes if ax.images]
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1  # the one GTA block of the fixture: one row
    legend = legends[0]
    shown = sorted({int(word[1:]) for ax in panels for word in ax.get_title().split()[2:]})
    assert [t.get_text() for t in legend.get_texts()] == [f"region r{k}" for k in shown]
    key = {k: np.asarray(patch.get_facecolor()[:3]) for k, patch in zip(shown, legend.get_patches())}
    # distinct colours (not a hue and its light shade): every pair differs by 0.2 in some channel
    assert all(np.abs(key[a] - key[b]).max() > 0.2 for a in key for b in key if a < b)
    for ax in panels:  # every coloured pixel has the key's colour of a region named in the panel's title
        overlay = ax.images[1].get_array()
        painted = overlay[..., :3][overlay[..., 3] > 0]
        named = [key[int(word[1:])] for word in ax.get_title().split()[2:]]
        assert len(painted) and all(min(np.abs(pixel - c).max() for c in named) < 1e-6 for pixel in painted)
    box = legend.get_window_extent(renderer)
    assert not any(_boxes_overlap(box, panel.get_window_extent(renderer)) for panel in panels)
    # all 8 regions of a GTA block in every frame: 8 distinct colours in the key
    from videoattn.visualize.kinds import gta_regions_figure
    from videoattn.visualize.loading import load_clip

    model = tiny_model(_num_classes(config), blocks=[{"name": "gta", "plan": "res3: 0",
                                                      "options": {"num_groups": 2, "num_regions": 8}}])
    gta_regions_figure(model, load_clip(load_config(config), video, 4), tmp_path, top=8)
    legend = [ax.get_legend() for ax in figures[-1][1].axes if ax.get_legend() is not None][0]
    colours = [np.asarray(patch.get_facecolor()[:3]) for patch in legend.get_patches()]
    assert len(colours) == 8
    assert all(np.abs(a - b).max() > 0.2 for i, a in enumerate(colours) for b in colours[i + 1:])


def _write_run(directory: Path, offset: float, epochs: int = 6) -> None:
    from videoattn.engine.runlog import RunLogger

    logger = RunLogger(directory, enabled=True, tensorboard=False)
    for epoch in range(1, epochs + 1):
        values = {"epoch": epoch, "train_loss": 2.0 / epoch + offset, "train_top1": 10.0 * epoch + offset}
        values.update(val_loss=2.2 / epoch + offset, val_top1=9.0 * epoch + offset, val_top5=30.0 + 5 * epoch)
        logger.log("epoch", 10 * epoch, values)
    logger.close()


def test_curves_keep_runs_with_the_same_folder_name_apart(tmp_path, figures):
    for group, offset in (("a", 0.0), ("b", 0.5)):
        _write_run(tmp_path / "cv" / group / "tiny", offset)
    runs = [tmp_path / "cv" / "a" / "tiny", tmp_path / "cv" / "b" / "tiny"]
    visualize("curves", runs=runs, out=tmp_path / "out")
    (_, fig, _), = figures
    labels = {line.get_label() for line in fig.axes[0].get_lines()}
    assert labels == {"a/tiny train", "a/tiny val", "b/tiny train", "b/tiny val"}
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == \
        ["a/tiny train", "a/tiny val", "b/tiny train", "b/tiny val"]
    from videoattn.visualize.curves import run_labels

    assert run_labels(["x/gta", "x/nl"]) == ["gta", "nl"]
    assert run_labels(["p/a/tiny", "q/a/tiny", "q/b/tiny"]) == ["p/a/tiny", "q/a/tiny", "b/tiny"]
    with pytest.raises(DataError, match="given twice"):
        visualize("curves", runs=[runs[0], runs[0] / "metrics.jsonl"], out=tmp_path / "out")


def test_curves_train_and_val_differ_in_line_and_marker(tmp_path, figures):
    _write_run(tmp_path / "run", 0.0, epochs=30)
    visualize("curves", runs=[tmp_path / "run"], out=tmp_path / "out")
    (_, fig, _), = figures
    for ax in fig.axes[:2]:
        lines = {line.get_label().split()[-1]: line for line in ax.get_lines()}
        train, val = lines["train"], lines["val"]
        assert train.get_linestyle() == "-" and val.get_linestyle() != "-"
        assert train.get_marker() in ("None", None, "", " ")  # no markers over the training line
        assert val.get_marker() == "o" and val.get_markerfacecolor() == "white"  # open: the dashes show through
        every = val.get_markevery()
        assert isinstance(every, int) and every > 1 and len(val.get_xdata()[::every]) <= 12  # 30 epochs
    with_markers = [t for t in fig.axes[0].get_legend().get_lines()]
    assert {line.get_linestyle() for line in with_markers} == {"-", "--"}


def test_overrides_apply_to_a_config_object(tiny_setup, tmp_path, figures):
    config_path, checkpoint, video, _ = tiny_setup
    config = load_config(config_path)
    visualize("cam", config, checkpoint, video, out=tmp_path, overrides=["data.size=64", "data.scale_size=64"])
    (_, fig, _), = figures
    assert "res5 output (layer4.1)" in fig._suptitle.get_text()  # 64 px: res5 is 2x2 (at 32 px it is 1x1)
    assert config.data.size == 32  # the caller's object is left alone
    with pytest.raises(ConfigError, match="overrides .*data.sise=64.*unknown config key 'data.sise'") as error:
        visualize("cam", config, checkpoint, video, out=tmp_path, overrides=["data.sise=64"])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("num_rows", [1, 4, 16])
def test_title_clears_the_frame_titles_in_short_and_tall_figures(num_rows):
    from videoattn.visualize.figures import Row, layout_rows

    frames = np.zeros((8, 16, 16, 3))
    rows = [Row(f"row {i}", [np.random.rand(16, 16)] * 8) for i in range(num_rows)]
    fig = layout_rows(frames, rows, "a title long enough to span the frames of the first row " * 2)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle.get_window_extent(renderer)
    for ax in fig.axes[:8]:  # the first row's panels and their "frame t" titles
        assert not title.overlaps(ax.title.get_window_extent(renderer)), ax.title.get_text()
        assert not title.overlaps(ax.get_window_extent(renderer))
    import matplotlib.pyplot as plt

    plt.close(fig)
