"""Real media files for tests: a good H.264+AAC MP4 and one bad file of each probe reject reason.

Everything is written with PyAV (bundled FFmpeg), so the files are what a camera pipeline or a
broken upload would produce: the good file has a moving pattern and a tone; the bad files are
derived from it (cut, garbled, stream dropped) or are not media at all.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# reason code (lpm_models.media.probe) -> file name written by make_bad_files
BAD_FILE_NAMES: dict[str, str] = {
    "zero_byte": "empty.mp4",
    "truncated": "cut_in_half.mp4",
    "not_a_video": "notes.mp4",
    "no_audio_stream": "silent_film.mp4",
    "no_video_stream": "voice_only.mp4",
    "unreadable": "garbled.mp4",
}


def pattern_frame(index: int, width: int, height: int) -> np.ndarray:
    """A moving diagonal gradient with a bright square: (H, W, 3) uint8 RGB."""
    ys, xs = np.mgrid[0:height, 0:width]
    base = ((xs + ys + 4 * index) % 256).astype(np.uint8)
    frame = np.stack([base, np.roll(base, height // 3, axis=0), 255 - base], axis=-1)
    side = max(4, min(width, height) // 6)
    x0 = (index * 3) % max(1, width - side)
    y0 = (height - side) // 2
    frame[y0:y0 + side, x0:x0 + side] = 255
    return frame


def _tone(start: int, count: int, rate: int, freq: float = 440.0) -> np.ndarray:
    """(1, count) float32 sine samples starting at sample index ``start``."""
    t = (np.arange(start, start + count, dtype=np.float64)) / rate
    return (0.3 * np.sin(2.0 * math.pi * freq * t)).astype(np.float32)[None, :]


def _mux_tone(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
              start: int, until: int, rate: int) -> int:
    """Encode tone samples [start, until) in 1024-sample frames; returns the next sample index."""
    while start < until:
        count = min(1024, until - start)
        frame = av.AudioFrame.from_ndarray(_tone(start, count, rate), format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        out.mux(stream.encode(frame))
        start += count
    return start


def write_av(
    path: Path,
    seconds: float = 2.0,
    size: tuple[int, int] = (64, 48),
    fps: int = 24,
    audio: bool = True,
    video: bool = True,
    audio_rate: int = 16000,
    faststart: bool = False,
    container: str = "mp4",
    audio_seconds: float | None = None,
) -> Path:
    """Write H.264 (yuv420p) and/or mono AAC of ``seconds`` length; returns ``path``.

    ``size`` is (width, height), both even. ``container`` is an FFmpeg muxer name (mp4, matroska,
    mpegts, mov). ``faststart`` (mp4/mov) puts the index (moov) before the media data.
    ``audio_seconds`` makes the audio track shorter or longer than the video.
    """
    if not (audio or video):
        raise ValueError("write_av needs at least one of audio=True or video=True")
    width, height = size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format=container, options=options) as out:
        vstream = astream = None
        if video:
            vstream = out.add_stream("libx264", rate=fps)
            vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
            vstream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        if audio:
            astream = out.add_stream("aac", rate=audio_rate, layout="mono")
        n_frames = int(round(seconds * fps)) if video else 0
        total_samples, written = int((seconds if audio_seconds is None else audio_seconds) * audio_rate), 0
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(pattern_frame(i, width, height), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(vstream.encode(frame))
            if astream is not None:  # interleave: audio up to the end of this video frame
                written = _mux_tone(out, astream, written, min(total_samples, (i + 1) * audio_rate // fps), audio_rate)
        if astream is not None:
            _mux_tone(out, astream, written, total_samples, audio_rate)
        for stream in (vstream, astream):
            if stream is not None:
                out.mux(stream.encode(None))
    return path


def write_png(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    """Write a real PNG image (one frame of the pattern) to ``path`` whatever its extension."""
    width, height = size
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "rgb24"
    frame = av.VideoFrame.from_ndarray(pattern_frame(0, width, height), format="rgb24")
    data = b"".join(bytes(p) for p in codec.encode(frame)) + b"".join(bytes(p) for p in codec.encode(None))
    Path(path).write_bytes(data)
    return Path(path)


def write_text(path: Path) -> Path:
    """Write a plain text file (a classic mis-named upload) to ``path``."""
    lines = [f"line {i}: meeting notes, action items and other things that are not video" for i in range(200)]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def truncate(source: Path, dest: Path, keep: float = 0.5) -> Path:
    """Copy the first ``keep`` fraction of ``source`` to ``dest`` (an interrupted upload)."""
    data = Path(source).read_bytes()
    Path(dest).write_bytes(data[: int(len(data) * keep)])
    return Path(dest)


def _mdat_span(data: bytes) -> tuple[int, int]:
    """(start, end) byte offsets of the payload of the top-level ``mdat`` box of an MP4."""
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        header = 8
        if size == 1:
            size, header = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:
            size = len(data) - pos
        if kind == b"mdat":
            return pos + header, pos + size
        pos += size
    raise ValueError("no mdat box found: not an MP4 written by write_av")


def garble(source: Path, dest: Path, start: float = 0.3, end: float = 0.7, seed: int = 0) -> Path:
    """Copy ``source`` to ``dest`` with random bytes over the ``start``..``end`` fraction of its
    media data (the container index stays intact, so the damage shows only when decoding)."""
    data = bytearray(Path(source).read_bytes())
    lo, hi = _mdat_span(bytes(data))
    a, b = lo + int((hi - lo) * start), lo + int((hi - lo) * end)
    data[a:b] = random.Random(seed).randbytes(b - a)
    Path(dest).write_bytes(bytes(data))
    return Path(dest)


def make_bad_files(directory: Path, seconds: float = 2.0) -> dict[str, Path]:
    """Write one file per probe reject reason into ``directory``: {reason: path}."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    good = write_av(directory / "_good_source.mp4", seconds=seconds)
    paths = {reason: directory / name for reason, name in BAD_FILE_NAMES.items()}
    paths["zero_byte"].write_bytes(b"")
    truncate(good, paths["truncated"])
    write_text(paths["not_a_video"])
    write_av(paths["no_audio_stream"], seconds=seconds, audio=False)
    write_av(paths["no_video_stream"], seconds=seconds, video=False)
    garble(good, paths["unreadable"])
    good.unlink()
    return paths
