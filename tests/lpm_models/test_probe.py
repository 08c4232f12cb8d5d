"""probe_video on real files written by PyAV: a good H.264+AAC MP4 and each kind of bad file."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from pathlib import Path

import pytest

from lpm_models.media.probe import REASONS, ProbeError, ProbeResult, probe_video, sha256_file
from tests.media_factory import (
    garble, make_bad_files, truncate, write_av, write_png, write_text,
)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def good(media: Path) -> Path:
    return write_av(media / "good.mp4", seconds=2.0, size=(64, 48), fps=24, audio_rate=16000)


@pytest.fixture(scope="module")
def bad_files(media: Path) -> dict[str, Path]:
    return make_bad_files(media / "bad")


def _reason(path: Path) -> ProbeError:
    with pytest.raises(ProbeError) as info:
        probe_video(path)
    return info.value


def test_good_video_is_described(good: Path) -> None:
    result = probe_video(good)
    assert isinstance(result, ProbeResult)
    assert (result.container, result.video_codec, result.audio_codec) == ("mp4", "h264", "aac")
    assert (result.width, result.height) == (64, 48)
    assert result.fps == pytest.approx(24.0)
    assert result.n_frames == 48
    assert result.duration_s == pytest.approx(2.0, abs=1e-3)
    assert (result.audio_rate, result.audio_channels) == (16000, 1)
    assert result.size_bytes == good.stat().st_size
    assert result.sha256 == hashlib.sha256(good.read_bytes()).hexdigest()


def test_result_is_frozen_and_serialisable(good: Path) -> None:
    result = probe_video(good)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.fps = 1.0  # type: ignore[misc]
    as_dict = result.to_dict()
    assert set(as_dict) == {f.name for f in dataclasses.fields(ProbeResult)}
    assert ProbeResult(**as_dict) == result


@pytest.mark.parametrize("container,suffix", [("mp4", ".mp4"), ("matroska", ".mkv"), ("mpegts", ".ts"), ("mov", ".mov")])
def test_other_containers_and_faststart_are_accepted(media: Path, container: str, suffix: str) -> None:
    path = write_av(media / f"ok_{container}{suffix}", seconds=1.0, fps=25, container=container,
                    faststart=container == "mp4")
    result = probe_video(path)
    assert result.n_frames == 25
    assert result.container == {"matroska": "matroska", "mpegts": "mpegts", "mov": "mov"}.get(container, "mp4")


@pytest.mark.parametrize("audio_seconds", [2.0, 4.0])
def test_audio_and_video_of_different_length_are_not_truncated(media: Path, audio_seconds: float) -> None:
    path = write_av(media / f"mismatch_{audio_seconds}.mp4", seconds=3.0, fps=24, audio_seconds=audio_seconds)
    result = probe_video(path)
    assert result.n_frames == 72 and result.duration_s == pytest.approx(3.0, abs=1e-3)


@pytest.mark.parametrize("reason", REASONS)
def test_each_bad_file_gets_its_reason(bad_files: dict[str, Path], reason: str) -> None:
    err = _reason(bad_files[reason])
    assert err.reason == reason
    assert err.detail
    assert err.size_bytes == bad_files[reason].stat().st_size
    assert err.sha256 == hashlib.sha256(bad_files[reason].read_bytes()).hexdigest()


def test_truncation_detail_names_the_cut(bad_files: dict[str, Path]) -> None:
    assert "cut short" in _reason(bad_files["truncated"]).detail


def test_image_or_noise_renamed_mp4_is_not_a_video(media: Path, good: Path) -> None:
    png = write_png(media / "photo.mp4")
    noise = media / "noise.mp4"
    noise.write_bytes(random.Random(3).randbytes(40_000))
    subtitles = media / "captions.mp4"
    subtitles.write_text("1\n00:00:01,000 --> 00:00:02,000\nHello\n\n2\n00:00:03,000 --> 00:00:04,000\nBye\n")
    for path in (png, noise, subtitles, write_text(media / "readme.mp4")):
        assert _reason(path).reason == "not_a_video", path.name
    assert "still image" in _reason(png).detail


def test_single_frame_with_audio_is_not_a_video(media: Path) -> None:
    path = write_av(media / "one_frame.mp4", seconds=1 / 24 + 1e-3, fps=24)
    assert _reason(path).reason == "not_a_video"


@pytest.mark.parametrize("container,suffix,keep", [("mp4", ".mp4", 0.5), ("matroska", ".mkv", 0.6), ("mpegts", ".ts", 0.55)])
def test_cut_files_are_truncated_in_every_container(media: Path, container: str, suffix: str, keep: float) -> None:
    whole = write_av(media / f"whole_{container}{suffix}", seconds=3.0, container=container, faststart=True)
    cut = truncate(whole, media / f"cut_{container}{suffix}", keep=keep)
    assert _reason(cut).reason == "truncated"


def test_a_single_damaged_packet_is_unreadable_unless_tolerated(media: Path, good: Path) -> None:
    damaged = garble(good, media / "speck.mp4", start=0.5, end=0.51, seed=7)
    err = _reason(damaged)
    assert err.reason == "unreadable"
    assert "failed to decode" in err.detail
    tolerant = probe_video(damaged, max_bad_fraction=0.2)
    assert tolerant.duration_s == pytest.approx(2.0, abs=0.1)


def test_missing_file_raises_file_not_found(media: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such video file"):
        probe_video(media / "absent.mp4")


def test_probe_error_rejects_unknown_reason() -> None:
    with pytest.raises(ValueError, match="unknown probe reason"):
        ProbeError("blurry", "not a reason code")


def test_streaming_checksum_matches_hashlib(good: Path) -> None:
    assert sha256_file(good, chunk_bytes=7) == hashlib.sha256(good.read_bytes()).hexdigest()
