"""The PyAV decoder across the releases ``av>=12`` admits (12.0 .. 19.x), on whichever one is installed.

PyAV 19 changed calls the decoder makes (docs/data.md, "PyAV releases"): ``av.open`` lost
``metadata_errors``; ``time_base`` and the frame rates became ``av.AVRational`` (never None: unset is a
falsy 0/1); ``InputContainer.flush_buffers`` is gone; a packet's ``size`` may be None. The fakes below
give the installed PyAV that API (a stand-in ``AVRational`` offering only what av 19.0.2's
``av/rational.pyi`` declares), so the new-API path runs here whatever release is installed.

Also: the header check must use the video stream's own length (issue 31 item 2), so files whose audio
outlasts the video (MP4 + AAC, WebM + Opus, Matroska) are read whole, not rejected as truncated.
"""

from __future__ import annotations

import math
from fractions import Fraction
from types import SimpleNamespace

import av
import numpy as np
import pytest

from videoattn.data import decoders
from videoattn.data.decoders import PyAVDecoder, _expected_frames
from videoattn.errors import DataError

from ._data_media import frame_number, moving_square_frames

# --------------------------------------------------------------------------------------------------
# A stand-in for av 19's AVRational: the operations its stub declares, nothing more (in particular
# it is not a numbers.Rational, so fractions.Fraction(x) and Fraction arithmetic on it are not given).


class AVRational19:
    def __init__(self, num: int = 0, den: int = 1):
        divisor = math.gcd(num, den) or 1
        if den < 0:
            divisor = -divisor
        self.num, self.den = num // divisor, den // divisor

    @property
    def numerator(self) -> int:
        return self.num

    @property
    def denominator(self) -> int:
        return self.den

    def __repr__(self) -> str:
        return f"AVRational19({self.num}, {self.den})"

    def __bool__(self) -> bool:
        return self.num != 0 and self.den != 0

    def __float__(self) -> float:
        return self.num / self.den if self.den else math.nan

    def __hash__(self) -> int:
        return hash((self.num, self.den))

    def __eq__(self, other) -> bool:
        if isinstance(other, AVRational19):
            return (self.num, self.den) == (other.num, other.den)
        return self.den != 0 and Fraction(self.num, self.den) == other

    def _promote(self, other):
        if isinstance(other, AVRational19):
            return Fraction(other.num, other.den), True
        if isinstance(other, (int, Fraction)):
            return Fraction(other), False
        if isinstance(other, float):
            return other, False
        return NotImplemented, False

    def _binary(self, other, op, reflected: bool):
        value, both = self._promote(other)
        if value is NotImplemented:
            return NotImplemented
        mine = Fraction(self.num, self.den) if not isinstance(value, float) else float(self)
        result = op(value, mine) if reflected else op(mine, value)
        if both:
            return AVRational19(result.numerator, result.denominator)
        return result

    def __mul__(self, other):
        return self._binary(other, lambda a, b: a * b, False)

    def __rmul__(self, other):
        return self._binary(other, lambda a, b: a * b, True)

    def __truediv__(self, other):
        return self._binary(other, lambda a, b: a / b, False)

    def __rtruediv__(self, other):
        return self._binary(other, lambda a, b: a / b, True)

    def __add__(self, other):
        return self._binary(other, lambda a, b: a + b, False)

    def __radd__(self, other):
        return self._binary(other, lambda a, b: a + b, True)

    def __sub__(self, other):
        return self._binary(other, lambda a, b: a - b, False)

    def __rsub__(self, other):
        return self._binary(other, lambda a, b: a - b, True)


def _avrational(value) -> AVRational19:
    """What av 19 returns for a rational attribute: AVRational, 0/1 where older releases gave None."""
    if value is None:
        return AVRational19(0, 1)
    return AVRational19(value.numerator, value.denominator)


def test_the_stand_in_is_not_a_fraction():
    """The stand-in must not accidentally behave like fractions.Fraction (or the tests prove nothing)."""
    rate = AVRational19(24000, 1001)
    with pytest.raises(TypeError):
        Fraction(rate)
    assert not hasattr(rate, "limit_denominator")
    assert not AVRational19(0, 1) and AVRational19(0, 1) is not None
    assert 1001 * rate == 24000 and isinstance(1001 * rate, Fraction)


