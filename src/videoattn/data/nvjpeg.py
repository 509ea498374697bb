"""``data.decoder: nvjpeg``: torchvision's ``decode_jpeg`` decodes JPEG frame folders in the training
(or evaluation) process: nvJPEG on a CUDA device, libjpeg-turbo on a CPU.

For frame-folder datasets only (SSv1's release): the workers sample as the ``frames`` decoder does and
hand over the sampled files' bytes (:func:`~videoattn.data.deferred.read_frame_files`, the payload
``data.decoder: dali`` uses for folders); the main process decodes every file of a batch with one
``torchvision.io.decode_jpeg(list, device=...)`` call (``ImageReadMode.RGB``: grayscale and CMYK files
come out RGB), next to the device transforms (:mod:`videoattn.data.deferred`). A batch that fails is
retried clip by clip; a clip that still fails is decoded with Pillow, and only when Pillow fails too
is it bad data (substituted in training, dropped in evaluation).

torchvision is optional (``pip install 'videoattn[nvjpeg]'``) and must be the build made for the
installed torch (e.g. torch 2.13 <-> torchvision 0.28; a CUDA torchvision needs a CUDA torch): a
mismatched one cannot be imported or cannot load its image library, which :func:`nvjpeg_available`
detects by decoding a tiny JPEG. torchvision >= 0.20 (the first whose ``decode_jpeg`` takes a list);
0.29 deprecates torchvision's image decoding in favour of torchcodec's.
"""

from __future__ import annotations

import functools
import io
import re

import numpy as np
import torch

from ..errors import ConfigError
from .decoders import FrameFolderDecoder
from .deferred import DeferredDecoder, Payload, clips_from_images

__all__ = ["NvJpegDecoder", "nvjpeg_available", "require_nvjpeg", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'videoattn[nvjpeg]'"


@functools.lru_cache(maxsize=1)
def _unavailable_reason() -> str | None:
    """None when ``torchvision.io.decode_jpeg`` decodes a tiny JPEG on the CPU, else why not (one line)."""
    try:
        from PIL import Image
        from torchvision.io import ImageReadMode, decode_jpeg

        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (200, 40, 90)).save(buffer, "JPEG")
        data = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
        (image,) = decode_jpeg([data], mode=ImageReadMode.RGB, device="cpu")
        if tuple(image.shape) != (3, 8, 8):
            return f"decode_jpeg gave shape {tuple(image.shape)} for an 8 x 8 JPEG"
    except Exception as error:  # noqa: BLE001 - ImportError, or a torchvision that cannot load its libraries
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return None


def nvjpeg_available() -> bool:
    return _unavailable_reason() is None


def require_nvjpeg() -> None:
    """A one-line :class:`ConfigError` naming the extra to install when ``decode_jpeg`` cannot be used."""
    reason = _unavailable_reason()
    if reason is not None:
        raise ConfigError(f"config key 'data.decoder': 'nvjpeg' needs torchvision.io.decode_jpeg, which cannot be "
                          f"used here ({reason}); install it with `{INSTALL_HINT}` (a torchvision built for this "
                          f"torch, {torch.__version__}) or use data.decoder=frames")


def refuse_videos() -> ConfigError:
    return ConfigError("config key 'data.decoder': 'nvjpeg' decodes JPEG frame folders (SSv1's release), but this "
                       "dataset's media are video files; use data.decoder=dali (GPU) or pyav for videos")


class NvJpegDecoder(DeferredDecoder):
    """The ``nvjpeg`` decoder: counts and samples like ``cpu_decoder`` (a :class:`FrameFolderDecoder`),
    decodes with ``torchvision.io.decode_jpeg`` on the device asked (module docstring)."""

    name = "nvjpeg"
    backend = "decode_jpeg"

    def __init__(self, cpu_decoder: FrameFolderDecoder, device: str | torch.device = "cpu"):
        if not isinstance(cpu_decoder, FrameFolderDecoder):
            raise refuse_videos()
        require_nvjpeg()
        super().__init__(cpu_decoder, device)

    def _copy(self, cpu_decoder: FrameFolderDecoder) -> NvJpegDecoder:
        other = NvJpegDecoder(cpu_decoder, self.device)
        other.fallbacks = self.fallbacks
        return other

    @staticmethod
    def _reason(error: Exception) -> str:
        """torchvision's message without its C++ source location ("decode_jpeg, <file>.cpp:167, ")."""
        return re.sub(r"^(RuntimeError: )?[\w_]+, \S+\.(cpp|cu|h):\d+, ", r"\1",
                      DeferredDecoder._reason(error))

    def _decode_kind(self, kind: str, payloads: list[Payload], device: torch.device) -> list[torch.Tensor]:
        from torchvision.io import ImageReadMode, decode_jpeg

        if kind != "images":  # prepare() makes frame-folder payloads only
            raise refuse_videos()
        # the workers' bytes arrive read-only when produced in this process; decode_jpeg only reads them
        blobs = [torch.from_numpy(blob if blob.flags.writeable else np.array(blob))
                 for p in payloads for blob in p.data]
        images = decode_jpeg(blobs, mode=ImageReadMode.RGB, device=device)
        return clips_from_images(payloads, [image.permute(1, 2, 0) for image in images])
