"""Video decoders: PyAV (default), torchcodec (optional), JPEG frame folders (Pillow), and two that decode
in the training process, on the GPU where there is one (:mod:`videoattn.data.deferred`): NVIDIA DALI
(optional, :mod:`videoattn.data.dali`) and torchvision's nvJPEG for frame folders (optional,
:mod:`videoattn.data.nvjpeg`).

A decoder answers two questions about a media path: how many frames it has (``num_frames``) and
what the frames at given indices look like (``get_frames`` -> uint8 ``(T, H, W, 3)`` RGB, in the
order asked, repeats allowed). Every failure is a :class:`~videoattn.errors.DataError` whose message
names the path and the reason, so the dataset can record it and substitute another sample.

PyAV decoding seeks instead of decoding the whole video: a first pass *demuxes* the packets of the
video stream (no decoding) to learn every frame's timestamp and which frames are keyframes; the
frames asked for are then grouped by the keyframe that precedes them, and for each group the decoder
seeks to that keyframe (unless it is already decoding inside that group of pictures) and decodes
forward only up to the last frame needed, converting only the wanted frames to RGB. Frame ``i`` is
the ``i``-th frame in presentation order, which is also what decode-everything counting gives.
The packet index of a file is cached (per process, bounded) so later epochs skip the demux pass.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import threading
from collections import OrderedDict
from fractions import Fraction

import numpy as np

from ..errors import ConfigError, DataError, unknown_name

__all__ = [
    "Decoder",
    "PyAVDecoder",
    "TorchCodecDecoder",
    "FrameFolderDecoder",
    "build_decoder",
    "DECODERS",
    "torchcodec_available",
    "ImageFileDecoder",
    "decode_errors_as_data_error",
]


@contextlib.contextmanager
def decode_errors_as_data_error(path: str, passthrough: tuple[type[Exception], ...] = ()):
    """Inside the block, any exception but :class:`DataError` (a decoder surprise) becomes
    ``DataError("<path>: <Type>: <message>")``: an unreadable video, never a crash. Exceptions of a
    ``passthrough`` class propagate unchanged (the dali decoder's :class:`ConfigError` for a codec its
    CPU backend lacks: substituting another entry would not fix a setting)."""
    try:
        yield
    except (DataError, *passthrough):
        raise
    except Exception as error:
        raise DataError(f"{path}: {type(error).__name__}: {error}") from error

class Decoder:
    """Interface: ``name``, ``num_frames(path)``, ``get_frames(path, indices)``."""

    name = "base"
    #: Whether loader workers reading with this decoder must be spawned, not forked (it uses CUDA itself).
    needs_spawned_workers = False

    def num_frames(self, path: str) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def get_frames(self, path: str, indices) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def read(self, path: str, indices_fn) -> np.ndarray:
        """``indices_fn(num_frames) -> indices``; returns the frames. One open for both steps."""
        return self.get_frames(path, indices_fn(self.num_frames(path)))


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise DataError(f"{path}: file is missing")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, expected a video file")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: file is empty (0 bytes)")


class _LRU:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.items: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        return None

    def __getstate__(self):  # a spawned loader worker starts with an empty cache and its own lock
        return {"capacity": self.capacity}

    def __setstate__(self, state):
        self.__init__(state["capacity"])

    def put(self, key, value):
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.capacity:
                self.items.popitem(last=False)


class _PacketIndex:
    """Presentation timestamps of all frames (sorted) and the frame numbers of keyframes."""

    __slots__ = ("pts", "keyframes", "pts_to_index")

    def __init__(self, pts: list[int], keyframe_pts: list[int]):
        self.pts = pts
        self.pts_to_index = {p: i for i, p in enumerate(pts)}
        self.keyframes = sorted(self.pts_to_index[p] for p in keyframe_pts if p in self.pts_to_index)
        if not self.keyframes or self.keyframes[0] != 0:
            self.keyframes.insert(0, 0)

    def keyframe_before(self, index: int) -> int:
        return self.keyframes[bisect.bisect_right(self.keyframes, index) - 1]


class PyAVDecoder(Decoder):
    """Seek-based PyAV decoding (see the module docstring).

    ``num_threads``: FFmpeg decoding threads per process (0 lets FFmpeg choose); ``thread_type``
    "AUTO" uses frame and slice threading. ``seek``: False decodes every frame up to the last one
    needed (the baseline the benchmark compares against). ``cache_size``: packet indexes kept.
    ``seek_gap``: keep decoding instead of seeking when the next keyframe needed is at most this many
    frames ahead.
    """

    name = "pyav"
    #: Frames larger than this (width x height) are refused before decoding: a corrupt or hostile
    #: header announcing e.g. 100000 x 100000 would otherwise allocate tens of GB per frame.
    max_pixels = 8192 * 8192

    def __init__(self, num_threads: int = 1, thread_type: str = "AUTO", seek: bool = True,
                 cache_size: int = 4096, seek_gap: int = 8, hwaccel: str | None = None):
        import av  # noqa: F401  (fail early if PyAV is missing)

        self.num_threads = num_threads
        self.thread_type = thread_type
        self.seek = seek
        self.seek_gap = seek_gap
        self._index_cache = _LRU(cache_size)
        self._reformatters: dict[tuple[int, int], object] = {}
        #: FFmpeg hardware decoding (``"cuda"``: NVDEC, ``data.decoder: nvdec``); None decodes in software.
        self.hwaccel = hwaccel
        #: Why hardware decoding is not used in this process (None: not asked, or working).
        self.hwaccel_unavailable: str | None = None
        if hwaccel is not None:
            self.name = "nvdec" if hwaccel == "cuda" else f"pyav-{hwaccel}"

    @property
    def needs_spawned_workers(self) -> bool:
        """Hardware decoding initialises CUDA in the loader workers, which a worker forked from a process
        that already uses CUDA (the training process) cannot do: such workers are spawned."""
        return self.hwaccel is not None

    def _hw_open(self, path: str):
        """``av.open`` with FFmpeg's hardware decoding; once it fails in this process (no device, no
        NVDEC library, a codec it cannot decode), every later open decodes in software, with one warning."""
        import av

        if self.hwaccel_unavailable is None:
            from av.codec.hwaccel import HWAccel

            try:
                return _open_for_reading(av.open, path, hwaccel=HWAccel(device_type=self.hwaccel,
                                                                        allow_software_fallback=True))
            except Exception as error:  # noqa: BLE001 - PyAV raises PermissionError/ValueError/... per cause
                self.hwaccel_unavailable = f"{type(error).__name__}: {error}"
                import warnings

                warnings.warn(f"data.decoder {self.name!r}: FFmpeg's {self.hwaccel} hardware decoding is not "
                              f"available in this process ({self.hwaccel_unavailable}); decoding in software",
                              RuntimeWarning, stacklevel=3)
        return _open_for_reading(av.open, path)

    def _rgb(self, frame) -> np.ndarray:
        """``frame`` as RGB uint8 through one reusable swscale context per process and thread
        (``frame.to_ndarray(format=...)`` builds a new one for every frame, ~2/3 of the cost)."""
        from av.video.reformatter import VideoReformatter

        key = (os.getpid(), threading.get_ident())
        reformatter = self._reformatters.get(key)
        if reformatter is None:
            reformatter = self._reformatters[key] = VideoReformatter()
        return reformatter.reformat(frame, format="rgb24").to_ndarray()

    def _open(self, path: str):
        import av

        _check_file(path)
        try:
            container = self._hw_open(path) if self.hwaccel else _open_for_reading(av.open, path)
        except Exception as error:  # PyAV raises many subclasses (InvalidDataError, ...)
            raise DataError(f"{path}: not a readable video ({type(error).__name__}: {error})") from error
        if not container.streams.video:
            container.close()
            raise DataError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            container.close()
            raise DataError(f"{path}: its video stream has no decoder (unknown or damaged codec header)")
        width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
        if width * height > self.max_pixels:
            container.close()
            raise DataError(f"{path}: frames of {width}x{height} pixels, more than the {self.max_pixels} a "
                            f"decoder accepts (corrupt header?)")
        stream.thread_type = self.thread_type
        stream.thread_count = self.num_threads
        return container, stream

    def _index(self, path: str, container, stream) -> _PacketIndex | None:
        try:
            stat = os.stat(path)
            key = (path, stat.st_size, stat.st_mtime_ns)
        except OSError:
            key = None
        cached = self._index_cache.get(key) if key else None
        if cached is not None:
            return cached
        pts, keys = [], []
        try:
            for packet in container.demux(stream):
                size = _packet_size(packet)
                if size == 0 or packet.pts is None:
                    if size and packet.pts is None:
                        return None  # no timestamps: fall back to sequential counting
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
        except Exception as error:
            raise DataError(f"{path}: cannot read packets ({type(error).__name__}: {error})") from error
        pts = sorted(set(pts))
        if not pts:
            raise DataError(f"{path}: the video stream has no frames")
        expected = _expected_frames(container, stream)
        if expected is not None and len(pts) < 0.75 * expected and expected - len(pts) >= 2:
            raise DataError(f"{path}: truncated: the header announces about {expected} frames but only "
                            f"{len(pts)} are present")
        index = _PacketIndex(pts, keys)
        if key:
            self._index_cache.put(key, index)
        return index

    def num_frames(self, path: str) -> int:
        import av

        container, stream = self._open(path)
        try:
            index = self._index(path, container, stream)
            if index is not None:
                return len(index.pts)
            container.seek(0)
            return sum(1 for _ in self._decode(path, container, stream))
        except av.error.FFmpegError as error:  # a seek in a corrupt file raises PyAV errors of its own
            raise DataError(f"{path}: decoding failed ({type(error).__name__}: {error})") from error
        finally:
            container.close()

    def _decode(self, path, container, stream):
        try:
            yield from container.decode(stream)
        except Exception as error:
            raise DataError(f"{path}: decoding failed ({type(error).__name__}: {error})") from error

    def read(self, path: str, indices_fn) -> np.ndarray:
        import av

        container, stream = self._open(path)
        try:
            index = self._index(path, container, stream)
            total = len(index.pts) if index is not None else None
            if total is None:
                container.seek(0)
                total = sum(1 for _ in self._decode(path, container, stream))
            indices = np.asarray(indices_fn(total), dtype=np.int64).reshape(-1)
            if indices.size and (indices.min() < 0 or indices.max() >= total):
                raise DataError(f"{path}: frame indices {indices.min()}..{indices.max()} outside the video's "
                                f"{total} frames")
            if index is None or not self.seek:
                frames = self._decode_sequential(path, container, stream, indices)
            else:
                frames = self._decode_seeking(path, container, stream, index, indices)
        except av.error.FFmpegError as error:  # a seek in a corrupt file raises PyAV errors of its own
            raise DataError(f"{path}: decoding failed ({type(error).__name__}: {error})") from error
        finally:
            container.close()
        return frames

    def get_frames(self, path: str, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        return self.read(path, lambda total: indices)

    def _gather(self, path, wanted: np.ndarray, found: dict) -> np.ndarray:
        missing = [int(i) for i in np.unique(wanted) if int(i) not in found]
        if missing:
            if not found:
                raise DataError(f"{path}: no frame could be decoded (truncated or corrupt file?)")
            # A truncated tail: use the nearest decoded frame, but only for a few frames.
            have = np.array(sorted(found))
            if len(missing) > max(2, len(np.unique(wanted)) // 4):
                raise DataError(f"{path}: frames {missing[:5]}... could not be decoded (truncated file?); "
                                f"decoded {len(found)} of the frames asked")
            for i in missing:
                found[i] = found[int(have[np.abs(have - i).argmin()])]
        return np.stack([found[int(i)] for i in wanted])

    def _decode_sequential(self, path, container, stream, indices: np.ndarray) -> np.ndarray:
        container.seek(0)
        wanted = set(indices.tolist())
        last = max(wanted) if wanted else -1
        found = {}
        for position, frame in enumerate(self._decode(path, container, stream)):
            if position in wanted:
                found[position] = self._rgb(frame)
            if position >= last:
                break
        return self._gather(path, indices, found)

    def _decode_seeking(self, path, container, stream, index: _PacketIndex, indices: np.ndarray) -> np.ndarray:
        targets = sorted(set(indices.tolist()))
        found: dict[int, np.ndarray] = {}
        iterator = None
        position = -1  # index of the last frame decoded by ``iterator``
        for group_start, group in _group_by_keyframe(targets, index):
            last_needed = group[-1]
            # Seek unless already decoding inside this group of pictures, or close enough before its
            # keyframe that decoding on is cheaper than a seek (which flushes the decoder).
            if iterator is None or position >= group[0] or position < group_start - 1 - self.seek_gap:
                container.seek(index.pts[group_start], stream=stream, backward=True, any_frame=False)
                iterator = self._decode(path, container, stream)
                position = -1
            wanted = set(group)
            for frame in iterator:
                if frame.pts is None:
                    continue
                position = index.pts_to_index.get(frame.pts, position + 1)
                if position in wanted:
                    found[position] = self._rgb(frame)
                if position >= last_needed:
                    break
        return self._gather(path, indices, found)


# PyAV compatibility. The project supports every release ``av>=12`` admits (12.0 .. 19.x); where their
# APIs differ, the helpers below detect the feature instead of reading version numbers, and every other
# call is one the releases agree on. docs/data.md lists each PyAV call and what changed for it.

#: ``(av_open, accepts_metadata_errors)`` for the last ``av.open`` seen (see :func:`_open_for_reading`).
_open_keywords: tuple[object, bool] | None = None

#: FFmpeg's AV_TIME_BASE: ``container.duration`` is in microseconds.
_AV_TIME_BASE = 1_000_000

_DURATION_TAG = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*$")


def _open_for_reading(av_open, path: str, **options):
    """``av_open(path)`` (that is ``av.open``) for reading.

    PyAV 12-18 decode container and stream metadata strictly by default, so one non-UTF-8 tag in an
    otherwise valid video fails the open; they are asked for ``metadata_errors="ignore"``. PyAV 19
    removed that keyword (metadata is always decoded with ``surrogateescape`` there, which cannot
    fail). Whether this ``av_open`` takes the keyword is learnt from the TypeError of the first call
    and remembered, so later opens cost one call. ``options`` (e.g. ``hwaccel=``) are passed on.
    """
    global _open_keywords
    known = _open_keywords
    if known is None or known[0] is not av_open or known[1]:
        try:
            container = av_open(path, metadata_errors="ignore", **options)
        except TypeError as error:
            if "metadata_errors" not in str(error):
                raise
            _open_keywords = (av_open, False)
        else:
            _open_keywords = (av_open, True)
            return container
    return av_open(path, **options)


def _fraction(value) -> Fraction | None:
    """A PyAV rational as a :class:`~fractions.Fraction`, None when unset or not positive.

    PyAV <= 18 gives ``fractions.Fraction`` or None; PyAV 19 gives ``av.AVRational`` (no arithmetic
    with ``Fraction``'s guarantees, not a registered ``numbers.Rational``), never None: an unset value
    is a falsy ``AVRational(0, 1)``. Both expose ``numerator`` and ``denominator``.
    """
    if value is None:
        return None
    try:
        numerator, denominator = int(value.numerator), int(value.denominator)
    except (AttributeError, TypeError, ValueError):
        return None
    if numerator <= 0 or denominator <= 0:
        return None
    return Fraction(numerator, denominator)


def _packet_size(packet) -> int | None:
    """Bytes in a demuxed packet: ``packet.size``, else its buffer's size (``size`` may be None in
    newer PyAV); None when neither is known."""
    size = getattr(packet, "size", None)
    if size is None:
        size = getattr(packet, "buffer_size", None)
    return size


def _stream_seconds(stream) -> Fraction | None:
    """The video stream's own duration in seconds: ``duration x time_base`` when the container stores
    a per-stream duration (MP4/MOV), else the per-track ``DURATION`` tag Matroska/WebM muxers write
    (``"00:00:01.666000000"``); None when neither is there."""
    time_base = _fraction(stream.time_base)
    duration = stream.duration
    if duration is not None and int(duration) > 0 and time_base is not None:
        return int(duration) * time_base
    for key, value in dict(stream.metadata or {}).items():
        if str(key).upper() == "DURATION" and (match := _DURATION_TAG.match(str(value))):
            hours, minutes, seconds = match.groups()
            return (int(hours) * 3600 + int(minutes) * 60) + Fraction(seconds)
    return None


def _expected_frames(container, stream) -> int | None:
    """Frames the header announces for the video stream, or None when it does not tell.

    The stream's frame count when the container stores one (MP4/MOV), else the stream's own duration
    (:func:`_stream_seconds`) times its frame rate. The container's duration is used only when the
    video is its only stream: it is the longest stream's, and a file whose audio outlasts its video
    (common in Kinetics downloads) would otherwise look truncated.
    """
    try:
        frames = int(stream.frames or 0)
        if frames > 0:
            return frames
        rate = _fraction(stream.average_rate) or _fraction(stream.guessed_rate)
        if rate is None:
            return None
        seconds = _stream_seconds(stream)
        if seconds is None and container.duration and len(container.streams) == 1:
            seconds = Fraction(int(container.duration), _AV_TIME_BASE)
        if seconds is None or seconds <= 0:
            return None
        return round(seconds * rate)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return None


def _group_by_keyframe(targets: list[int], index: _PacketIndex):
    groups: list[tuple[int, list[int]]] = []
    for target in targets:
        key = index.keyframe_before(target)
        if groups and groups[-1][0] == key:
            groups[-1][1].append(target)
        else:
            groups.append((key, [target]))
    return groups


def torchcodec_available() -> bool:
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception:  # ImportError, or missing FFmpeg libraries raising OSError/RuntimeError
        return False
    return True


class TorchCodecDecoder(Decoder):
    """torchcodec's ``VideoDecoder`` (optional dependency; frame-accurate seeking in C++)."""

    name = "torchcodec"

    def __init__(self, num_threads: int = 1, seek_mode: str = "approximate"):
        if not torchcodec_available():
            raise DataError("decoder 'torchcodec' was asked for but torchcodec (with its FFmpeg libraries) "
                            "cannot be imported; install it with `pip install torchcodec` or use "
                            "decoder='pyav'")
        self.num_threads = num_threads
        self.seek_mode = seek_mode

    def _decoder(self, path: str):
        from torchcodec.decoders import VideoDecoder

        _check_file(path)
        try:
            return VideoDecoder(path, seek_mode=self.seek_mode, num_ffmpeg_threads=self.num_threads)
        except TypeError:  # older torchcodec without these keywords
            return VideoDecoder(path)
        except Exception as error:
            raise DataError(f"{path}: not a readable video ({type(error).__name__}: {error})") from error

    def num_frames(self, path: str) -> int:
        decoder = self._decoder(path)
        count = decoder.metadata.num_frames
        if not count:
            raise DataError(f"{path}: the video stream has no frames")
        return int(count)

    def read(self, path: str, indices_fn) -> np.ndarray:
        decoder = self._decoder(path)
        total = int(decoder.metadata.num_frames or 0)
        if total < 1:
            raise DataError(f"{path}: the video stream has no frames")
        indices = np.asarray(indices_fn(total), dtype=np.int64).reshape(-1)
        try:
            batch = decoder.get_frames_at(indices=indices.tolist())
        except Exception as error:
            raise DataError(f"{path}: decoding failed ({type(error).__name__}: {error})") from error
        data = batch.data if hasattr(batch, "data") else batch
        return data.permute(0, 2, 3, 1).contiguous().numpy()

    def get_frames(self, path: str, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        return self.read(path, lambda total: indices)


class FrameFolderDecoder(Decoder):
    """JPEG (or PNG) frame folders read with Pillow.

    ``template`` names frame ``k`` (1-based, ``start_index``) inside the folder, e.g. ``"{:05d}.jpg"``
    (SSv1) or ``"img_{:05d}.jpg"`` (TSN lists). The frame count is the number of files matching the
    template's pattern (cached per folder and modification time).
    """

    name = "frames"

    def __init__(self, template: str = "{:05d}.jpg", start_index: int = 1, cache_size: int = 65536):
        self.template = template
        self.start_index = start_index
        self._counts = _LRU(cache_size)
        self._pattern = self._compile(template)

    @staticmethod
    def _compile(template: str):
        head, _, rest = template.partition("{")
        _, _, tail = rest.partition("}")
        return re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + "$")

    def with_template(self, template: str | None) -> FrameFolderDecoder:
        if template is None or template == self.template:
            return self
        return FrameFolderDecoder(template, self.start_index)

    def num_frames(self, path: str) -> int:
        if not os.path.isdir(path):
            raise DataError(f"{path}: frame folder is missing" if not os.path.exists(path)
                            else f"{path}: expected a frame folder, found a file")
        key = (path, os.stat(path).st_mtime_ns)
        count = self._counts.get(key)
        if count is None:
            numbers = sorted(int(m.group(1)) for name in os.listdir(path)
                             if (m := self._pattern.match(name)))
            count = len(numbers)
            self._counts.put(key, count)
        if count == 0:
            raise DataError(f"{path}: frame folder has no frames named like {self.template!r}")
        return count

    def get_frames(self, path: str, indices) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        loaded: dict[int, np.ndarray] = {}
        for i in np.unique(indices).tolist():
            name = os.path.join(path, self.template.format(i + self.start_index))
            try:
                with Image.open(name) as image:
                    loaded[i] = np.asarray(image.convert("RGB"))
            except FileNotFoundError as error:
                raise DataError(f"{name}: frame file is missing") from error
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
                raise DataError(f"{name}: unreadable image ({type(error).__name__}: {error})") from error
        shapes = {frame.shape for frame in loaded.values()}
        if len(shapes) > 1:
            raise DataError(f"{path}: frames have different sizes {sorted(shapes)}")
        return np.stack([loaded[i] for i in indices.tolist()])


