"""Clip splitting keeps every clip within bounds and covers the track."""

import numpy as np
import pytest

from lpm_models.data.curation.clips import split_clips
from lpm_models.data.curation.types import FaceTrack


def _track(n: int, start: int = 100, fps: float = 25.0) -> FaceTrack:
    z = np.zeros
    return FaceTrack("vid", 0, 1, fps, np.arange(start, start + n), z((n, 4)), z((n, 4)), z((n, 478, 2)),
                     z((n, 3)), z(n))


@pytest.mark.parametrize("n", [75, 200, 201, 399, 401, 1000])
def test_clips_cover_track_within_bounds(n: int) -> None:
    clips = split_clips(_track(n), clip_s=8.0, min_s=3.0)
    assert clips[0].start_frame == 100 and clips[-1].end_frame == 100 + n
    for a, b in zip(clips[:-1], clips[1:]):
        assert a.end_frame == b.start_frame
    lengths = [c.end_frame - c.start_frame for c in clips]
    assert min(lengths) >= 75 and max(lengths) <= 300
    assert len({c.clip_id for c in clips}) == len(clips)


def test_short_track_gives_no_clip() -> None:
    assert split_clips(_track(74)) == []
    with pytest.raises(ValueError):
        split_clips(_track(100), clip_s=2.0, min_s=3.0)
