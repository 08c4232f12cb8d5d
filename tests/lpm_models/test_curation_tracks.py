"""Stage 2: face tracks on real synthetic conversations, and each track rejection reason.

Truth sidecars are read here (tests only) to check where faces are and what they do.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lpm_models.data.curation.config import CurationConfig, TrackConfig
from lpm_models.data.curation.pose import head_pose, mouth_opening
from lpm_models.data.curation.tracks import check_track, smooth_crop_boxes, split_segments, track_faces
from lpm_models.data.curation.types import FaceTrack, Shot
from tests.lpm_models.curation_factory import CorpusVideo, decode, place, rewrite, session_corpus, write_video
from tests.media_factory import write_av


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CorpusVideo]:
    return session_corpus(tmp_path_factory)


def _whole(video: CorpusVideo, video_id: str = "v") -> Shot:
    return Shot(video_id=video_id, index=0, start_frame=0, end_frame=video.n_frames, fps=25.0)


def _person_at(track: FaceTrack, truth: dict) -> dict:
    """The on-screen truth person whose region holds the track's mean face centre."""
    cx = float(((track.boxes[:, 0] + track.boxes[:, 2]) / 2).mean())
    cy = float(((track.boxes[:, 1] + track.boxes[:, 3]) / 2).mean())
    matches = [p for p in truth["persons"] if p["on_screen"]
               and p["bbox"][0] <= cx < p["bbox"][2] and p["bbox"][1] <= cy < p["bbox"][3]]
    assert len(matches) == 1, f"track centre ({cx:.0f}, {cy:.0f}) is in no single person's region"
    return matches[0]


@pytest.fixture(scope="module")
def split_tracks(corpus: dict[str, CorpusVideo]) -> list[FaceTrack]:
    tracks, rejected = track_faces(corpus["split"].path, _whole(corpus["split"]))
    assert rejected == []
    return tracks


def test_split_screen_gives_one_full_track_per_person(split_tracks: list[FaceTrack],
                                                      corpus: dict[str, CorpusVideo]) -> None:
    video = corpus["split"]
    assert len(split_tracks) == 2
    people = {_person_at(t, video.truth)["person"] for t in split_tracks}
    assert people == {0, 1}  # one track each, no identity swap
    for track in split_tracks:
        n = len(track.frames)
        assert n >= 0.95 * video.n_frames
        assert np.array_equal(track.frames, np.arange(track.frames[0], track.frames[0] + n))  # contiguous
        assert track.landmarks.shape == (n, 478, 2) and track.pose.shape == (n, 3) and track.mouth_open.shape == (n,)
        side = track.crop_boxes[:, 2] - track.crop_boxes[:, 0]
        assert np.allclose(side, track.crop_boxes[:, 3] - track.crop_boxes[:, 1], atol=1e-3)  # square
        crop, face = track.crop_boxes, track.boxes
        inside = (crop[:, :2] <= face[:, :2] + 1) & (crop[:, 2:] >= face[:, 2:] - 1)
        assert inside.all(axis=1).mean() > 0.98  # the crop holds the face
        assert track.meta["frame_width"] == 512 and track.meta["frame_height"] == 256
        assert track.track_id.startswith("v-s00-t")


def test_mouth_and_pose_follow_the_performance(split_tracks: list[FaceTrack], corpus: dict[str, CorpusVideo]) -> None:
    talkers = 0
    for track in split_tracks:
        controls = _person_at(track, corpus["split"].truth)["controls"]
        truth = {k: np.asarray(controls[k])[track.frames] for k in ("jaw_open", "yaw", "roll")}
        if truth["jaw_open"].std() > 0.05:  # this person talks in the clip
            talkers += 1
            assert np.corrcoef(truth["jaw_open"], track.mouth_open)[0, 1] > 0.85
        assert np.corrcoef(truth["roll"], track.pose[:, 2])[0, 1] > 0.75
        if truth["yaw"].std() > 1.0:  # enough head turning to measure
            assert np.corrcoef(truth["yaw"], track.pose[:, 0])[0, 1] > 0.5
    assert talkers >= 1


