"""Client-side media: audio decode + resample, images, MP4 with muxed speech; conversation helpers."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from serving.conversation import StreamReport, align, split_chunks
from serving.media import Mp4Writer, fit_image, read_audio, read_image, write_wav
from serving.probe import card_image, speech_like


def test_audio_is_decoded_and_resampled(tmp_path: Path) -> None:
    rate = 22050
    t = np.arange(rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = write_wav(tmp_path / "tone.wav", tone, rate)
    same = read_audio(path, rate)
    assert same.dtype == np.float32 and abs(same.size - rate) <= 1 and np.abs(same[: rate - 1] - tone[: rate - 1]).max() < 1e-3
    down = read_audio(path, 16000)
    assert abs(down.size - 16000) <= 64
    spectrum = np.abs(np.fft.rfft(down[:16000]))
    assert abs(int(np.argmax(spectrum)) - 440) <= 2  # the tone survives resampling (1 Hz bins)
    with pytest.raises(FileNotFoundError):
        read_audio(tmp_path / "missing.wav", 16000)
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="cannot decode"):
        read_audio(tmp_path / "junk.wav", 16000)


def test_images_are_read_as_rgb_and_fitted(tmp_path: Path) -> None:
    Image.fromarray(np.full((20, 30), 128, np.uint8), mode="L").save(tmp_path / "gray.png")
    image = read_image(tmp_path / "gray.png")
    assert image.shape == (20, 30, 3) and image.dtype == np.uint8
    assert fit_image(image, (10, 12)).shape == (10, 12, 3)


def test_mp4_holds_the_frames_and_the_speech(tmp_path: Path) -> None:
    writer = Mp4Writer(tmp_path / "out.mp4", fps=25, audio_rate=16000)
    for k in range(5):
        writer.add(np.full((5, 33, 31, 3), 40 * k, np.uint8))  # odd sides are padded
    path = writer.close(speech_like(1.0, 16000, 0))
    with av.open(str(path)) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, sound.codec_context.name) == ("h264", "aac")
        assert sum(1 for _ in container.decode(video)) == 25
    empty = Mp4Writer(tmp_path / "empty.mp4", fps=25, audio_rate=16000)
    empty.abort()
    assert not (tmp_path / "empty.mp4").exists()


def test_conversation_helpers() -> None:
    audio = np.arange(10, dtype=np.float32)
    assert [c.size for c in split_chunks(audio, 4)] == [4, 4, 2]
    assert np.array_equal(align(None, 3), np.zeros(3, np.float32))
    assert align(np.ones(2, np.float32), 4).tolist() == [1, 1, 0, 0] and align(audio, 3).size == 3
    report = StreamReport(chunk_s=0.2, realtime=True, chunks=2, latencies=[0.1, 0.3], lags=[-0.1, 0.05])
    summary = report.summary()
    assert summary["rtf"] == 1.0 and summary["media_s"] == 0.4 and summary["max_lag_s"] == 0.05
    assert card_image(16).shape == (16, 16, 3)
    assert np.array_equal(speech_like(0.5, 16000, 3), speech_like(0.5, 16000, 3))
