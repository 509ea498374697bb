"""Decoders that decode in the training (or evaluation) process: what ``data.decoder: dali`` and
``data.decoder: nvjpeg`` share.

A GPU decoder cannot run in forked DataLoader workers, so the work is split in two:

* **Workers** (:meth:`DeferredDecoder.prepare`) do everything up to decoding, exactly as for the CPU
  decoders: the frame count, the TSN/dense/multi-view frame indices, the flip label map and the crop
  box, drawn from the same seeded generator in the same order. Instead of frames they return a
  :class:`Payload`: the encoded bytes (a whole video file, or the sampled JPEG files of a frame
  folder: :func:`read_frame_files`), the frame indices and the frame size read from the header.
* **The main process** (:meth:`DeferredDecoder.decode`, called by
  :meth:`~videoattn.data.dataset.VideoDataset.decode_batch` next to the device transforms) decodes a
  batch of payloads on the model's device with the subclass's backend (:meth:`_decode_kind`): DALI
  (:mod:`videoattn.data.dali`) or torchvision's ``decode_jpeg`` (:mod:`videoattn.data.nvjpeg`).

A payload the backend cannot decode is decoded again by the CPU decoder (PyAV, or Pillow for the
payload's own JPEG files) with the same indices; only when that fails too is the clip bad data
(substituted in training, left out of the metrics in evaluation, as for the CPU decoders).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import DataError
from .decoders import Decoder, FrameFolderDecoder

__all__ = ["Payload", "DeferredDecoder", "read_frame_files", "clips_from_images", "decode_files_with_pillow"]


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


def read_frame_files(decoder: FrameFolderDecoder, path: str, indices_fn) -> Payload:
    """The "images" payload of a frame folder: count (``decoder``'s template), sample
    (``indices_fn(num_frames)``), read each distinct sampled file's bytes and its size from the header
    (Pillow reads the header only: nothing is decoded). Missing/unreadable files are :class:`DataError`."""
    from PIL import Image, UnidentifiedImageError

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


def clips_from_images(payloads: list[Payload], images: list[torch.Tensor]) -> list[torch.Tensor]:
    """Split the decoded ``(H, W, 3)`` images of all payloads' files (in payload order) into each
    payload's ``(T, H, W, 3)`` clip, repeating files as its ``order`` asks."""
    clips, start = [], 0
    for p in payloads:
        mine = images[start:start + len(p.data)]
        start += len(p.data)
        shapes = {tuple(image.shape) for image in mine}
        if len(shapes) > 1:
            raise DataError(f"{p.path}: frames have different sizes {sorted(shapes)}")
        clips.append(torch.stack(mine)[torch.as_tensor(p.order, device=mine[0].device)])
    return clips


def decode_files_with_pillow(payload: Payload) -> np.ndarray:
    """An "images" payload's own files (a record may have its own template) decoded with Pillow."""
    from .decoders import ImageFileDecoder

    distinct = [ImageFileDecoder().get_frames(name, [0])[0] for name in payload.files]
    if len({frame.shape for frame in distinct}) > 1:
        raise DataError(f"{payload.path}: frames have different sizes {sorted({frame.shape for frame in distinct})}")
    return np.stack(distinct)[payload.order]


class DeferredDecoder(Decoder):
    """A decoder whose workers :meth:`prepare` payloads and whose main process :meth:`decode`\\ s them.

    ``cpu_decoder`` counts frames in the workers and decodes any payload the backend cannot.
    ``device``: where :meth:`read` (decoding in the calling process, as ``videoattn data check`` /
    ``predict`` do) decodes; the training and evaluation loops pass theirs to :meth:`decode`.
    Subclasses set ``name`` and ``backend`` (the name in messages) and implement :meth:`_decode_kind`
    (plus :meth:`_prepare_video` if they read video files, and :meth:`_copy` for other templates).
    """

    name = "deferred"
    backend = "the decoder"

    def __init__(self, cpu_decoder: Decoder, device: str | torch.device = "cpu"):
        self.cpu_decoder = cpu_decoder
        self.device = torch.device(device)
        self.frames = isinstance(cpu_decoder, FrameFolderDecoder)
        #: ``(path, the backend's reason)`` of payloads the CPU decoder decoded instead (bounded, newest last).
        self.fallbacks: list[tuple[str, str]] = []

    # ------------------------------------------------------------------ worker side
    def _copy(self, cpu_decoder: Decoder) -> DeferredDecoder:  # pragma: no cover - interface
        """The same decoder (sharing its state: fallbacks, pipelines) reading with ``cpu_decoder``."""
        raise NotImplementedError

    def with_template(self, template: str | None) -> DeferredDecoder:
        if not self.frames or template is None or template == self.cpu_decoder.template:
            return self
        return self._copy(self.cpu_decoder.with_template(template))

    def num_frames(self, path: str) -> int:
        return self.cpu_decoder.num_frames(path)

    def prepare(self, path: str, indices_fn, device: str | torch.device | None = None) -> Payload:
        """Count, sample (``indices_fn(num_frames)``) and read the encoded bytes: no decoding.

        ``device``: where the payload will be decoded (a backend may refuse what it cannot decode there).
        """
        device = torch.device(device) if device is not None else self.device
        if self.frames:
            return read_frame_files(self.cpu_decoder, path, indices_fn)
        return self._prepare_video(path, indices_fn, device)

    def _prepare_video(self, path: str, indices_fn, device: torch.device) -> Payload:  # pragma: no cover
        raise NotImplementedError

    # ------------------------------------------------------------------ main-process side
    def _decode_kind(self, kind: str, payloads: list[Payload], device: torch.device) -> list[torch.Tensor]:
        """The clips of ``payloads`` (all of ``kind``), uint8 ``(T, H, W, 3)`` on ``device``, in one
        backend call; any error propagates (the caller retries one by one, then falls back)."""
        raise NotImplementedError  # pragma: no cover - interface

    def _forget(self, kind: str, device: torch.device) -> None:
        """Drop backend state that an error left unusable (DALI's pipelines); nothing by default."""

    @staticmethod
    def _reason(error: Exception) -> str:
        """One line saying why the backend failed."""
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__

    def decode(self, payloads: list[Payload], device: str | torch.device | None = None
               ) -> list[torch.Tensor | DataError]:
        """Each payload's frames, uint8 ``(T, H, W, 3)`` on ``device``, or the :class:`DataError` saying
        why neither the backend nor the CPU decoder could decode it.

        All payloads of a kind go through one backend call; if that fails, each is tried alone (a
        backend may fail a whole batch for one bad file) and those still failing go to the CPU decoder.
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
            except Exception:  # noqa: BLE001 - backends raise RuntimeError/IndexError/...: retried one by one
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
                        raise DataError(f"{self.backend} gave frames of shape {tuple(frames.shape)}, expected "
                                        f"{payloads[i].shape}")
                    results[i] = frames
                except Exception as error:  # noqa: BLE001
                    self._forget(kind, device)
                    results[i] = self._fallback(payloads[i], self._reason(error), device)
        return results

    @staticmethod
    def _fits(payload: Payload, frames) -> bool:
        return isinstance(frames, torch.Tensor) and tuple(frames.shape) == payload.shape

    def _fallback(self, payload: Payload, reason: str, device: torch.device) -> torch.Tensor | DataError:
        """The CPU decoder's frames for the payload's indices, or the DataError naming both failures."""
        self.fallbacks.append((payload.path, reason))
        del self.fallbacks[:-100]
        if len(self.fallbacks) == 1:
            warnings.warn(f"{self.backend} could not decode {payload.path} ({reason}); decoding it and any later "
                          f"such clip with the CPU decoder instead", RuntimeWarning, stacklevel=3)
        try:
            if payload.kind == "images":
                frames = decode_files_with_pillow(payload)
            else:
                frames = self.cpu_decoder.get_frames(payload.path, payload.indices)
        except DataError as error:
            return DataError(f"{error} ({self.backend}: {reason})")
        except Exception as error:  # noqa: BLE001 - a decoder surprise is bad data, as for the CPU path
            return DataError(f"{payload.path}: {type(error).__name__}: {error} ({self.backend}: {reason})")
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
