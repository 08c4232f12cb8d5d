"""Byte encodings of shard members: H.264 MP4 face video, PNG images, .npy arrays, JSON.

Every encoder is deterministic (fixed encoder threads, no timestamps), so the same sample
gives the same bytes and the same shard checksum. x264's macroblock-tree rate control is off:
with it, the bundled x264 gave different bitstreams for the same frames from run to run.
"""

from __future__ import annotations

import io
import json
from fractions import Fraction
from typing import Any

import av
import cv2
import numpy as np

VIDEO_CRF = 17
VIDEO_PRESET = "veryfast"


def encode_video(frames: np.ndarray, fps: float, crf: int = VIDEO_CRF, preset: str = VIDEO_PRESET) -> bytes:
    """(T, H, W, 3) uint8 RGB -> H.264 yuv420p MP4 bytes (no audio); H and W must be even."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    if t == 0 or h % 2 or w % 2:
        raise ValueError(f"need >= 1 frame and even H, W for H.264 4:2:0, got T={t} {h}x{w}")
    buffer = io.BytesIO()
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"preset": preset, "crf": str(crf), "threads": "1", "x264-params": "mbtree=0"}
        for index in range(t):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[index]), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def decode_video(data: bytes) -> np.ndarray:
    """MP4 bytes -> (T, H, W, 3) uint8 RGB (every frame, in order)."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    if not frames:
        raise ValueError("the MP4 member holds no decodable video frame")
    return np.stack(frames)


def encode_png(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB -> PNG bytes."""
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> (H, W, 3) uint8 RGB."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("member is not a decodable PNG image")
    return np.ascontiguousarray(image[..., ::-1])


def encode_npy(array: np.ndarray) -> bytes:
    """Any non-object numpy array -> .npy bytes."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_npy(data: bytes) -> np.ndarray:
    """.npy bytes -> array (pickles refused)."""
    return np.load(io.BytesIO(data), allow_pickle=False)


def encode_json(document: dict[str, Any]) -> bytes:
    """Canonical JSON bytes (sorted keys, compact)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_json(data: bytes) -> dict[str, Any]:
    return json.loads(data.decode("utf-8"))


def audio_to_int16(audio: np.ndarray) -> np.ndarray:
    """(S,) float in [-1, 1] (clipped) or int16 -> (S,) int16 PCM."""
    audio = np.asarray(audio)
    if audio.dtype == np.int16:
        return audio.reshape(-1)
    return np.round(np.clip(audio.astype(np.float64), -1.0, 1.0) * 32767.0).astype(np.int16).reshape(-1)


def int16_to_float(audio: np.ndarray) -> np.ndarray:
    """(S,) int16 PCM -> (S,) float32 in [-1, 1]."""
    return (np.asarray(audio, dtype=np.float32) / 32767.0).reshape(-1)
