"""``data.decoder: dali``: NVIDIA DALI decodes the sampled frames in the training (or evaluation) process.

The split between loader workers (counting, sampling, reading the encoded bytes into a
:class:`~videoattn.data.deferred.Payload`) and the main process (decoding a batch of payloads next to
the device transforms) is :mod:`videoattn.data.deferred`'s, shared with ``data.decoder: nvjpeg``. Here
the main process decodes with one DALI pipeline on the model's device: ``mixed`` (NVDEC for video,
nvJPEG for JPEG) on CUDA, ``cpu`` (libavcodec, libjpeg-turbo) on a CPU. The result is the uint8
``(T, H, W, 3)`` frames the PyAV / Pillow decoders give for the same indices (frame ``i`` is the
``i``-th frame in presentation order for both; pixels differ by the YUV -> RGB conversion only, see
``docs/data.md``).

A payload DALI cannot decode is decoded again by the CPU decoder (PyAV or Pillow) with the same
indices; only when that fails too is the clip bad data (substituted in training, left out of the
metrics in evaluation, as for the CPU decoders). DALI's CPU backend decodes VP8/VP9/MJPEG video
(SSv2's WebM) but not H.264/HEVC/AV1 (those need the ``mixed`` backend, a CUDA GPU): asking it for
such a video is a :class:`~videoattn.errors.ConfigError`, not a silent switch to PyAV.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .decoders import Decoder, FrameFolderDecoder, PyAVDecoder
from .deferred import DeferredDecoder, Payload, clips_from_images

__all__ = ["DaliDecoder", "Payload", "dali_available", "require_dali", "CPU_VIDEO_CODECS", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'videoattn[dali]'"
#: Codecs (FFmpeg names) DALI's CPU video decoder accepts; everything else needs ``mixed`` (CUDA).
CPU_VIDEO_CODECS = ("vp8", "vp9", "mjpeg")


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except Exception:  # ImportError, or a DALI wheel that cannot load its libraries
        return False
    return True


def require_dali() -> None:
    """A one-line :class:`ConfigError` naming the extra to install when DALI cannot be imported."""
    if not dali_available():
        raise ConfigError(f"config key 'data.decoder': 'dali' needs NVIDIA DALI, which cannot be imported here; "
                          f"install it with `{INSTALL_HINT}` (CUDA 12; nvidia-dali-cuda130 for CUDA 13) or "
                          f"use data.decoder=auto")


def _first_line(error: Exception) -> str:
    """DALI's errors are many lines (pipeline traceback, C++ context); keep the informative one."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("Assert on", "Unexpected", "Failed")) or "frame index" in line:
            return line
    return lines[-1] if lines else type(error).__name__


