"""``data.decoder: dali``: NVIDIA DALI decodes the sampled frames in the training (or evaluation) process.

A GPU decoder cannot run in forked DataLoader workers, so the work is split in two:

* **Workers** (:meth:`DaliDecoder.prepare`) do everything up to decoding, exactly as for the CPU
  decoders: the frame count (PyAV's demux pass for videos, the file count for frame folders), the
  TSN/dense/multi-view frame indices, the flip label map and the crop box, drawn from the same
  seeded generator in the same order. Instead of frames they return a :class:`Payload`: the encoded
  bytes (the whole video file, or the sampled JPEG files of a frame folder), the frame indices and
  the frame size read from the header.
* **The main process** (:meth:`DaliDecoder.decode`, called by
  :meth:`~videoattn.data.dataset.VideoDataset.decode_batch` next to the device transforms) decodes
  a batch of payloads with one DALI pipeline on the model's device: ``mixed`` (NVDEC for video,
  nvJPEG for JPEG) on CUDA, ``cpu`` (libavcodec, libjpeg-turbo) on a CPU. The result is the uint8
  ``(T, H, W, 3)`` frames the PyAV / Pillow decoders give for the same indices (frame ``i`` is the
  ``i``-th frame in presentation order for both; pixels differ by the YUV -> RGB conversion only,
  see ``docs/data.md``).

A payload DALI cannot decode is decoded again by the CPU decoder (PyAV or Pillow) with the same
indices; only when that fails too is the clip bad data (substituted in training, left out of the
metrics in evaluation, as for the CPU decoders). DALI's CPU backend decodes VP8/VP9/MJPEG video
(SSv2's WebM) but not H.264/HEVC/AV1 (those need the ``mixed`` backend, a CUDA GPU): asking it for
such a video is a :class:`~videoattn.errors.ConfigError`, not a silent switch to PyAV.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .decoders import Decoder, FrameFolderDecoder, PyAVDecoder

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


@dataclass
class Payload:
    """What a worker hands the main process instead of frames (pickled across the worker pipe).

    ``kind`` "video": ``data`` is one uint8 array of the file's bytes. ``kind`` "images": ``data``
    holds the bytes of each distinct frame asked (``files`` their paths) and ``order[k]`` is the
    position in ``data`` of the ``k``-th frame asked. ``indices``: the frame indices asked, in order
    (repeats allowed); ``height``/``width``: the frame size from the header; ``origin``: ``(item,
    epoch, attempt)`` the dataset produced it for (what a substitute continues from).
    """

    kind: str
    path: str
    indices: np.ndarray
    height: int
    width: int
    data: object = None
    files: list = field(default_factory=list)
    order: np.ndarray | None = None
    codec: str = ""
    origin: tuple[int, int, int] = (0, 0, 0)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.indices), self.height, self.width, 3)


def _first_line(error: Exception) -> str:
    """DALI's errors are many lines (pipeline traceback, C++ context); keep the informative one."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("Assert on", "Unexpected", "Failed")) or "frame index" in line:
            return line
    return lines[-1] if lines else type(error).__name__