class ImageFileDecoder(Decoder):
    """One image file read with Pillow as a one-frame video ``(1, H, W, 3)`` (image-folder datasets)."""

    name = "pillow"

    def num_frames(self, path: str) -> int:
        _check_file(path)
        return 1

    def get_frames(self, path: str, indices) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                frame = np.asarray(image.convert("RGB"))
        except FileNotFoundError as error:
            raise DataError(f"{path}: file is missing") from error
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise DataError(f"{path}: unreadable image ({type(error).__name__}: {error})") from error
        return np.stack([frame for _ in np.asarray(indices).reshape(-1)])


DECODERS = ("auto", "pyav", "torchcodec", "frames", "dali", "nvjpeg", "nvdec")


def build_nvdec_decoder(frames: bool, **options) -> PyAVDecoder:
    """``data.decoder: nvdec``: PyAV with FFmpeg's CUDA hardware decoding (NVDEC: H.264, HEVC, VP8, VP9,
    AV1 on recent GPUs), in the loader workers, which are then spawned (:attr:`PyAVDecoder.needs_spawned_workers`).
    PyAV's wheels ship an FFmpeg built with it; the driver's NVDEC library is loaded at run time. Where
    it is missing (no GPU, as here) each worker warns once and decodes in software: the same frames.
    A ConfigError for frame folders and for a PyAV without hardware decoding (< 14)."""
    if frames:
        raise ConfigError("config key 'data.decoder': 'nvdec' decodes video files, but this dataset's media are "
                          "frame folders; use 'nvjpeg' (GPU JPEG decoding) or 'frames'")
    try:
        from av.codec.hwaccel import HWAccel  # noqa: F401
    except ImportError as error:
        import av

        raise ConfigError(f"config key 'data.decoder': 'nvdec' needs PyAV >= 14 (hardware decoding); PyAV "
                          f"{av.__version__} is installed: pip install -U av") from error
    return PyAVDecoder(hwaccel="cuda", **options)