# --------------------------------------------------------------------------------------------------
# The installed PyAV behind av 19's API.


class _Packet19:
    """A demuxed packet whose ``size`` is None (allowed by newer PyAV); ``buffer_size`` still tells."""

    def __init__(self, packet, drop_pts: bool = False):
        self._packet = packet
        self.size = None
        self.buffer_size = packet.buffer_size
        self.pts = None if drop_pts else packet.pts
        self.is_keyframe = packet.is_keyframe


class _Stream19:
    """A video stream whose rationals are AVRational (0/1 when unset), attributes otherwise passed on."""

    _RATIONALS = ("time_base", "average_rate", "guessed_rate", "base_rate")

    def __init__(self, stream):
        object.__setattr__(self, "_stream", stream)

    def __getattr__(self, name):
        value = getattr(self._stream, name)
        return _avrational(value) if name in self._RATIONALS else value

    def __setattr__(self, name, value):
        setattr(self._stream, name, value)


class _Container19:
    """An input container without ``flush_buffers``, handing out the stream and packets above."""

    def __init__(self, container, drop_pts: bool = False):
        self._container = container
        self._drop_pts = drop_pts
        self._video = [_Stream19(stream) for stream in container.streams.video]
        self.streams = _Streams19(self._video, len(container.streams))
        self.duration = container.duration

    def _real(self, stream):
        return stream._stream if isinstance(stream, _Stream19) else stream

    def demux(self, stream):
        for packet in self._container.demux(self._real(stream)):
            yield _Packet19(packet, self._drop_pts)

    def decode(self, stream):
        return self._container.decode(self._real(stream))

    def seek(self, offset, *, stream=None, **options):
        return self._container.seek(offset, stream=self._real(stream), **options)

    def close(self):
        self._container.close()

    def __getattr__(self, name):
        if name == "flush_buffers":
            raise AttributeError("'InputContainer' object has no attribute 'flush_buffers' (removed in av 19)")
        return getattr(self._container, name)


class _Streams19:
    def __init__(self, video, count):
        self.video = video
        self._count = count

    def __len__(self):
        return self._count


def _av19_open(drop_pts: bool = False, calls: list | None = None):
    """A fake ``av.open`` with av 19.0.2's signature (no ``stream_options``, ``metadata_encoding``,
    ``metadata_errors``) returning the installed PyAV's container behind av 19's API."""
    real_open = av.open

    def open(file, mode=None, format=None, options=None, container_options=None, buffer_size=32768,  # noqa: A001
             timeout=None, io_open=None, hwaccel=None):
        if calls is not None:
            calls.append(file)
        container = real_open(file, mode=mode, format=format, options=options,
                              container_options=container_options, buffer_size=buffer_size, timeout=timeout)
        return _Container19(container, drop_pts)

    return open


@pytest.fixture
def fresh_open_detection(monkeypatch):
    """Forget what the decoder learnt about ``av.open``'s keywords (each test brings its own)."""
    monkeypatch.setattr(decoders, "_open_keywords", None)


@pytest.mark.parametrize("seek", [True, False])
@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm"])
def test_decoder_under_the_pyav19_api(media_dir, monkeypatch, fresh_open_detection, name, seek):
    calls = []
    monkeypatch.setattr(av, "open", _av19_open(calls=calls))
    path = str(media_dir / name)
    decoder = PyAVDecoder(seek=seek, seek_gap=0)
    assert decoder.num_frames(path) == 12
    indices = [11, 0, 5, 5, 9, 2]
    frames = decoder.get_frames(path, indices)
    assert [frame_number(frame) for frame in frames] == indices
    assert calls == [path, path]  # one call per open: the keyword test is remembered, not repeated


def test_packets_without_timestamps_or_size_fall_back_to_counting(media_dir, monkeypatch, fresh_open_detection):
    """size None but a buffer: a real packet; with no pts either, the decoder counts by decoding."""
    monkeypatch.setattr(av, "open", _av19_open(drop_pts=True))
    path = str(media_dir / "clip.webm")
    decoder = PyAVDecoder()
    assert decoder.num_frames(path) == 12
    assert [frame_number(frame) for frame in decoder.get_frames(path, [7, 1])] == [7, 1]


