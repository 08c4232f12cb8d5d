"""Client-side media: images in, any audio in (PyAV, resampled), frames + audio out as MP4."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

log = logging.getLogger(__name__)


def read_image(path: Path | str) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def fit_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (H, W, 3) uint8 to ``size`` = (H, W) (references travel as one (R, H, W, 3) tensor)."""
    if image.shape[:2] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.LANCZOS), dtype=np.uint8)


def read_audio(path: Path | str, sample_rate: int) -> np.ndarray:
    """Any audio (or video with audio) file as mono float32 in [-1, 1] at ``sample_rate``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio {path} does not exist")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise ValueError(f"cannot decode {path}: {err}") from err
    with container:
        if not container.streams.audio:
            raise ValueError(f"{path} has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        parts: list[np.ndarray] = []
        for frame in container.decode(container.streams.audio[0]):
            parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    samples = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    return np.clip(samples, -1.0, 1.0)


def write_wav(path: Path | str, samples: np.ndarray, sample_rate: int) -> Path:
    """Mono float32 samples as a 16-bit PCM WAV (PyAV)."""
    path = Path(path)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)[None]
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=sample_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


class Mp4Writer:
    """H.264 video written frame by frame, plus a mono AAC track (the character's speech) on close."""

    def __init__(self, path: Path | str, fps: int, audio_rate: int | None = None, crf: int = 20) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.frames = 0
        self._container = av.open(str(self.path), "w")
        self._video = self._container.add_stream("libx264", rate=fps)
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(crf), "preset": "veryfast"}
        self._audio = self._container.add_stream("aac", rate=audio_rate, layout="mono") if audio_rate else None
        self._audio_rate = audio_rate

    def add(self, frames: np.ndarray) -> None:
        """Append frames (F, H, W, 3) uint8 RGB (odd sides are padded to even for yuv420p)."""
        for frame in frames:
            if self.frames == 0:
                self._video.height, self._video.width = (s + s % 2 for s in frame.shape[:2])
            if frame.shape[0] % 2 or frame.shape[1] % 2:
                frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = self.frames
            video_frame.time_base = Fraction(1, self.fps)
            for packet in self._video.encode(video_frame):
                self._container.mux(packet)
            self.frames += 1

    def _mux_audio(self, audio: np.ndarray) -> None:
        assert self._audio is not None and self._audio_rate is not None
        block = 1024
        for start in range(0, audio.size, block):
            frame = av.AudioFrame.from_ndarray(audio[start:start + block].astype(np.float32)[None], format="flt",
                                               layout="mono")
            frame.sample_rate = self._audio_rate
            frame.pts = start
            frame.time_base = Fraction(1, self._audio_rate)
            for packet in self._audio.encode(frame):
                self._container.mux(packet)
        for packet in self._audio.encode(None):
            self._container.mux(packet)

    def close(self, audio: np.ndarray | None = None) -> Path:
        """Flush the video, mux ``audio`` (mono float32 at ``audio_rate``) and finish the file."""
        try:
            if self.frames == 0:
                raise ValueError(f"no frames were written to {self.path}")
            for packet in self._video.encode(None):
                self._container.mux(packet)
            if self._audio is not None and audio is not None and audio.size:
                self._mux_audio(audio)
        finally:
            self._container.close()
        log.info("wrote %s: %d frames at %d fps%s", self.path, self.frames, self.fps,
                 " with audio" if audio is not None and audio.size else "")
        return self.path

    def abort(self) -> None:
        """Close without finishing and delete the partial file."""
        self._container.close()
        self.path.unlink(missing_ok=True)
