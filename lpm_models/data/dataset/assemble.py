"""Curation records -> :class:`CuratedSample`: crop the face video, slice labels and audio.

Alignment conventions (from :mod:`lpm_models.data.curation.types`): track arrays and
``ClipLabels.labels`` are indexed by track row (absolute frame - ``track.frames[0]``);
``ClipLabels.self_audio``/``other_audio`` start at the time of ``track.frames[0]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np

from lpm_models.data.curation.crops import crop_track
from lpm_models.data.curation.references import ClipSpan, ReferenceSet
from lpm_models.data.curation.types import ActionEvent, ClipLabels, FaceTrack
from lpm_models.data.dataset.codec import audio_to_int16
from lpm_models.data.dataset.shards import CuratedSample


@dataclass(frozen=True)
class SampleConfig:
    """Output format of curated samples."""

    size: int = 128           # face video side, px (even)
    fps: float = 25.0         # face video frame rate
    sample_rate: int = 16000  # audio rate of the .npy tracks

    def __post_init__(self) -> None:
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be an even number >= 16, got {self.size}")


def resample_audio(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """(S,) float -> (S * target / rate,) float32 by polyphase filtering (identity if rates match)."""
    if rate == target:
        return np.asarray(audio, dtype=np.float32)
    from scipy.signal import resample_poly

    g = gcd(int(rate), int(target))
    return resample_poly(np.asarray(audio, dtype=np.float64), target // g, rate // g).astype(np.float32)


def slice_audio(audio: np.ndarray, rate: int, offset_s: float, n_samples: int) -> np.ndarray:
    """(n_samples,) float32 from ``offset_s`` seconds into ``audio`` (zero-padded past its end)."""
    start = int(round(offset_s * rate))
    if start < 0:
        raise ValueError(f"audio slice starts before the track audio (offset {offset_s:.3f} s)")
    piece = np.asarray(audio[start:start + n_samples], dtype=np.float32)
    return np.pad(piece, (0, n_samples - len(piece)))


def clip_actions(actions: Sequence[ActionEvent], clip: ClipSpan, source_fps: float, fps: float,
                 n_frames: int) -> list[dict[str, Any]]:
    """Actions overlapping the clip, with frames made clip-relative at the output ``fps``."""
    out = []
    scale = fps / source_fps
    for event in actions:
        if event.end_frame <= clip.start_frame or event.start_frame >= clip.end_frame:
            continue
        start = max(0, int(round((event.start_frame - clip.start_frame) * scale)))
        end = min(n_frames, int(round((event.end_frame - clip.start_frame) * scale)))
        out.append({"action": event.action, "start_frame": start, "end_frame": max(end, start + 1),
                    "strength": round(float(event.strength), 4)})
    return out


def main_caption(labels: np.ndarray, captions: dict[str, Any] | None) -> str:
    """The "speaker" caption if the clip speaks at least as much as it listens, else "listener" ('' if absent)."""
    if not captions:
        return ""
    role = "speaker" if np.sum(labels == 1) >= np.sum(labels == 2) else "listener"
    return str(captions.get(role, ""))


def assemble_sample(
    clip: ClipSpan, track: FaceTrack, labels: ClipLabels, references: ReferenceSet, identity: str,
    video_path: Path, cfg: SampleConfig | None = None, *, caption: str | None = None,
    captions: dict[str, Any] | None = None, actions: Sequence[ActionEvent] = (),
    quality: dict[str, float] | None = None, source_sha256: str = "",
) -> CuratedSample:
    """Cut one clip out of its track into a sample (face video at ``cfg.fps``/``cfg.size``, int16 audio).

    ``captions`` is the output of ``captions.caption_clip`` ({"speaker": ..., "listener": ...});
    without an explicit ``caption`` the main caption is the role the clip mostly shows.
    """
    cfg = cfg or SampleConfig()
    if labels.track_id != track.track_id or clip.track_id != track.track_id:
        raise ValueError(f"clip {clip.clip_id}: track {track.track_id}, labels of {labels.track_id} and "
                         f"clip track {clip.track_id} must agree")
    if len(labels.labels) != len(track.frames):
        raise ValueError(f"labels of {track.track_id} cover {len(labels.labels)} frames, the track {len(track.frames)}")
    frames, source_frames = crop_track(video_path, track, cfg.size, clip.start_frame, clip.end_frame, cfg.fps)
    rows = source_frames - int(track.frames[0])
    clip_labels = np.asarray(labels.labels)[rows].astype(np.uint8)
    n_audio = int(round(len(frames) * cfg.sample_rate / cfg.fps))
    offset_s = (clip.start_frame - int(track.frames[0])) / track.fps
    audio = {}
    for name in ("self_audio", "other_audio"):
        resampled = resample_audio(getattr(labels, name), labels.sample_rate, cfg.sample_rate)
        audio[name] = audio_to_int16(slice_audio(resampled, cfg.sample_rate, offset_s, n_audio))
    return CuratedSample(
        clip=clip, identity=identity, fps=float(cfg.fps), source_fps=float(track.fps), frames=frames,
        labels=clip_labels,
        self_audio=audio["self_audio"], other_audio=audio["other_audio"], sample_rate=cfg.sample_rate,
        references=references, caption=caption if caption is not None else main_caption(clip_labels, captions),
        captions=dict(captions or {}),
        actions=clip_actions(actions, clip, track.fps, cfg.fps, len(frames)), quality=dict(quality or {}),
        sync_offset=int(labels.sync_offset), sync_confidence=float(labels.sync_confidence),
        source_sha256=source_sha256,
    )