def build_decoder(name: str, frames: bool = False, frame_template: str | None = None, **options) -> Decoder:
    """``name`` in :data:`DECODERS`; "auto" picks "frames" for frame-folder datasets, else "pyav".

    "dali" reads video files and frame folders alike (:class:`~videoattn.data.dali.DaliDecoder`, counting
    with PyAV or the folder's file names); ``options`` may give its ``num_threads``. "nvjpeg" reads frame
    folders only (:class:`~videoattn.data.nvjpeg.NvJpegDecoder`); with video files it is a ConfigError.
    """
    if name not in DECODERS:
        raise unknown_name("decoder", name, list(DECODERS))
    if name == "dali":
        from .dali import DaliDecoder, require_dali

        require_dali()
        cpu = FrameFolderDecoder(frame_template or "{:05d}.jpg") if frames else PyAVDecoder()
        return DaliDecoder(cpu, **options)
    if name == "nvjpeg":
        from .nvjpeg import NvJpegDecoder, refuse_videos

        if not frames:
            raise refuse_videos()
        return NvJpegDecoder(FrameFolderDecoder(frame_template or "{:05d}.jpg"))
    if name == "nvdec":
        return build_nvdec_decoder(frames, **options)
    if name == "auto":
        name = "frames" if frames else "pyav"
    if name == "frames":
        return FrameFolderDecoder(frame_template or "{:05d}.jpg")
    if frames:
        raise DataError(f"decoder {name!r} reads video files, but this dataset's media are frame folders; "
                        f"use decoder='frames' or 'auto'")
    if name == "pyav":
        return PyAVDecoder(**options)
    return TorchCodecDecoder(**options)
