"""``data.decoder: dali`` on a GPU: the ``mixed`` backend (NVDEC video, nvJPEG frames).

tests/data/test_dali_decoder.py runs the same code with DALI's CPU backend; these tests check what
only a GPU can: H.264 decoding, frames produced as CUDA tensors, and a training step fed by them.
Never run by the session that wrote them (no GPU was available): the first GPU run is their check.
"""

import numpy as np
import pytest
import torch

pytest.importorskip("nvidia.dali")

from tests.data._data_media import frame_number, write_numbered_media  # noqa: E402
from videoattn.data.decoders import build_decoder  # noqa: E402

INDICES = [3, 1, 1, 20, 7, 0, 23, 12]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return write_numbered_media(tmp_path_factory.mktemp("dali_gpu"))


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["clip.webm", "clip.mp4", "clip_frames"])
def test_mixed_backend_decodes_the_asked_frames_on_the_gpu(media, name):
    decoder = build_decoder("dali", frames=name == "clip_frames")
    payload = decoder.prepare(str(media / name), lambda total: np.asarray(INDICES), device="cuda")
    (frames,) = decoder.decode([payload], "cuda")
    assert isinstance(frames, torch.Tensor) and frames.is_cuda and frames.dtype == torch.uint8
    assert tuple(frames.shape) == (len(INDICES), 32, 48, 3) and not decoder.fallbacks
    assert [frame_number(f) for f in frames.cpu().numpy()] == INDICES
    if name != "clip.mp4":  # the CPU backend decodes VP9 and JPEG: the two backends agree closely
        (cpu,) = decoder.decode([payload], "cpu")
        assert (frames.cpu().int() - cpu.int()).abs().float().mean() < 3


@pytest.mark.cuda
def test_training_steps_with_dali_on_the_gpu(make_config, tmp_path):
    from videoattn.engine import train

    config = make_config(tmp_path / "run", train={"device": "cuda", "epochs": 1, "val_interval": 1},
                         data={"decoder": "dali", "num_workers": 1})
    result = train(config)  # one epoch, then validation: both decode with NVDEC in this process
    assert result.global_step >= 2 and result.summary["loader"]["transforms_on"] == "device"
    assert result.summary["num_skipped"] == 0 and result.summary["final"]["val_videos_evaluated"] > 0
