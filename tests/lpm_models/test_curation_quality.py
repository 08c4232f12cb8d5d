"""Stage 3: the quality gate passes clean corpus tracks and fails degraded copies for the right reason."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from lpm_models.data.curation.config import QualityConfig
from lpm_models.data.curation.quality import QualityReport, assess_track, audio_metrics
from lpm_models.data.curation.sync import loudness_envelope, measure_sync
from lpm_models.data.curation.tracks import track_faces
from lpm_models.data.curation.types import FaceTrack, Shot
from lpm_models.data.curation.video_io import AudioClip, DecodeReport, iter_frames, read_audio
from tests.lpm_models.curation_factory import (CorpusVideo, blur, darken, decode, rewrite, session_corpus,
                                               shift_audio)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CorpusVideo]:
    return session_corpus(tmp_path_factory)


def _tracks(path: Path, n_frames: int) -> list[FaceTrack]:
    tracks, rejected = track_faces(path, Shot(path.stem, 0, 0, n_frames, 25.0))
    assert rejected == [], rejected
    return tracks


@pytest.fixture(scope="module")
def clean(corpus: dict[str, CorpusVideo]) -> list[tuple[CorpusVideo, FaceTrack, QualityReport]]:
    out = []
    for video in corpus.values():
        audio = read_audio(video.path)
        out += [(video, t, assess_track(t, video.path, audio)) for t in _tracks(video.path, video.n_frames)]
    return out


@pytest.fixture(scope="module")
def talker(clean: list[tuple[CorpusVideo, FaceTrack, QualityReport]]) -> tuple[CorpusVideo, FaceTrack]:
    """The clean track with the most speaking frames (its sync is assessable)."""
    video, track, report = max(clean, key=lambda c: c[2].sync.speaking_frames if c[2].sync.assessable else -1)
    assert report.sync.assessable, "no track in the corpus speaks long enough to assess sync"
    return video, track


def test_clean_tracks_pass(clean: list[tuple[CorpusVideo, FaceTrack, QualityReport]]) -> None:
    assert len(clean) == 3  # split-screen pair + single camera
    for _, track, report in clean:
        assert report.passed, (track.track_id, report.reasons, report.details)
        m = report.metrics
        assert m["crop_px"] > 150 and 0.3 < m["face_ratio"] < 0.6 and m["sampled_frames"] >= 35
        assert m["audio_rms_dbfs"] > -35 and m["audio_silent_fraction"] < 0.6 and m["audio_clipped_fraction"] == 0
        if report.sync.assessable:
            assert abs(report.sync.offset_frames) <= 1 and report.sync.confidence > 0.5
    assert report.to_dict()["passed"] is True


def _image_reasons(video: CorpusVideo, tmp_path: Path, name: str,
                   frame_fn: Callable[[np.ndarray, int], np.ndarray]) -> list[str]:
    path = rewrite(video.path, tmp_path / f"{name}.mp4", frame_fn=frame_fn)
    reports = [assess_track(t, path, path) for t in _tracks(path, video.n_frames)]
    assert len(reports) == 1
    return reports[0].reasons


def test_blurred_video_is_blurry(corpus: dict[str, CorpusVideo], tmp_path: Path) -> None:
    assert _image_reasons(corpus["single"], tmp_path, "blurred", blur(2.5)) == ["blurry"]


def test_darkened_video_is_badly_exposed(corpus: dict[str, CorpusVideo], tmp_path: Path) -> None:
    assert _image_reasons(corpus["single"], tmp_path, "dark", darken(0.3)) == ["bad_exposure"]


def test_downscaled_video_is_low_resolution(corpus: dict[str, CorpusVideo], tmp_path: Path) -> None:
    def half(frame: np.ndarray, i: int) -> np.ndarray:
        return cv2.resize(frame, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)

    assert _image_reasons(corpus["single"], tmp_path, "half", half) == ["low_resolution"]


def _audio_report(talker: tuple[CorpusVideo, FaceTrack], tmp_path: Path, name: str,
                  audio_fn: Callable[[np.ndarray], np.ndarray]) -> QualityReport:
    """Re-encode the talker's video with edited audio; tracking is video-only, so the clean track applies."""
    video, track = talker
    path = rewrite(video.path, tmp_path / f"{name}.mp4", audio_fn=audio_fn)
    return assess_track(track, path, read_audio(path))