class DaliDecoder(Decoder):
    """The ``dali`` decoder: counts and samples like ``cpu_decoder``, decodes with DALI (module docstring).

    ``cpu_decoder``: a :class:`PyAVDecoder` (video files) or :class:`FrameFolderDecoder` (JPEG
    folders); it counts frames in the workers and decodes any payload DALI cannot. ``num_threads``:
    DALI's CPU threads per pipeline. ``device``: where :meth:`read` (decoding in the calling process,
    as ``videoattn data check``/``predict`` do) decodes; the training and evaluation loops pass theirs
    to :meth:`decode`.
    """

    name = "dali"

    def __init__(self, cpu_decoder: Decoder, num_threads: int = 2, device: str | torch.device = "cpu"):
        require_dali()
        if not isinstance(cpu_decoder, (PyAVDecoder, FrameFolderDecoder)):
            raise ConfigError(f"the dali decoder needs a PyAV or frame-folder decoder to count frames, got "
                              f"{type(cpu_decoder).__name__}")
        self.cpu_decoder = cpu_decoder
        self.num_threads = max(1, int(num_threads))
        self.device = torch.device(device)
        self.frames = isinstance(cpu_decoder, FrameFolderDecoder)
        self._pipelines: dict[tuple, object] = {}
        self._lock = threading.Lock()
        #: ``(path, DALI's reason)`` of payloads the CPU decoder decoded instead (bounded, newest last).
        self.fallbacks: list[tuple[str, str]] = []

    # ------------------------------------------------------------------ worker side
    def with_template(self, template: str | None) -> DaliDecoder:
        if not self.frames or template is None or template == self.cpu_decoder.template:
            return self
        other = DaliDecoder(self.cpu_decoder.with_template(template), self.num_threads, self.device)
        other._pipelines, other._lock, other.fallbacks = self._pipelines, self._lock, self.fallbacks
        return other

    def num_frames(self, path: str) -> int:
        return self.cpu_decoder.num_frames(path)

    def prepare(self, path: str, indices_fn, device: str | torch.device | None = None) -> Payload:
        """Count, sample (``indices_fn(num_frames)``) and read the encoded bytes: no decoding.

        ``device``: where the payload will be decoded (a CPU refuses codecs DALI's CPU backend lacks).
        """
        device = torch.device(device) if device is not None else self.device
        if self.frames:
            return self._prepare_images(path, indices_fn)
        return self._prepare_video(path, indices_fn, device)

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

    def _prepare_images(self, path: str, indices_fn) -> Payload:
        from PIL import Image, UnidentifiedImageError

        decoder: FrameFolderDecoder = self.cpu_decoder
        total = decoder.num_frames(path)
        indices = np.asarray(indices_fn(total), dtype=np.int64).reshape(-1)
        distinct, order = np.unique(indices, return_inverse=True)
        files, data, sizes = [], [], set()
        for i in distinct.tolist():
            name = os.path.join(path, decoder.template.format(i + decoder.start_index))
            try:
                with Image.open(name) as image:  # the header only: the size, no decoding
                    sizes.add((image.height, image.width))
                with open(name, "rb") as handle:
                    data.append(np.frombuffer(handle.read(), dtype=np.uint8))
            except FileNotFoundError as error:
                raise DataError(f"{name}: frame file is missing") from error
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
                raise DataError(f"{name}: unreadable image ({type(error).__name__}: {error})") from error
            files.append(name)
        if len(sizes) > 1:
            raise DataError(f"{path}: frames have different sizes {sorted(sizes)}")
        (height, width), = sizes
        return Payload("images", path, indices, height, width, data=data, files=files,
                       order=np.asarray(order).reshape(-1))

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
        images = self._run(kind, device, {"encoded": [blob for p in payloads for blob in p.data]})
        clips, start = [], 0
        for p in payloads:
            mine = images[start:start + len(p.data)]
            start += len(p.data)
            shapes = {tuple(image.shape) for image in mine}
            if len(shapes) > 1:
                raise DataError(f"{p.path}: frames have different sizes {sorted(shapes)}")
            clips.append(torch.stack(mine)[torch.as_tensor(p.order, device=mine[0].device)])
        return clips

    def decode(self, payloads: list[Payload], device: str | torch.device | None = None
               ) -> list[torch.Tensor | DataError]:
        """Each payload's frames, uint8 ``(T, H, W, 3)`` on ``device``, or the :class:`DataError` saying
        why neither DALI nor the CPU decoder could decode it.

        All payloads of a kind go through one pipeline run; if that run fails, each is tried alone
        (DALI fails a whole batch for one bad file) and those still failing go to the CPU decoder.
        """
        device = torch.device(device) if device is not None else self.device
        results: list[torch.Tensor | DataError | None] = [None] * len(payloads)
        for kind in ("video", "images"):
            positions = [i for i, p in enumerate(payloads) if p.kind == kind]
            if not positions:
                continue
            try:
                for i, frames in zip(positions, self._decode_kind(kind, [payloads[i] for i in positions], device)):
                    results[i] = frames
                batch_ok = True
            except Exception:  # noqa: BLE001 - DALI raises RuntimeError/IndexError/...: retried one by one
                self._forget(kind, device)
                batch_ok = False
            if batch_ok and all(self._fits(payloads[i], results[i]) for i in positions):
                continue
            for i in positions:
                if results[i] is not None and self._fits(payloads[i], results[i]):
                    continue
                try:
                    (frames,) = self._decode_kind(kind, [payloads[i]], device)
                    if not self._fits(payloads[i], frames):
                        raise DataError(f"DALI gave frames of shape {tuple(frames.shape)}, expected "
                                        f"{payloads[i].shape}")
                    results[i] = frames
                except Exception as error:  # noqa: BLE001
                    self._forget(kind, device)
                    results[i] = self._fallback(payloads[i], _first_line(error), device)
        return results

    @staticmethod
    def _fits(payload: Payload, frames) -> bool:
        return isinstance(frames, torch.Tensor) and tuple(frames.shape) == payload.shape

    def _fallback(self, payload: Payload, reason: str, device: torch.device) -> torch.Tensor | DataError:
        """The CPU decoder's frames for the payload's indices, or the DataError naming both failures."""
        self.fallbacks.append((payload.path, reason))
        del self.fallbacks[:-100]
        if len(self.fallbacks) == 1:
            warnings.warn(f"DALI could not decode {payload.path} ({reason}); decoding it and any later such "
                          f"clip with the CPU decoder instead", RuntimeWarning, stacklevel=3)
        try:
            if payload.kind == "images":  # the payload's own files (a record may have its own template)
                from .decoders import ImageFileDecoder

                distinct = [ImageFileDecoder().get_frames(name, [0])[0] for name in payload.files]
                if len({frame.shape for frame in distinct}) > 1:
                    raise DataError(f"{payload.path}: frames have different sizes "
                                    f"{sorted({frame.shape for frame in distinct})}")
                frames = np.stack(distinct)[payload.order]
            else:
                frames = self.cpu_decoder.get_frames(payload.path, payload.indices)
        except DataError as error:
            return DataError(f"{error} (DALI: {reason})")
        except Exception as error:  # noqa: BLE001 - a decoder surprise is bad data, as for the CPU path
            return DataError(f"{payload.path}: {type(error).__name__}: {error} (DALI: {reason})")
        return torch.from_numpy(np.ascontiguousarray(frames)).to(device)

    # ------------------------------------------------------------------ the Decoder interface
    def read(self, path: str, indices_fn) -> np.ndarray:
        """Prepare and decode in this process (on :attr:`device`): what non-training readers use."""
        payload = self.prepare(path, indices_fn)
        (frames,) = self.decode([payload], self.device)
        if isinstance(frames, DataError):
            raise frames
        return frames.cpu().numpy()

    def get_frames(self, path: str, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        return self.read(path, lambda total: indices)