class DaliDecoder(DeferredDecoder):
    """The ``dali`` decoder: counts and samples like ``cpu_decoder``, decodes with DALI (module docstring).

    ``cpu_decoder``: a :class:`PyAVDecoder` (video files) or :class:`FrameFolderDecoder` (JPEG
    folders); it counts frames in the workers and decodes any payload DALI cannot. ``num_threads``:
    DALI's CPU threads per pipeline. ``device``: where :meth:`read` (decoding in the calling process,
    as ``videoattn data check``/``predict`` do) decodes; the training and evaluation loops pass theirs
    to :meth:`decode`.
    """

    name = "dali"
    backend = "DALI"

    def __init__(self, cpu_decoder: Decoder, num_threads: int = 2, device: str | torch.device = "cpu"):
        require_dali()
        if not isinstance(cpu_decoder, (PyAVDecoder, FrameFolderDecoder)):
            raise ConfigError(f"the dali decoder needs a PyAV or frame-folder decoder to count frames, got "
                              f"{type(cpu_decoder).__name__}")
        super().__init__(cpu_decoder, device)
        self.num_threads = max(1, int(num_threads))
        self._pipelines: dict[tuple, object] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ worker side
    def _copy(self, cpu_decoder: Decoder) -> DaliDecoder:
        other = DaliDecoder(cpu_decoder, self.num_threads, self.device)
        other._pipelines, other._lock, other.fallbacks = self._pipelines, self._lock, self.fallbacks
        return other

    def _prepare_video(self, path: str, indices_fn, device: torch.device) -> Payload:
        decoder = self.cpu_decoder
        container, stream = decoder._open(path)  # checks the file, reads the header
        try:
            codec = str(stream.codec_context.name or "")
            height, width = int(stream.codec_context.height or 0), int(stream.codec_context.width or 0)
        finally:
            container.close()
        if device.type != "cuda" and codec not in CPU_VIDEO_CODECS:
            raise ConfigError(f"{path}: {codec or 'unknown'} video; data.decoder 'dali' on a CPU decodes only "
                              f"{'/'.join(CPU_VIDEO_CODECS)} (e.g. SSv2's WebM): {codec or 'this codec'} needs a "
                              f"CUDA GPU (DALI's 'mixed' backend, NVDEC); use data.decoder=pyav here")
        if height < 1 or width < 1:
            raise DataError(f"{path}: the video header gives no frame size")
        total = decoder.num_frames(path)
        indices = np.asarray(indices_fn(total), dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= total):
            raise DataError(f"{path}: frame indices {indices.min()}..{indices.max()} outside the video's "
                            f"{total} frames")
        with open(path, "rb") as handle:
            data = np.frombuffer(handle.read(), dtype=np.uint8)
        return Payload("video", path, indices, height, width, data=data, codec=codec)

    # ------------------------------------------------------------------ main-process side
    def _pipeline(self, kind: str, device: torch.device, batch_size: int):
        import nvidia.dali as dali
        import nvidia.dali.fn as fn
        import nvidia.dali.types as types

        capacity = 8
        while capacity < batch_size:
            capacity *= 2
        gpu = device.type == "cuda"
        device_id = (device.index if device.index is not None else torch.cuda.current_device()) if gpu else None
        # one pipeline per process and thread: a pipeline's feed + run must not interleave with another's
        key = (os.getpid(), threading.get_ident(), kind, str(device), capacity)
        with self._lock:
            pipeline = self._pipelines.get(key)
            if pipeline is not None:
                return pipeline

            @dali.pipeline_def(batch_size=capacity, num_threads=self.num_threads, device_id=device_id,
                               prefetch_queue_depth=1, exec_pipelined=False, exec_async=False)
            def graph():
                encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
                backend = "mixed" if gpu else "cpu"
                if kind == "video":
                    frames = fn.external_source(name="frames", dtype=types.INT32, ndim=1)
                    # pad_mode "none": an index past what DALI can decode is an error, never black frames
                    return fn.decoders.video(encoded, device=backend, frames=frames, pad_mode="none")
                return fn.decoders.image(encoded, device=backend, output_type=types.RGB)

            pipeline = graph()
            pipeline.build()
            self._pipelines[key] = pipeline
            return pipeline

    def _forget(self, kind: str, device: torch.device) -> None:
        """Drop this thread's pipelines of ``kind`` on ``device``: after an error a DALI pipeline is unusable."""
        mine = (os.getpid(), threading.get_ident(), kind, str(device))
        with self._lock:
            for key in [k for k in self._pipelines if k[:4] == mine]:
                del self._pipelines[key]

    def _run(self, kind: str, device: torch.device, inputs: dict[str, list]) -> list[torch.Tensor]:
        """One pipeline run; the outputs as uint8 tensors on ``device`` (any DALI error propagates)."""
        count = len(inputs["encoded"])
        pipeline = self._pipeline(kind, device, count)
        for name, values in inputs.items():
            pipeline.feed_input(name, values)
        (output,) = pipeline.run()
        if device.type != "cuda":
            return [torch.from_numpy(np.array(output[i])) for i in range(count)]
        from nvidia.dali.plugin.pytorch import feed_ndarray

        stream = torch.cuda.current_stream(device)
        tensors = []
        for i in range(count):
            item = output[i]
            target = torch.empty(tuple(item.shape()), dtype=torch.uint8, device=device)
            feed_ndarray(item, target, cuda_stream=stream)
            tensors.append(target)
        return tensors

    def _decode_kind(self, kind: str, payloads: list[Payload], device: torch.device) -> list[torch.Tensor]:
        if kind == "video":
            inputs = {"encoded": [p.data for p in payloads],
                      "frames": [p.indices.astype(np.int32) for p in payloads]}
            return self._run(kind, device, inputs)
        return clips_from_images(payloads, self._run(kind, device, {"encoded": [blob for p in payloads
                                                                                for blob in p.data]}))

    @staticmethod
    def _reason(error: Exception) -> str:
        return _first_line(error)
