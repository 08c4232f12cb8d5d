"""Stage 1: robust decoding (video_io) and shot detection (shots) on real encoded files."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from lpm_models.data.curation.config import CurationConfig, ShotConfig
from lpm_models.data.curation.shots import detect_shots, find_cuts
from lpm_models.data.curation.types import Rejected
from lpm_models.data.curation.video_io import DecodeReport, iter_frames, probe, read_audio
from tests.lpm_models.curation_factory import CorpusVideo, join, session_corpus, write_video
from tests.media_factory import garble, write_av

BITS = 7  # frame index code: 7 black/white blocks across the frame


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CorpusVideo]:
    return session_corpus(tmp_path_factory)


def _coded_frame(k: int, width: int = 112, height: int = 48) -> np.ndarray:
    """(H, W, 3) frame whose blocks spell ``k`` in binary (survives H.264)."""
    frame = np.zeros((height, width, 3), np.uint8)
    block = width // BITS
    for bit in range(BITS):
        if (k >> bit) & 1:
            frame[:, bit * block:(bit + 1) * block] = 255
    return frame


def _read_code(frame: np.ndarray) -> int:
    block = frame.shape[1] // BITS
    centres = [frame[:, b * block + block // 4:(b + 1) * block - block // 4] for b in range(BITS)]
    return sum(1 << b for b, centre in enumerate(centres) if centre.mean() > 127)


def test_variable_frame_rate_maps_to_a_constant_grid(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    slots = [s for s in range(100) if s in (0, 99) or rng.random() > 0.2]  # ~20 % of frames missing
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 112, 48, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        for k in slots:  # 40 ms slots with +-8 ms timestamp jitter
            frame = av.VideoFrame.from_ndarray(_coded_frame(k), format="rgb24")
            frame.pts, frame.time_base = k * 40 + int(rng.integers(-8, 9)), Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    report = DecodeReport()
    frames = list(iter_frames(path, report=report))
    assert probe(path).fps == 25.0
    assert [i for i, _ in frames] == list(range(100))
    expected = [max(s for s in slots if s <= i) for i in range(100)]  # a hole repeats the last frame
    assert [_read_code(f) for _, f in frames] == expected
    assert report.filled == 100 - len(slots) and report.decoded == len(slots)
    resampled = list(iter_frames(path, fps=12.5))  # an explicit grid rate halves the frames
    assert len(resampled) == 50 and _read_code(resampled[10][1]) == expected[20]


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    frames = [_coded_frame(k) for k in range(10)]
    path = write_video(tmp_path / "rot.mp4", frames, rotation=90)
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (48, 112, 90)
    decoded = [f for _, f in iter_frames(path)]
    assert decoded[3].shape == (112, 48, 3)
    assert np.abs(decoded[3].astype(int) - np.rot90(frames[3])).mean() < 4  # 90 deg counter-clockwise
    small = next(iter(iter_frames(path, max_side=56)))[1]
    assert small.shape == (56, 24, 3)


def test_seek_window_matches_full_decode(corpus: dict[str, CorpusVideo]) -> None:
    path = corpus["single"].path
    full = [f for _, f in iter_frames(path)]
    window = list(iter_frames(path, start_frame=120, end_frame=140))
    assert [i for i, _ in window] == list(range(120, 140))
    assert all(np.array_equal(f, full[i]) for i, f in window)


def _write_tone(path: Path, rate: int, layout: str, seconds: float, amplitude: float, start_s: float = 0.0) -> Path:
    """A video (black 32x32 @ 25 fps) with a 440 Hz (left) / 660 Hz (right) tone starting at ``start_s``."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = out.add_stream("aac", rate=rate, layout=layout)
        for i in range(int(seconds * 25)):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(video.encode(frame))
        channels = 2 if layout == "stereo" else 1
        first, total = int(start_s * rate), int(seconds * rate)
        for a in range(first, total, 1024):
            t = np.arange(a, min(a + 1024, total)) / rate
            pcm = np.stack([amplitude * np.sin(2 * math.pi * f * t) for f in (440, 660)[:channels]]).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(pcm, format="fltp", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, a, Fraction(1, rate)
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
        out.mux(video.encode(None))
    return path


def _peak_hz(x: np.ndarray, rate: int) -> set[int]:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return {int(round(freqs[i] / 10) * 10) for i in np.argsort(spectrum)[-2:]}


def test_audio_is_resampled_to_16k_mono_on_the_video_timeline(tmp_path: Path) -> None:
    stereo = read_audio(_write_tone(tmp_path / "stereo.mp4", 44100, "stereo", 3.0, 0.4))
    assert stereo.sample_rate == 16000 and stereo.samples.dtype == np.float32
    assert abs(len(stereo.samples) - 48000) < 2048
    assert _peak_hz(stereo.samples[8000:40000], 16000) == {440, 660}  # both channels mixed down
    odd = read_audio(_write_tone(tmp_path / "odd.mp4", 22050, "mono", 3.0, 0.4), start_s=1.0, end_s=2.0)
    assert len(odd.samples) == 16000 and 0.2 < np.sqrt(np.mean(odd.samples**2)) < 0.35
    late = read_audio(_write_tone(tmp_path / "late.mp4", 16000, "mono", 3.0, 0.4, start_s=1.0))
    assert np.abs(late.samples[:15000]).max() < 0.01 and np.abs(late.samples[17000:20000]).max() > 0.3
    silent = read_audio(_write_tone(tmp_path / "silent.mp4", 48000, "mono", 2.0, 0.0))
    assert abs(len(silent.samples) - 32000) < 2048 and np.abs(silent.samples).max() == 0.0


def test_missing_audio_stream_is_a_rejection(tmp_path: Path) -> None:
    path = write_av(tmp_path / "mute.mp4", seconds=1.0, audio=False)
    with pytest.raises(Rejected) as err:
        read_audio(path)
    assert err.value.reason == "no_audio_stream"


def test_corrupt_middle_keeps_what_decodes(tmp_path: Path) -> None:
    good = write_av(tmp_path / "good.mp4", seconds=4.0, size=(128, 96), fps=25)
    bad = garble(good, tmp_path / "bad.mp4", 0.4, 0.6)
    report = DecodeReport()
    frames = list(iter_frames(bad, report=report))
    assert report.errors > 0 and not report.clean
    assert [i for i, _ in frames] == list(range(len(frames))) and len(frames) >= 90  # the tail still decodes
    audio = read_audio(bad)
    assert audio.report.errors > 0 and abs(len(audio.samples) - len(read_audio(good).samples)) < 1024


def test_find_cuts_adapts_to_motion() -> None:
    rng = np.random.default_rng(1)
    scores = np.abs(rng.normal(0.01, 0.003, 300)).astype(np.float32)
    scores[50] = 0.9  # a hard cut in calm footage
    scores[120:200] = 0.32 + rng.normal(0, 0.02, 80)  # fast motion: high but uniform scores
    scores[250] = 0.3  # a soft cut in calm footage (over the floor and far over the local level)
    scores[251] = 0.29  # its neighbour is suppressed by the minimum gap
    assert find_cuts(scores, 25.0, ShotConfig()) == [51, 251]


def test_cut_between_two_videos_is_found(corpus: dict[str, CorpusVideo], tmp_path: Path) -> None:
    split, single = corpus["split"], corpus["single"]
    path = join(tmp_path / "joined.mp4", [(split.path, 0, split.n_frames), (single.path, 0, single.n_frames)])
    kept, rejected = detect_shots(path)
    assert rejected == [] and len(kept) == 2
    assert abs(kept[1].start_frame - split.n_frames) <= 2
    assert kept[0].start_frame == 0 and kept[1].end_frame == split.n_frames + single.n_frames
    assert kept[0].shot_id == "joined-s00" and kept[1].index == 1


def test_short_shot_is_rejected(corpus: dict[str, CorpusVideo], tmp_path: Path) -> None:
    split, single = corpus["split"], corpus["single"]
    path = join(tmp_path / "short.mp4", [(single.path, 0, 50), (split.path, 0, split.n_frames)])
    kept, rejected = detect_shots(path, video_id="v1")
    assert len(rejected) == 1 and rejected[0][1].reason == "too_short"
    assert abs(rejected[0][0].end_frame - 50) <= 2 and rejected[0][0].shot_id == "v1-s00"
    assert len(kept) == 1 and kept[0].duration_s > 7.5
    lenient = CurationConfig().with_overrides(shots={"min_shot_s": 1.0})
    assert len(detect_shots(path, lenient)[0]) == 2


def test_one_continuous_video_is_one_shot(corpus: dict[str, CorpusVideo]) -> None:
    for video in corpus.values():
        kept, rejected = detect_shots(video.path)
        assert rejected == [] and [(s.start_frame, s.end_frame) for s in kept] == [(0, video.n_frames)]


def test_config_round_trips_and_rejects_unknown_keys() -> None:
    cfg = CurationConfig().with_overrides(shots={"min_shot_s": 2.5}, tracks={"detect_every": 3})
    again = CurationConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.shots.hist_bins == (16, 4, 4)
    with pytest.raises(ValueError, match="min_shot"):
        CurationConfig.from_dict({"shots": {"min_shot": 1.0}})
    with pytest.raises(ValueError, match="section"):
        CurationConfig.from_dict({"shot": {}})
