"""Flip policies: the per-format default ("auto") and how multi-crop testing mirrors views under each."""

from __future__ import annotations

import pytest
import torch

from videoattn.data import build_dataset, generate_synthetic
from videoattn.data import dataset as dataset_module
from videoattn.errors import ShapeError


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("synth"), num_videos=16, frames=8, size=32, seed=5)


def ssv2(synth, **options):
    options.setdefault("size", 24)
    options.setdefault("num_frames", 2)
    return build_dataset("ssv2", root=synth / "videos", annotations=synth / options.pop("annotations", "train.json"),
                         labels=synth / "labels.json", **options)


def test_auto_resolves_per_format_and_class_names():
    lr = ["Pushing something from left to right", "Pushing something from right to left", "Holding something"]
    plain = ["abseiling", "archery"]
    # Something-Something: always, whatever the names.
    assert dataset_module.resolve_flip_policy("auto", "ssv2", plain) == "skip_left_right"
    assert dataset_module.resolve_flip_policy("auto", "ssv1", lr) == "skip_left_right"
    assert dataset_module.resolve_flip_policy("auto", "k400", plain) == "standard"
    # A converted SS list (frame_list/video_list) still names left/right: never mirror those classes.
    assert dataset_module.resolve_flip_policy("auto", "frame_list", lr) == "skip_left_right"
    assert dataset_module.resolve_flip_policy("auto", "frame_list", plain) == "standard"
    assert dataset_module.resolve_flip_policy("swap_left_right", "ssv2", lr) == "swap_left_right"  # explicit wins
    with pytest.raises(ValueError, match=r"flip must be one of .*'auto'.*got 'mirror'"):
        dataset_module.resolve_flip_policy("mirror", "ssv2", lr)


def test_ssv2_without_flip_setting_skips_left_right_and_records_it(synth):
    ds = ssv2(synth)
    assert ds.flip == "skip_left_right"
    meta = ds.metadata()
    assert meta["flip"] == "skip_left_right" and meta["flip_setting"] == "auto"
    lr = [i for i, name in enumerate(ds.classes) if "left" in name]
    assert lr and all(ds.flip_map[i] is None for i in lr)


def test_k400_without_flip_setting_keeps_standard(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\nabseiling,aaa,0,10,train\n"
                   "archery,bbb,5,15,train\n")
    ds = build_dataset("k400", root=tmp_path, annotations=csv)
    assert ds.flip == "standard" and ds.metadata()["flip"] == "standard"


def test_config_default_is_auto_and_resolves_through_the_engine(synth):
    from videoattn.config import config_from_dict
    from videoattn.engine.builders import build_dataset_for

    config = config_from_dict({"data": {"format": "ssv2", "root": str(synth / "videos"),
                                        "train_annotations": str(synth / "train.json"),
                                        "labels": str(synth / "labels.json"), "size": 24}})
    assert config.data.flip == "auto"
    assert build_dataset_for(config, "train").flip == "skip_left_right"


def _ten_crop(synth, flip):
    return ssv2(synth, annotations="validation.json", split="test", num_crops=10, scale_size=32, flip=flip)


@pytest.mark.parametrize("flip", ["auto", "skip_left_right", "none"])
def test_ten_crop_never_mirrors_under_skip_or_none(synth, flip):
    ds = _ten_crop(synth, flip)
    views = ds[0]["video"]
    assert views.shape[0] == 10  # the number of views per video stays what eval.views says
    torch.testing.assert_close(views[5:], views[:5], rtol=0, atol=0)  # the five crops again, not mirrors
    assert ds.view_class_maps is None


def test_ten_crop_standard_mirrors(synth):
    views = _ten_crop(synth, "standard")[0]["video"]
    torch.testing.assert_close(views[5:], views[:5].flip(-1), rtol=0, atol=0)
    assert _ten_crop(synth, "standard").view_class_maps is None


def test_ten_crop_swap_mirrors_and_maps_mirrored_scores_back(synth):
    ds = _ten_crop(synth, "swap_left_right")
    views = ds[0]["video"]
    torch.testing.assert_close(views[5:], views[:5].flip(-1), rtol=0, atol=0)
    maps = ds.view_class_maps
    classes = ds.classes
    a = classes.index("Moving something from left to right")
    b = classes.index("Moving something from right to left")
    up = classes.index("Moving something up")
    assert maps.shape == (10, len(classes))
    assert maps[:5].tolist() == [list(range(len(classes)))] * 5  # unmirrored views: as they are
    assert maps[5, a] == b and maps[5, b] == a and maps[5, up] == up  # mirrored: twins exchanged

    # A mirrored "left to right" video looks like "right to left": its score for b is evidence for a.
    scores = torch.zeros(1, 10, len(classes))
    scores[0, :5, a] = 1.0
    scores[0, 5:, b] = 1.0
    remapped = dataset_module.remap_view_scores(scores, maps)
    assert remapped[0, :, a].tolist() == [1.0] * 10 and remapped[0, :, b].tolist() == [0.0] * 10
    with pytest.raises(ShapeError, match=r"3 classes.*8 classes"):
        dataset_module.remap_view_scores(torch.zeros(1, 10, 3), maps)


def test_ten_crop_swap_through_predict_scores(synth):
    """The engine averages the mirrored views' scores after mapping them back."""
    from videoattn.engine.distributed import DistContext
    from videoattn.engine.evaluation import predict_scores

    swap = _ten_crop(synth, "swap_left_right")
    a = swap.classes.index("Moving something from left to right")
    b = swap.classes.index("Moving something from right to left")

    class LeftRightProbe(torch.nn.Module):
        """Logit d for a and -d for b, d = how much brighter the left half is than the right half."""

        def forward(self, x):
            half = x.shape[-1] // 2
            d = 10 * (x[..., :half].mean(dim=(1, 2, 3, 4)) - x[..., half:].mean(dim=(1, 2, 3, 4)))
            logits = torch.zeros(x.shape[0], len(swap.classes))
            logits[:, a], logits[:, b] = d, -d
            return logits

    def scores(dataset, views):
        return predict_scores(LeftRightProbe(), dataset, DistContext(), views=views, clips_per_batch=10)[1]

    five = ssv2(synth, annotations="validation.json", split="test", num_crops=5, scale_size=32,
                flip="swap_left_right")
    # A mirrored view says -d for a and d for b; mapped back, it agrees with its unmirrored crop.
    torch.testing.assert_close(scores(swap, "1x10"), scores(five, "1x5"))
    assert not torch.allclose(scores(swap, "1x10")[:, a], scores(swap, "1x10")[:, b])
    # Unmapped (standard), the mirrored views cancel the direction evidence exactly.
    standard = scores(_ten_crop(synth, "standard"), "1x10")
    torch.testing.assert_close(standard[:, a], standard[:, b])