def test_shifted_audio_is_out_of_sync(talker: tuple[CorpusVideo, FaceTrack], tmp_path: Path) -> None:
    report = _audio_report(talker, tmp_path, "late", shift_audio(8))
    assert report.reasons == ["av_out_of_sync"]
    assert 7 <= report.sync.offset_frames <= 9 and report.sync.confidence > 0.5  # audio lags by 8 frames


def test_silenced_audio_is_silent(talker: tuple[CorpusVideo, FaceTrack], tmp_path: Path) -> None:
    report = _audio_report(talker, tmp_path, "mute", np.zeros_like)
    assert report.reasons == ["audio_silent"] and not report.sync.assessable


def test_overdriven_audio_is_clipping(talker: tuple[CorpusVideo, FaceTrack], tmp_path: Path) -> None:
    report = _audio_report(talker, tmp_path, "loud", lambda a: np.clip(a * 8.0, -1.0, 1.0))
    assert report.reasons == ["audio_clipping"]


def test_noisy_landmarks_are_jittery(talker: tuple[CorpusVideo, FaceTrack]) -> None:
    video, track = talker
    rng = np.random.default_rng(0)
    height = (track.boxes[:, 3] - track.boxes[:, 1])[:, None, None]
    shaky = replace(track, landmarks=track.landmarks + rng.normal(0, 0.01, track.landmarks.shape) * height)
    assert assess_track(shaky, video.path, read_audio(video.path)).reasons == ["jittery_landmarks"]


def test_frames_mapping_matches_file_input(talker: tuple[CorpusVideo, FaceTrack]) -> None:
    video, track = talker
    audio = read_audio(video.path)
    frames = dict(iter_frames(video.path, report=DecodeReport()))
    from_map = assess_track(track, frames, audio).metrics
    from_file = assess_track(track, video.path, audio).metrics
    assert from_map == pytest.approx(from_file)
    short = AudioClip(audio.samples[:16000], 16000, 0.0, DecodeReport())
    with pytest.raises(ValueError, match="does not cover"):
        assess_track(track, frames, short)


def _speech_like(rng: np.random.Generator, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(mouth opening (N,), audio (S,) at 16 kHz) where loudness follows the mouth frame by frame."""
    syllables = gaussian_filter1d(rng.random(n_frames), 1.5)
    mouth = np.clip(syllables - np.median(syllables), 0, None) * 0.6
    gain = np.repeat(mouth / max(mouth.max(), 1e-9), 640)
    return mouth.astype(np.float32), (rng.normal(0, 0.3, n_frames * 640) * gain).astype(np.float32)


@pytest.mark.parametrize("planted", [-4, 0, 4, 8])
def test_sync_recovers_a_planted_offset(planted: int) -> None:
    mouth, audio = _speech_like(np.random.default_rng(3), 250)
    shifted = np.roll(audio, planted * 640)
    result = measure_sync(mouth, shifted, 16000, 25.0)
    assert result.assessable and result.offset_frames == planted and result.confidence > 0.7


def test_sync_on_mismatched_audio_or_a_still_mouth() -> None:
    mouth, _ = _speech_like(np.random.default_rng(3), 250)
    _, other = _speech_like(np.random.default_rng(4), 250)
    assert measure_sync(mouth, other, 16000, 25.0).confidence < 0.4
    still = measure_sync(np.zeros(250, np.float32), other, 16000, 25.0)
    assert not still.assessable and "mouth motion" in still.detail


def test_audio_metrics_and_envelope() -> None:
    t = np.arange(16000) / 16000
    tone = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    m = audio_metrics(tone, 16000, QualityConfig())
    assert m["audio_rms_dbfs"] == pytest.approx(20 * np.log10(0.1 / np.sqrt(2)), abs=0.1)
    assert m["audio_silent_fraction"] == 0 and m["audio_clipped_fraction"] == 0
    half = np.concatenate([tone[:8000], np.zeros(8000, np.float32)])
    assert audio_metrics(half, 16000, QualityConfig())["audio_silent_fraction"] == pytest.approx(0.5, abs=0.03)
    env = loudness_envelope(half, 16000, 25.0, 30)
    assert env[:12].min() > -25 and env[13:25].max() == -100.0 and env[25:].max() == -100.0  # past the end


def test_decode_helper_round_trip(corpus: dict[str, CorpusVideo]) -> None:
    frames, audio = decode(corpus["single"].path)
    assert len(frames) == corpus["single"].n_frames and abs(len(audio) / 16000 - len(frames) / 25) < 0.1
