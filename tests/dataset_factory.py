"""Curated samples for dataset and data-quality tests, built in memory (no source video needed).

Frames are smooth moving gradients (H.264 keeps them within a few grey levels), labels follow
a speak/listen/idle schedule, audio is a tone while speaking / listening, and references come
from another video of the same identity (or, with ``leak=True``, from inside the clip).
"""

from __future__ import annotations

import numpy as np

from lpm_models.data.curation.references import ClipSpan, ReferenceImage, ReferenceSet, ReferenceSource
from lpm_models.data.dataset.shards import CuratedSample

FPS = 25.0
RATE = 16000


def gradient_frames(n: int, size: int, seed: int) -> np.ndarray:
    """(n, size, size, 3) uint8 smooth moving colour gradient."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    t = np.arange(n, dtype=np.float32)[:, None, None] / max(n, 1)
    r = 127 + 100 * np.sin(np.pi * (xs[None] + t + seed * 0.1))
    g = 127 + 100 * np.cos(np.pi * (ys[None] - t))
    b = np.full_like(r, 64 + (40 * seed) % 128)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def schedule_labels(n: int, seed: int) -> np.ndarray:
    """(n,) uint8: speak, listen and idle runs (all three present for n >= 30)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=np.uint8)
    pos = 0
    while pos < n:
        run = int(rng.integers(10, 30))
        labels[pos:pos + run] = int(rng.choice([1, 2, 0], p=[0.45, 0.4, 0.15]))
        pos += run
    labels[: n // 3] = 1
    labels[n // 3: 2 * n // 3] = np.where(labels[n // 3: 2 * n // 3] == 1, 2, labels[n // 3: 2 * n // 3])
    return labels


def _tone(labels: np.ndarray, code: int, freq: float) -> np.ndarray:
    per_frame = int(RATE / FPS)
    mask = np.repeat(labels == code, per_frame).astype(np.float32)
    t = np.arange(len(mask)) / RATE
    return np.round(0.3 * np.sin(2 * np.pi * freq * t) * mask * 32767).astype(np.int16)


def reference(kind: str, video_id: str, frame: int, seed: int, size: int = 32) -> ReferenceImage:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return ReferenceImage(ReferenceSource(kind, f"{video_id}-s00-t0", video_id, frame, float(seed % 30 - 15),
                                          (0.1, 0.5, 0.2)), image)


def make_sample(index: int, n_frames: int = 100, size: int = 32, n_pose: int = 2, n_expr: int = 3,
                leak: bool = False, identity: str | None = None, clip_id: str | None = None) -> CuratedSample:
    """A valid curated sample (or one whose appearance reference lies inside its clip with ``leak``)."""
    video_id = f"vid{index:03d}"
    start = 200
    clip = ClipSpan(clip_id or f"{video_id}-s00-t0-c{index:02d}", f"{video_id}-s00-t0", video_id,
                    start, start + n_frames)
    other = f"vid{index + 1000:03d}"
    appearance = (reference("appearance", video_id, start + n_frames // 2, index) if leak
                  else reference("appearance", other, 10, index))
    refs = ReferenceSet(clip, appearance,
                        [reference("pose", other, 20 + i, index * 10 + i) for i in range(n_pose)],
                        [reference("expression", video_id, 10 + i, index * 20 + i) for i in range(n_expr)])
    labels = schedule_labels(n_frames, index)
    return CuratedSample(
        clip=clip, identity=identity or f"ident-{index % 3:04d}", fps=FPS, source_fps=FPS,
        frames=gradient_frames(n_frames, size, index), labels=labels,
        self_audio=_tone(labels, 1, 220.0), other_audio=_tone(labels, 2, 330.0), sample_rate=RATE,
        references=refs, caption=f"a person talks, clip {index}", captions={"speaker": "talks calmly", "listener": "a calm listener"},
        actions=[{"action": "nod", "start_frame": 5, "end_frame": 15, "strength": 0.5}],
        quality={"sharpness": 120.0 + index}, sync_offset=0, sync_confidence=0.7,
        source_sha256=f"{index:064x}",
    )
