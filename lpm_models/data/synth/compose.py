"""Frames and files: screen layouts, per-frame rendering of the rigs, H.264 + AAC muxing.

Two layouts, as conversation footage comes in the wild:
- ``split``: a video call, both faces side by side (width 2*size, height size);
- ``single``: one camera on one person (size x size) while both voices are heard.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
import numpy as np

from lpm_models.data.synth.performance import Performance

log = logging.getLogger(__name__)

LAYOUTS = ("split", "single")
AUDIO_CHUNK = 1024  # samples per AAC frame


class Rig(Protocol):
    """What composing needs from a face rig (``faces.FaceRig``)."""

    size: int

    def render(self, controls: object) -> np.ndarray: ...


@dataclass(frozen=True)
class Placement:
    """A person's face region on the canvas: bbox = (x0, y0, x1, y1), pixels, x1/y1 exclusive."""

    person: int
    bbox: tuple[int, int, int, int]


@dataclass(frozen=True)
class Layout:
    """Canvas size and who is where."""

    name: str
    width: int
    height: int
    placements: tuple[Placement, ...]

    def to_dict(self) -> dict:
        return {
            "name": self.name, "width": self.width, "height": self.height,
            "placements": [{"person": p.person, "bbox": list(p.bbox)} for p in self.placements],
        }


def make_layout(name: str, size: int, on_screen: int = 0) -> Layout:
    """The layout ``name`` for face regions of ``size`` px; ``on_screen`` matters for single."""
    if size < 32 or size % 2:
        raise ValueError(f"size must be an even number of pixels >= 32, got {size}")
    if name == "split":
        return Layout(name, 2 * size, size, (Placement(0, (0, 0, size, size)),
                                             Placement(1, (size, 0, 2 * size, size))))
    if name == "single":
        if on_screen not in (0, 1):
            raise ValueError(f"on_screen must be person 0 or 1, got {on_screen}")
        return Layout(name, size, size, (Placement(on_screen, (0, 0, size, size)),))
    raise ValueError(f"unknown layout {name!r}; expected one of {LAYOUTS}")


@dataclass
class StageTimes:
    """Seconds spent per stage of one video (for the benchmark)."""

    tts: float = 0.0
    perform: float = 0.0
    render: float = 0.0
    encode: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, float]:
        return {"tts": self.tts, "perform": self.perform, "render": self.render,
                "encode": self.encode, **self.extra}


def render_frames(
    performance: Performance, layout: Layout, rigs: Sequence[Rig], times: StageTimes,
) -> Iterator[np.ndarray]:
    """Yield (H, W, 3) uint8 RGB canvases, one per frame; time spent goes to ``times.render``."""
    from lpm_models.data.synth.faces import FaceControls  # the rig's own control type

    for placement in layout.placements:
        x0, y0, x1, y1 = placement.bbox
        if rigs[placement.person].size != x1 - x0 or y1 - y0 != x1 - x0:
            raise ValueError(
                f"rig of person {placement.person} renders {rigs[placement.person].size} px "
                f"but the layout needs {x1 - x0} px"
            )
    canvas = np.zeros((layout.height, layout.width, 3), dtype=np.uint8)
    for frame in range(performance.n_frames):
        t0 = time.perf_counter()
        for placement in layout.placements:
            x0, y0, x1, y1 = placement.bbox
            controls = FaceControls(**performance.frame_controls(placement.person, frame))
            canvas[y0:y1, x0:x1] = rigs[placement.person].render(controls)
        times.render += time.perf_counter() - t0
        yield canvas


def encode_mp4(
    path: Path, frames: Iterator[np.ndarray], audio: np.ndarray, width: int, height: int,
    fps: int, sample_rate: int, times: StageTimes, preset: str = "superfast", crf: int = 20,
) -> int:
    """Write H.264 (yuv420p) video + mono AAC audio to ``path``; returns the frame count.

    Audio is interleaved with the video as it is written; encoder threads are fixed to one
    so the same inputs give the same bytes.
    """
    if width % 2 or height % 2:
        raise ValueError(f"H.264 4:2:0 needs even dimensions, got {width}x{height}")
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.ascontiguousarray(np.clip(audio, -1.0, 1.0).astype(np.float32))
    n_written = 0
    with av.open(str(path), mode="w", format="mp4") as container:
        vs = container.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.thread_count = 1
        vs.options = {"preset": preset, "crf": str(crf), "threads": "1"}
        aus = container.add_stream("aac", rate=sample_rate, layout="mono")
        aus.codec_context.thread_count = 1
        a_pos = 0
        t_frames = 0.0
        for index, rgb in enumerate(frames):
            t0 = time.perf_counter()
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            vf.pts = index
            container.mux(vs.encode(vf))
            video_end = (index + 1) * sample_rate // fps
            while a_pos < min(video_end, len(pcm)):
                a_pos = _mux_audio(container, aus, pcm, a_pos, sample_rate)
            n_written = index + 1
            t_frames += time.perf_counter() - t0
        t0 = time.perf_counter()
        while a_pos < len(pcm):
            a_pos = _mux_audio(container, aus, pcm, a_pos, sample_rate)
        container.mux(vs.encode(None))
        container.mux(aus.encode(None))
        t_frames += time.perf_counter() - t0
    times.encode += t_frames
    return n_written


def _mux_audio(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
               pcm: np.ndarray, pos: int, sample_rate: int) -> int:
    chunk = pcm[pos:pos + AUDIO_CHUNK]
    frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
    frame.sample_rate = sample_rate
    frame.pts = pos
    frame.time_base = Fraction(1, sample_rate)
    container.mux(stream.encode(frame))
    return pos + len(chunk)