def test_single_camera_gives_one_track(corpus: dict[str, CorpusVideo]) -> None:
    video = corpus["single"]
    tracks, rejected = track_faces(video.path, _whole(video))
    assert rejected == [] and len(tracks) == 1
    assert len(tracks[0].frames) >= 0.95 * video.n_frames and tracks[0].meta["missed_fraction"] < 0.05
    assert _person_at(tracks[0], video.truth)["on_screen"]


def test_sparse_mesh_keeps_the_mouth_signal(corpus: dict[str, CorpusVideo]) -> None:
    video = corpus["split"]
    cfg = CurationConfig().with_overrides(tracks={"mesh_every": 2})
    tracks, rejected = track_faces(video.path, _whole(video), cfg)
    assert rejected == [] and len(tracks) == 2
    for track in tracks:
        assert 0.4 < track.meta["interpolated_fraction"] < 0.6
        jaw = np.asarray(_person_at(track, video.truth)["controls"]["jaw_open"])[track.frames]
        if jaw.std() > 0.05:
            assert np.corrcoef(jaw, track.mouth_open)[0, 1] > 0.8


def test_rotated_upload_is_tracked_upright(corpus: dict[str, CorpusVideo], tmp_path: Path) -> None:
    video = corpus["single"]
    frames, audio = decode(video.path)
    sideways = [np.ascontiguousarray(np.rot90(f, -1)) for f in frames[:100]]  # stored turned clockwise
    path = write_video(tmp_path / "phone.mp4", sideways, audio, rotation=90)  # display matrix turns it back
    tracks, rejected = track_faces(path, Shot("phone", 0, 0, 100, 25.0))
    assert rejected == [] and len(tracks) == 1 and len(tracks[0].frames) >= 95
    assert abs(float(np.median(tracks[0].pose[:, 2]))) < 15  # upright, not lying on its side


def test_no_face(tmp_path: Path) -> None:
    path = write_av(tmp_path / "pattern.mp4", seconds=3.0, size=(128, 96), fps=25)
    tracks, rejected = track_faces(path, Shot("pattern", 0, 0, 75, 25.0))
    assert tracks == [] and [(i, r.reason) for i, r in rejected] == [("pattern-s00", "no_face")]


def test_face_too_small(corpus: dict[str, CorpusVideo], tmp_path: Path) -> None:
    video = corpus["single"]
    path = place(video.path, tmp_path / "far.mp4", scale=0.5)  # a ~60 px face in a 640x360 frame
    shot = Shot("far", 0, 0, video.n_frames, 25.0)
    tracks, rejected = track_faces(path, shot)
    assert rejected == [] and len(tracks) == 1 and 45 < np.median(tracks[0].boxes[:, 3] - tracks[0].boxes[:, 1]) < 75
    strict = CurationConfig().with_overrides(tracks={"min_face_px": 90.0})
    tracks, rejected = track_faces(path, shot, strict)
    assert tracks == [] and [(i, r.reason) for i, r in rejected] == [("far-s00-t0", "face_too_small")]


def test_too_many_faces(corpus: dict[str, CorpusVideo], tmp_path: Path) -> None:
    split, _ = decode(corpus["split"].path)
    single, _ = decode(corpus["single"].path)
    frames = [np.concatenate([a, b], axis=1) for a, b in zip(split[:100], single[:100])]  # three people
    path = write_video(tmp_path / "three.mp4", frames)
    tracks, rejected = track_faces(path, Shot("three", 0, 0, 100, 25.0))
    assert tracks == [] and [(i, r.reason) for i, r in rejected] == [("three-s00", "too_many_faces")]