def test_releases_up_to_18_are_asked_to_ignore_undecodable_metadata(media_dir, monkeypatch, fresh_open_detection):
    """av.open of PyAV 12-18 takes ``metadata_errors`` (a non-UTF-8 tag would otherwise fail the open)."""
    seen = []
    real_open = av.open

    def open18(file, mode=None, format=None, options=None, container_options=None, stream_options=None,  # noqa: A001
               metadata_encoding="utf-8", metadata_errors="strict", buffer_size=32768, timeout=None,
               io_open=None, hwaccel=None):
        seen.append(metadata_errors)
        return real_open(file)

    monkeypatch.setattr(av, "open", open18)
    decoder = PyAVDecoder()
    assert decoder.num_frames(str(media_dir / "clip.mp4")) == 12
    assert decoder.num_frames(str(media_dir / "clip.webm")) == 12
    assert seen == ["ignore", "ignore"]


def test_other_type_errors_from_open_are_not_mistaken_for_a_missing_keyword(media_dir, monkeypatch,
                                                                             fresh_open_detection):
    def broken_open(file, **options):
        raise TypeError("expected str, bytes or os.PathLike object")

    monkeypatch.setattr(av, "open", broken_open)
    with pytest.raises(DataError, match="not a readable video .TypeError: expected str"):
        PyAVDecoder().num_frames(str(media_dir / "clip.mp4"))


def _write_with_latin1_tags(path, fmt):
    """A valid video whose container and stream titles are Latin-1 bytes (not UTF-8), as old taggers
    write them. PyAV <= 18 writes them through ``metadata_encoding``; PyAV 19, which removed it, writes
    the bytes given as ``surrogateescape`` strings."""
    try:
        container = av.open(str(path), mode="w", format=fmt, metadata_encoding="latin-1")
        title = "caf\u00e9"
    except TypeError:
        container = av.open(str(path), mode="w", format=fmt)
        title = "caf\udce9"
    with container:
        container.metadata["title"] = title
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.metadata["title"] = title
        for image in moving_square_frames(6):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize("fmt", ["mp4", "matroska"])
def test_a_tag_that_is_not_utf8_does_not_make_a_video_unreadable(fmt, tmp_path, fresh_open_detection):
    """With the installed PyAV, whatever its release: <= 18 needs ``metadata_errors``, 19 never fails."""
    path = tmp_path / f"latin1.{fmt}"
    _write_with_latin1_tags(path, fmt)
    assert b"caf\xe9" in path.read_bytes()  # the file really holds a non-UTF-8 tag
    decoder = PyAVDecoder()
    assert decoder.num_frames(str(path)) == 6
    assert [frame_number(frame) for frame in decoder.get_frames(str(path), [5, 0])] == [5, 0]


# --------------------------------------------------------------------------------------------------
# _expected_frames: the video stream's own length, with Fraction (av <= 18) or AVRational (av 19).


def _stream(*, frames=0, duration=None, time_base=None, average_rate=None, guessed_rate=None, metadata=None,
            av19=False):
    rational = _avrational if av19 else (lambda value: value)
    return SimpleNamespace(frames=frames, duration=duration, time_base=rational(time_base),
                           average_rate=rational(average_rate), guessed_rate=rational(guessed_rate),
                           metadata=metadata or {})


def _container(duration, streams):
    return SimpleNamespace(duration=duration, streams=[None] * streams)


@pytest.mark.parametrize("av19", [False, True])
def test_expected_frames_ignores_a_longer_audio_track(av19):
    # WebM/Matroska: no per-stream duration, the muxer's per-track DURATION tag; 3 s of audio.
    webm = _stream(time_base=Fraction(1, 1000), average_rate=Fraction(12), guessed_rate=Fraction(12),
                   metadata={"DURATION": "00:00:01.666000000"}, av19=av19)
    assert _expected_frames(_container(3_008_000, 2), webm) == 20
    # MP4 without a frame count (fragmented): the stream's own duration in its time base.
    mp4 = _stream(duration=20480, time_base=Fraction(1, 12288), average_rate=Fraction(12), av19=av19)
    assert _expected_frames(_container(3_008_000, 2), mp4) == 20
    # A stored frame count wins.
    counted = _stream(frames=20, duration=20480, time_base=Fraction(1, 12288), average_rate=Fraction(12), av19=av19)
    assert _expected_frames(_container(3_008_000, 2), counted) == 20


