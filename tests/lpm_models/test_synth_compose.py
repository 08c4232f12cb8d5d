"""Layouts and MP4 muxing of the synthetic corpus (independent of the face renderer)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from lpm_models.data.synth.compose import StageTimes, encode_mp4, make_layout

SR, FPS = 16000, 25


def _frames(n: int, width: int, height: int) -> Iterator[np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width]
    for t in range(n):
        frame = np.stack([(xx + 3 * t) % 256, (yy + t) % 256, np.full_like(xx, 128)], axis=-1)
        yield frame.astype(np.uint8)


def test_layouts() -> None:
    split = make_layout("split", 128)
    assert (split.width, split.height) == (256, 128)
    assert [p.bbox for p in split.placements] == [(0, 0, 128, 128), (128, 0, 256, 128)]
    single = make_layout("single", 128, on_screen=1)
    assert (single.width, single.height) == (128, 128) and [p.person for p in single.placements] == [1]
    assert single.to_dict()["placements"] == [{"person": 1, "bbox": [0, 0, 128, 128]}]
    for bad in (lambda: make_layout("grid", 128), lambda: make_layout("split", 127),
                lambda: make_layout("single", 128, on_screen=2)):
        with pytest.raises(ValueError):
            bad()


def test_encode_mp4_decodes_with_expected_streams_and_is_reproducible(tmp_path: Path) -> None:
    n, width, height = 50, 96, 64
    t = np.arange(2 * SR) / SR
    chirp = np.sin(2 * np.pi * (200 * t + 400 * t ** 2))
    audio = (0.3 * chirp * (t < 1.0)).astype(np.float32)  # a chirp, then silence
    paths = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for path in paths:
        times = StageTimes()
        assert encode_mp4(path, _frames(n, width, height), audio, width, height, FPS, SR, times) == n
        assert times.encode > 0
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    assert len(digests) == 1

    with av.open(str(paths[0])) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        assert (video.width, video.height) == (width, height) and video.average_rate == FPS
        assert video.codec_context.name == "h264" and sound.codec_context.name == "aac"
        assert sound.rate == SR and sound.channels == 1
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == n and frames[0].shape == (height, width, 3)
    reference = next(_frames(1, width, height)).astype(float)
    assert np.abs(frames[0].astype(float) - reference).mean() < 6.0
    with av.open(str(paths[0])) as container:
        pcm = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    assert len(pcm) >= len(audio)
    first, second = pcm[: SR - 2048], pcm[SR + 2048: 2 * SR]
    assert np.sqrt(np.mean(first ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)
    assert np.sqrt(np.mean(second ** 2)) < 0.01
    lag = np.argmax(np.correlate(pcm[: SR // 2], audio[:4000], mode="valid"))
    assert lag == 0  # no priming offset between video and audio


def test_encode_rejects_odd_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        encode_mp4(tmp_path / "x.mp4", _frames(1, 95, 64), np.zeros(SR, np.float32), 95, 64, FPS, SR,
                   StageTimes())
