"""Robust streaming decode for curation: constant-rate RGB frames and 16 kHz mono audio.

Frames come out on a constant-rate grid (the stream's nominal fps unless asked otherwise) by
sample-and-hold on presentation timestamps: grid index i shows the latest frame at or before
``video_start + i / fps`` (half a frame of tolerance absorbs timestamp jitter), so
variable-frame-rate sources repeat a frame over holes and drop surplus frames. Display-matrix rotation is
applied (multiples of 90 degrees). Damaged packets are skipped and counted in a
:class:`DecodeReport`; what decodes is kept. Audio is placed on the same timeline (sample 0 is
the first video frame's time), resampled with PyAV's ``AudioResampler`` to mono float32.
Nothing is read into memory beyond the frames a caller holds.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import av.error
import cv2
import numpy as np

from lpm_models.data.curation.types import Rejected

log = logging.getLogger(__name__)

_SEEK_MARGIN_S = 0.5  # seek this far before a requested start, then decode forward


@dataclass(frozen=True)
class VideoInfo:
    """Stream facts. ``width``/``height`` are display sizes (after rotation); times in seconds."""

    path: str
    width: int
    height: int
    rotation: int  # degrees counter-clockwise applied for display (0, 90, 180, 270)
    fps: float
    n_frames: int  # frames on the constant-rate grid (estimated from the duration)
    duration_s: float
    start_s: float  # video stream start time; audio sample 0 sits here
    has_audio: bool
    audio_rate: int
    audio_channels: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DecodeReport:
    """What happened while decoding one stream (filled in while iterating)."""

    decoded: int = 0  # frames (video) or samples (audio) the decoder produced
    yielded: int = 0  # frames / samples handed to the caller
    filled: int = 0  # grid frames repeated, or audio samples zero-filled, over gaps
    dropped: int = 0  # frames mapped to an index already yielded (VFR duplicates)
    errors: int = 0  # packets that failed to decode
    first_error: str = ""
    stopped_early: bool = False  # demuxing failed before the end of the file
    last_time_s: float = 0.0  # timestamp of the last good frame

    @property
    def clean(self) -> bool:
        return self.errors == 0 and not self.stopped_early

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"clean": self.clean}

    def note_error(self, exc: Exception) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = f"{type(exc).__name__}: {exc}"


def _open(path: Path | str) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise Rejected("unreadable", f"cannot open {path}: {exc}; run the media probe first") from exc


def _video_stream(container: av.container.InputContainer, path: Path | str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise Rejected("no_video_stream", f"{path} has no video stream")
    return container.streams.video[0]


def _stream_fps(stream: av.video.stream.VideoStream) -> float:
    """Nominal frame rate: the stream's base rate (r_frame_rate) unless it is implausible next to the
    average rate (variable-rate phone footage can report e.g. 90000), else the average rate."""
    average = float(stream.average_rate or 0)
    base = float(stream.guessed_rate or stream.base_rate or 0)
    if 1.0 <= base <= 120.0 and (average == 0 or 0.5 * base <= average <= 1.05 * base):
        return base
    if 1.0 <= average <= 240.0:
        return average
    raise Rejected("unreadable", f"video stream has no usable frame rate (base {base}, average {average})")


def _rotation(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """Display rotation (degrees CCW, multiple of 90) read from the first decodable frame."""
    try:
        for frame in container.decode(stream):
            return int(round(frame.rotation / 90.0)) * 90 % 360
    except av.error.FFmpegError:
        return 0
    return 0


def probe(path: Path | str) -> VideoInfo:
    """Read stream facts (opens the file and decodes one frame for the rotation)."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        fps = _stream_fps(stream)
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        if stream.duration is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = stream.frames / fps if stream.frames else 0.0
        audio = container.streams.audio[0] if container.streams.audio else None
        rotation = _rotation(container, stream)
        width, height = stream.width, stream.height
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(
            path=str(path), width=width, height=height, rotation=rotation, fps=fps,
            n_frames=int(round(duration * fps)), duration_s=duration, start_s=start,
            has_audio=audio is not None, audio_rate=int(audio.rate or 0) if audio else 0,
            audio_channels=int(audio.channels or 0) if audio else 0,
        )


