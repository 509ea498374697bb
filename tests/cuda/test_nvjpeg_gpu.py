"""``data.decoder: nvjpeg`` on a GPU: torchvision's ``decode_jpeg(list, device="cuda")`` (nvJPEG).

tests/data/test_nvjpeg_decoder.py runs the same code with ``device="cpu"`` (libjpeg-turbo); these tests
check what only a GPU can: frames decoded as CUDA tensors, how close nvJPEG's pixels are to Pillow's,
and a training epoch + validation fed by them. Never run by the session that wrote them (no GPU was
available): the first GPU run is their check.
"""

import json

import numpy as np
import pytest
import torch

from tests.data._data_media import frame_number, moving_square_frames, train_config
from videoattn.data.decoders import FrameFolderDecoder, build_decoder
from videoattn.data.nvjpeg import _unavailable_reason, nvjpeg_available

pytestmark = pytest.mark.skipif(not nvjpeg_available(), reason=f"torchvision.io.decode_jpeg cannot be used here: "
                                                               f"{_unavailable_reason()}")

INDICES = [3, 1, 1, 20, 7, 0, 23, 12]
#: nvJPEG's IDCT and chroma upsampling are not libjpeg-turbo's: a small difference is expected (a bound
#: to be confirmed by the first GPU run; the mean is what matters for training).
MAX_DIFFERENCE = 8
MEAN_DIFFERENCE = 1.0


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("nvjpeg_gpu") / "frames"
    root.mkdir()
    for t, image in enumerate(moving_square_frames(24, 32, 48)):
        Image.fromarray(image).save(root / f"{t + 1:05d}.jpg", quality=95)
    return root


@pytest.mark.cuda
def test_nvjpeg_decodes_the_asked_frames_on_the_gpu(folder):
    decoder = build_decoder("nvjpeg", frames=True)
    payloads = [decoder.prepare(str(folder), lambda total: np.asarray(INDICES), device="cuda"),
                decoder.prepare(str(folder), lambda total: np.asarray([5, 6]), device="cuda")]
    frames, other = decoder.decode(payloads, "cuda")
    assert isinstance(frames, torch.Tensor) and frames.is_cuda and frames.dtype == torch.uint8
    assert tuple(frames.shape) == (len(INDICES), 32, 48, 3) and not decoder.fallbacks
    assert [frame_number(f) for f in frames.cpu().numpy()] == INDICES
    assert [frame_number(f) for f in other.cpu().numpy()] == [5, 6]
    pillow = torch.from_numpy(FrameFolderDecoder().get_frames(str(folder), INDICES)).int()
    difference = (frames.cpu().int() - pillow).abs()
    print(f"nvJPEG vs Pillow: max {int(difference.max())}, mean {float(difference.float().mean()):.3f}")
    assert int(difference.max()) <= MAX_DIFFERENCE and float(difference.float().mean()) < MEAN_DIFFERENCE


@pytest.mark.cuda
def test_training_epoch_and_validation_with_nvjpeg_on_the_gpu(tmp_path):
    from videoattn.data import generate_synthetic
    from videoattn.engine import train

    root = generate_synthetic(tmp_path / "ssv1", num_videos=16, frames=10, size=32, format="frames", seed=0)
    config = train_config(root, "frames", "nvjpeg", tmp_path / "run", device="cuda", deterministic=False)
    result = train(config)  # one epoch, then validation: both decode with nvJPEG in this process
    assert result.global_step >= 2 and result.summary["loader"]["transforms_on"] == "device"
    assert result.summary["num_skipped"] == 0 and result.summary["final"]["val_videos_evaluated"] > 0
    metadata = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert metadata["train_data"]["decoder"] == "nvjpeg"
