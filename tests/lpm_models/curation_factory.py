"""Media for the curation tests: one small synthetic corpus per session, and edited copies of it.

``session_corpus`` generates (once per pytest session, under the session's base temp dir) two
8-second conversations at 256 px: one split-screen, one single-camera. The other helpers
re-encode a corpus video with a frame or audio edit (blur, darken, shift, silence, ...), join
videos, or place one on a larger canvas, writing real H.264 + AAC with PyAV.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

FPS = 25
RATE = 16000
FrameFn = Callable[[np.ndarray, int], np.ndarray]
AudioFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class CorpusVideo:
    """One generated video: its file, its truth sidecar document (tests only) and layout."""

    path: Path
    truth: dict[str, Any]

    @property
    def layout(self) -> str:
        return str(self.truth["layout"]["name"])

    @property
    def n_frames(self) -> int:
        return int(self.truth["n_frames"])


def session_corpus(factory: pytest.TempPathFactory) -> dict[str, CorpusVideo]:
    """{"split": ..., "single": ...}: generated on first use in a session, then reused."""
    from lpm_models.data.synth.speech import espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed (needed to synthesise the corpus)")
    from lpm_models.data.synth.corpus import CorpusConfig, generate_corpus
    from lpm_models.data.synth.identities import IdentityBank

    root = factory.getbasetemp() / "curation-corpus"
    manifest = root / "manifest.json"
    if not manifest.exists():
        config = CorpusConfig(seed=5, n_conversations=2, duration_s=8.0, duration_jitter=0.0, size=256,
                              split_fraction=0.5, n_identities=4, workers=2)
        bank = IdentityBank.build(n=4, seed=0, pool_size=8, cache_dir=factory.getbasetemp() / "curation-bank")
        generate_corpus(config, root, bank=bank)
    videos = {}
    for record in json.loads(manifest.read_text())["videos"]:
        truth = json.loads((root / record["truth"]).read_text())
        videos[record["layout"]] = CorpusVideo(root / record["raw"], truth)
    return videos


def decode(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """All RGB frames (H, W, 3) and the mono float32 audio (S,) of a file."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)] if container.streams.audio else []
    return frames, (np.concatenate(audio).astype(np.float32) if audio else np.zeros(0, np.float32))


def write_video(path: Path, frames: Sequence[np.ndarray], audio: np.ndarray | None = None, fps: int = FPS,
                rate: int = RATE, rotation: int = 0) -> Path:
    """Encode RGB frames (+ mono audio) as H.264 + AAC; ``rotation`` sets the display matrix (deg CCW)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt, video.options = "yuv420p", {"preset": "veryfast"}
        if rotation:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=rate, layout="mono") if audio is not None else None
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        if sound is not None and audio is not None:
            for start in range(0, len(audio), 1024):
                chunk = np.ascontiguousarray(audio[start:start + 1024][None].astype(np.float32))
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
        out.mux(video.encode(None))
    return path


def rewrite(src: Path, dst: Path, frame_fn: FrameFn | None = None, audio_fn: AudioFn | None = None) -> Path:
    """Re-encode ``src`` with each frame through ``frame_fn(rgb, index)`` and audio through ``audio_fn``."""
    frames, audio = decode(src)
    if frame_fn is not None:
        frames = [frame_fn(f, i) for i, f in enumerate(frames)]
    return write_video(dst, frames, audio_fn(audio) if audio_fn is not None else audio)


def blur(sigma: float) -> FrameFn:
    return lambda f, i: cv2.GaussianBlur(f, (0, 0), sigma)


def darken(gain: float) -> FrameFn:
    return lambda f, i: (f.astype(np.float32) * gain).astype(np.uint8)


def shift_audio(frames: int) -> AudioFn:
    """Delay the audio by ``frames`` video frames (positive: audio lags the picture)."""
    def fn(audio: np.ndarray) -> np.ndarray:
        d = frames * RATE // FPS
        return np.concatenate([np.zeros(d, np.float32), audio[:-d]])
    return fn


def letterbox(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre ``frame`` on a black (height, width) canvas."""
    canvas = np.zeros((height, width, 3), np.uint8)
    y, x = (height - frame.shape[0]) // 2, (width - frame.shape[1]) // 2
    canvas[y:y + frame.shape[0], x:x + frame.shape[1]] = frame
    return canvas


def join(dst: Path, parts: Sequence[tuple[Path, int, int]]) -> Path:
    """Concatenate frame ranges [(path, start, end)] (letterboxed to the largest size) with their audio."""
    clips = [(decode(p), a, b) for p, a, b in parts]
    width = max(f[0].shape[1] for (f, _), _, _ in clips)
    height = max(f[0].shape[0] for (f, _), _, _ in clips)
    frames, audio = [], []
    for (f, pcm), a, b in clips:
        frames += [letterbox(x, width, height) for x in f[a:b]]
        audio.append(pcm[a * RATE // FPS:b * RATE // FPS])
    return write_video(dst, frames, np.concatenate(audio))


def place(src: Path, dst: Path, scale: float, size: tuple[int, int] = (640, 360)) -> Path:
    """``src`` scaled by ``scale`` at the top-left area of a grey (W, H) canvas (small faces)."""
    frames, audio = decode(src)
    out = []
    for f in frames:
        small = cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        canvas = np.full((size[1], size[0], 3), 90, np.uint8)
        canvas[40:40 + small.shape[0], 40:40 + small.shape[1]] = small
        out.append(canvas)
    return write_video(dst, out, audio)