def analysis_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(w, h) scaled so max(w, h) <= max_side (never upscaled), both even and >= 2."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def _to_rgb(frame: av.VideoFrame, size: tuple[int, int], rotation: int) -> np.ndarray:
    """(H, W, 3) uint8 contiguous RGB, scaled to ``size`` (pre-rotation w, h) then rotated."""
    width, height = size
    if (frame.width, frame.height) != (width, height):
        image = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
    elif frame.format.name == "yuv420p" and width % 2 == 0 and height % 2 == 0:
        # OpenCV's BT.601 conversion is faster than swscale for full-size frames
        image = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    else:
        image = frame.to_ndarray(format="rgb24")
    if rotation:
        image = np.ascontiguousarray(np.rot90(image, rotation // 90))
    return image


def _packets_frames(container: av.container.InputContainer, stream: Any,
                    report: DecodeReport) -> Iterator[Any]:
    """Decoded frames of ``stream``; undecodable packets are counted and skipped."""
    demuxed = container.demux(stream)
    while True:
        try:
            packet = next(demuxed)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:
            report.note_error(exc)
            report.stopped_early = True
            log.warning("demuxing %s stopped early: %s", container.name, exc)
            return
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            report.note_error(exc)
            continue
        yield from frames


def _hold_on_grid(
    frames: Iterator[av.VideoFrame], *, t0: float, fps: float, source_fps: float, start: int, stop: int,
    convert: Callable[[av.VideoFrame], np.ndarray], report: DecodeReport,
) -> Iterator[tuple[int, np.ndarray]]:
    """Sample-and-hold onto the grid: index i shows the latest frame at or before i/fps (+ half a
    frame of tolerance for timestamp jitter). Frames are converted only when shown."""
    tol = 0.5 / max(fps, source_fps)
    held: av.VideoFrame | None = None
    held_rgb: np.ndarray | None = None
    held_first, shown, index, last_time = 0, False, start, 0.0
    for frame in frames:
        if frame.time is None:
            continue
        report.decoded += 1
        first = math.ceil((frame.time - t0 - tol) * fps - 1e-6)  # first grid index this frame covers
        if held is not None:
            while index < min(first, stop):
                held_rgb = convert(held) if held_rgb is None else held_rgb
                report.filled += int(shown)
                report.yielded += 1
                shown = True
                yield index, held_rgb
                index += 1
            report.dropped += int(not shown and held_first >= start)
            if index >= stop:
                return
        held, held_rgb, held_first, shown, last_time = frame, None, first, False, float(frame.time)
        report.last_time_s = last_time
    if held is None:
        return
    end = min(stop, math.ceil((last_time - t0 + 1.0 / source_fps - tol) * fps - 1e-6))
    while index < end:
        held_rgb = convert(held) if held_rgb is None else held_rgb
        report.filled += int(shown)
        report.yielded += 1
        shown = True
        yield index, held_rgb
        index += 1


def iter_frames(
    path: Path | str, *, start_frame: int = 0, end_frame: int | None = None,
    max_side: int | None = None, threads: int = 1, report: DecodeReport | None = None,
    fps: float | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, rgb)`` for grid frames ``start_frame <= index < end_frame``.

    rgb: (H, W, 3) uint8, display orientation, downscaled so max(H, W) <= ``max_side``.
    Indices are consecutive on a grid at ``fps`` (default: the stream's nominal rate); gaps in
    the source repeat the previous frame (``report.filled``), surplus frames are dropped.
    """
    report = report if report is not None else DecodeReport()
    info = probe(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.codec_context.thread_count = threads
        if threads != 1:
            stream.thread_type = "AUTO"
        grid_fps = fps or info.fps
        size = analysis_size(stream.width, stream.height, max_side)
        if start_frame > 0:
            target = info.start_s + start_frame / grid_fps - _SEEK_MARGIN_S
            if target > info.start_s:
                container.seek(int(target / stream.time_base), stream=stream, backward=True)
        yield from _hold_on_grid(
            _packets_frames(container, stream, report), t0=info.start_s, fps=grid_fps, source_fps=info.fps,
            start=start_frame, stop=end_frame if end_frame is not None else sys.maxsize,
            convert=lambda frame: _to_rgb(frame, size, info.rotation), report=report)
    if report.errors:
        log.warning("decoded %s with %d bad packet(s) (first: %s); kept %d frames",
                    path, report.errors, report.first_error, report.yielded)


@dataclass
class AudioClip:
    """samples: (S,) float32 mono in [-1, 1] at ``sample_rate``; sample 0 at ``start_s`` of the video timeline."""

    samples: np.ndarray
    sample_rate: int
    start_s: float
    report: DecodeReport

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def _resampled(resampler: av.AudioResampler | None, frame: av.AudioFrame | None,
               sample_rate: int) -> tuple[av.AudioResampler, np.ndarray]:
    """Resample one frame (or flush with None) to mono float32; recreate on format changes."""
    if resampler is None:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    out = resampler.resample(frame)
    chunks = [f.to_ndarray().reshape(-1) for f in out]
    data = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    return resampler, data


def iter_audio(
    path: Path | str, *, sample_rate: int = 16000, start_s: float = 0.0,
    report: DecodeReport | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_sample, samples)`` chunks of mono float32 audio on the video timeline.

    Sample ``i`` is at time ``video_start + i / sample_rate``. Chunks are contiguous from the
    first chunk at or before ``start_s``; gaps (damage, late start) are filled with zeros.
    """
    report = report if report is not None else DecodeReport()
    with _open(path) as container:
        if not container.streams.audio:
            raise Rejected("no_audio_stream", f"{path} has no audio stream; curation needs the conversation audio")
        stream = container.streams.audio[0]
        video = container.streams.video[0] if container.streams.video else None
        t0 = float(video.start_time * video.time_base) if video is not None and video.start_time is not None else 0.0
        if start_s > _SEEK_MARGIN_S:
            container.seek(int((t0 + start_s - _SEEK_MARGIN_S) / stream.time_base), stream=stream, backward=True)
        resampler: av.AudioResampler | None = None
        layout_key: tuple[Any, ...] | None = None
        cursor: int | None = None  # next sample position to emit
        for frame in _packets_frames(container, stream, report):
            key = (frame.format.name, frame.layout.name, frame.sample_rate)
            if key != layout_key and resampler is not None:
                _, tail = _resampled(resampler, None, sample_rate)
                if len(tail) and cursor is not None:
                    yield cursor, tail
                    cursor += len(tail)
                resampler = None
            layout_key = key
            report.decoded += frame.samples
            position = int(round(((frame.time if frame.time is not None else t0) - t0) * sample_rate))
            resampler, data = _resampled(resampler, frame, sample_rate)
            if cursor is None:
                cursor = position
            elif position - cursor > sample_rate // 50:  # > 20 ms hole in the timestamps
                report.filled += position - cursor
                yield cursor, np.zeros(position - cursor, np.float32)
                cursor = position
            if len(data):
                report.yielded += len(data)
                yield cursor, data
                cursor += len(data)
            report.last_time_s = float(frame.time or 0.0)
        if resampler is not None and cursor is not None:
            _, tail = _resampled(resampler, None, sample_rate)
            if len(tail):
                yield cursor, tail


def read_audio(
    path: Path | str, *, sample_rate: int = 16000, start_s: float = 0.0, end_s: float | None = None,
) -> AudioClip:
    """Mono float32 audio for video time ``[start_s, end_s)`` (zeros where nothing decodes)."""
    report = DecodeReport()
    first = int(round(start_s * sample_rate))
    last = None if end_s is None else int(round(end_s * sample_rate))
    pieces: list[np.ndarray] = []
    position = first
    for offset, chunk in iter_audio(path, sample_rate=sample_rate, start_s=start_s, report=report):
        lo, hi = max(offset, position), offset + len(chunk) if last is None else min(offset + len(chunk), last)
        if hi <= lo:
            if last is not None and offset >= last:
                break
            continue
        if lo > position:  # audio starts late: leading zeros
            pieces.append(np.zeros(lo - position, np.float32))
        pieces.append(chunk[lo - offset:hi - offset])
        position = hi
    if last is not None and position < last:
        report.filled += last - position
        pieces.append(np.zeros(last - position, np.float32))
    samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return AudioClip(np.clip(samples, -1.0, 1.0) if samples.size else samples, sample_rate, start_s, report)