@pytest.mark.parametrize("av19", [False, True])
def test_expected_frames_uses_the_container_only_for_a_lone_video_stream(av19):
    untagged = _stream(time_base=Fraction(1, 1000), average_rate=Fraction(12), av19=av19)
    assert _expected_frames(_container(1_000_000, 1), untagged) == 12
    assert _expected_frames(_container(3_008_000, 2), untagged) is None  # the header does not tell
    assert _expected_frames(_container(None, 1), untagged) is None


@pytest.mark.parametrize("av19", [False, True])
def test_expected_frames_with_unset_rationals(av19):
    # The average rate unset (None up to av 18, a falsy 0/1 in av 19): the guessed rate is used.
    guessed = _stream(duration=2000, time_base=Fraction(1, 1000), average_rate=None, guessed_rate=Fraction(25),
                      av19=av19)
    assert _expected_frames(_container(9_000_000, 2), guessed) == 50
    # The time base unset: a per-stream duration cannot be read; a lone stream falls back to the container.
    no_time_base = _stream(duration=2000, time_base=None, average_rate=Fraction(25), av19=av19)
    assert _expected_frames(_container(2_000_000, 1), no_time_base) == 50
    assert _expected_frames(_container(2_000_000, 2), no_time_base) is None
    no_rate = _stream(duration=2000, time_base=Fraction(1, 1000), av19=av19)
    assert _expected_frames(_container(2_000_000, 1), no_rate) is None


# --------------------------------------------------------------------------------------------------
# Real files whose audio track outlasts the video (issue 31 item 2).

_AV_FILES = {  # container format, video codec, audio encoder
    "mp4": ("mp4", "libx264", "aac"),
    "webm": ("webm", "libvpx-vp9", "libopus"),
    "mkv": ("matroska", "libx264", "aac"),
}


def _write_video_with_longer_audio(path, fmt, video_codec, audio_codec, num_frames=20, fps=12,
                                   audio_seconds=2.5, sample_rate=16000):
    frames = moving_square_frames(num_frames)
    with av.open(str(path), mode="w", format=fmt) as container:
        video = container.add_stream(video_codec, rate=fps)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        video.options = {"crf": "10", "threads": "1"} if video_codec == "libx264" else \
            {"crf": "10", "b": "0", "deadline": "realtime", "cpu-used": "8", "threads": "1"}
        audio = container.add_stream(audio_codec, rate=sample_rate)
        audio.layout = "mono"
        for image in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        sample_format = audio.codec_context.format.name
        chunk = audio.codec_context.frame_size or 1024
        for start in range(0, int(audio_seconds * sample_rate), chunk):
            tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(start, start + chunk) / sample_rate)
            samples = tone.astype(np.float32)[None] if sample_format.startswith("flt") else \
                (tone * 32767).astype(np.int16)[None]
            frame = av.AudioFrame.from_ndarray(samples, format=sample_format, layout="mono")
            frame.sample_rate, frame.pts = sample_rate, start
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)


@pytest.mark.parametrize("kind", sorted(_AV_FILES))
def test_video_with_longer_audio_is_not_truncated(kind, tmp_path):
    fmt, video_codec, audio_codec = _AV_FILES[kind]
    for codec in (video_codec, audio_codec):
        if codec not in av.codecs_available:
            pytest.skip(f"this PyAV build has no {codec} encoder")
    path = tmp_path / f"with_audio.{kind}"
    _write_video_with_longer_audio(path, fmt, video_codec, audio_codec)
    with av.open(str(path)) as container:  # the file is what the test means: audio outlasts the video
        assert container.duration / 1_000_000 > 2.4 and len(container.streams.audio) == 1
    for seek in (True, False):
        decoder = PyAVDecoder(seek=seek)
        assert decoder.num_frames(str(path)) == 20
        indices = [19, 0, 10, 13]
        assert [frame_number(frame) for frame in decoder.get_frames(str(path), indices)] == indices


def test_a_truncated_webm_with_audio_is_still_refused(tmp_path):
    path = tmp_path / "with_audio.webm"
    _write_video_with_longer_audio(path, *_AV_FILES["webm"], num_frames=30)
    cut = tmp_path / "cut.webm"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 4])
    with pytest.raises(DataError, match=r"cut.webm: truncated: the header announces about 30 frames"):
        PyAVDecoder().num_frames(str(cut))