def test_long_occlusion_breaks_the_track(corpus: dict[str, CorpusVideo], tmp_path: Path) -> None:
    video = corpus["single"]
    occluded = range(40, 70)  # 1.2 s with the face covered

    def cover(frame: np.ndarray, i: int) -> np.ndarray:
        if i in occluded:
            frame = frame.copy()
            frame[30:230, 40:216] = 128
        return frame

    path = rewrite(video.path, tmp_path / "occluded.mp4", frame_fn=cover)
    tracks, rejected = track_faces(path, _whole(video, "occ"))
    assert [r.reason for _, r in rejected] == ["broken_track"] and rejected[0][0] == "occ-s00-t0"
    assert len(tracks) == 1 and tracks[0].track_index == 1
    assert 68 <= tracks[0].frames[0] <= 75 and tracks[0].frames[-1] == video.n_frames - 1


def test_split_segments_on_gaps_and_jumps() -> None:
    n = 60
    frames = np.concatenate([np.arange(0, 20), np.arange(35, 60)])  # a 15-frame hole
    points = np.zeros((len(frames), 478, 3), np.float32)
    points[:, :, 1] = np.linspace(0, 100, 478)  # face height 100 px
    points[30:, :, 0] += 300  # a jump of 3 face heights at sample 30
    cfg = TrackConfig()
    assert split_segments(frames, points, cfg, max_gap=10) == [(0, 20), (20, 30), (30, len(frames))]
    assert split_segments(np.arange(n), np.zeros((n, 478, 3), np.float32), cfg, max_gap=10) == [(0, n)]


def test_extreme_pose_and_size_gates(split_tracks: list[FaceTrack]) -> None:
    cfg = TrackConfig()
    track = split_tracks[0]
    assert check_track(track, cfg) is None
    turned = replace(track, pose=track.pose.copy())
    turned.pose[: len(track.frames) // 2, 0] = 70.0  # half the frames in profile
    assert check_track(turned, cfg).reason == "extreme_pose"
    tiny = replace(track, boxes=track.boxes * 0.3)
    assert check_track(tiny, cfg).reason == "face_too_small"


def test_pose_conventions_on_a_rotated_mesh() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, (478, 3))
    base[[33, 133, 234, 127, 93, 61, 70], 0] -= 40  # subject's right on image left
    base[[263, 362, 454, 356, 323, 291, 300], 0] += 40
    base[10, 1], base[152, 1] = -60, 60  # forehead up, chin down
    base[[13, 82, 312, 81, 311], 1] = 30
    base[[14, 87, 317, 178, 402], 1] = 36  # lips 6 px apart
    angle = np.radians(20)
    yaw = np.array([[np.cos(angle), 0, -np.sin(angle)], [0, 1, 0], [np.sin(angle), 0, np.cos(angle)]])
    roll = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    pitch = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    pose = head_pose(np.stack([base, base @ yaw.T, base @ roll.T, base @ pitch.T]))  # normal (0, 0, -1) ->
    assert np.allclose(pose[0], 0, atol=2)
    assert pose[1, 0] == pytest.approx(20, abs=3)  # (+sin, 0, -cos): turned towards image right
    assert pose[2, 2] == pytest.approx(20, abs=3)  # clockwise in the image
    assert pose[3, 1] == pytest.approx(20, abs=3)  # (0, +sin, -cos): chin down
    assert mouth_opening(base[None])[0] == pytest.approx(6 / 120, rel=0.1)


def test_crop_boxes_are_smoothed() -> None:
    rng = np.random.default_rng(0)
    boxes = np.tile([100.0, 100.0, 200.0, 200.0], (100, 1)) + rng.normal(0, 4, (100, 1))
    crops = smooth_crop_boxes(boxes, scale=1.8, sigma_frames=5.0)
    assert np.std(np.diff(crops[:, 0])) < 0.3 * np.std(np.diff(boxes[:, 0]))
    assert np.allclose(crops[:, 2] - crops[:, 0], 180, atol=3)
