"""Training clips: a quality-passing face track cut into spans of bounded length."""

from __future__ import annotations

from lpm_models.data.curation.references import ClipSpan
from lpm_models.data.curation.types import FaceTrack


def split_clips(track: FaceTrack, clip_s: float = 8.0, min_s: float = 3.0) -> list[ClipSpan]:
    """Cut ``track`` into consecutive clips of about ``clip_s`` seconds (none shorter than ``min_s``).

    The remainder is spread over the clips so every clip lies in [min_s, ~1.5 * clip_s]. Tracks
    shorter than ``min_s`` give no clip. Several clips per track let a clip's references come from
    the same person outside it.
    """
    if clip_s < min_s:
        raise ValueError(f"clip_s ({clip_s}) must be >= min_s ({min_s})")
    n = len(track.frames)
    per_clip, least = int(round(clip_s * track.fps)), int(round(min_s * track.fps))
    if n < least:
        return []
    count = max(1, int(round(n / per_clip)))
    bounds = [round(i * n / count) for i in range(count + 1)]
    first = int(track.frames[0])
    return [ClipSpan(clip_id=f"{track.track_id}-c{i:02d}", track_id=track.track_id, video_id=track.video_id,
                     start_frame=first + a, end_frame=first + b)
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])) if b - a >= least]
