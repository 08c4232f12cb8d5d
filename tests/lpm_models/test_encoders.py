"""Log-mel front end, streaming audio encoder, frozen text encoder."""

from __future__ import annotations

import math

import pytest
import torch

from lpm_models.configs import AudioConfig, TextConfig, get_preset
from lpm_models.encoders import AudioEncoder, LogMel, TextEncoder, hz_to_mel, mel_filterbank, mel_to_hz


@pytest.fixture(scope="module")
def audio_cfg() -> AudioConfig:
    return get_preset("tiny").audio


def tone(freq: float, seconds: float, sr: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return torch.sin(2 * math.pi * freq * t)[None]


def test_mel_scale_round_trips_and_is_slaney() -> None:
    hz = torch.tensor([0.0, 500.0, 1000.0, 4000.0, 8000.0])
    torch.testing.assert_close(mel_to_hz(hz_to_mel(hz)), hz.double())
    assert float(hz_to_mel(torch.tensor(1000.0))) == pytest.approx(15.0)  # linear part ends at 15 mel


def test_filterbank_peaks_follow_frequency(audio_cfg: AudioConfig) -> None:
    fb = mel_filterbank(16000, audio_cfg.n_fft, audio_cfg.n_mels)
    assert fb.shape == (audio_cfg.n_mels, audio_cfg.n_fft // 2 + 1) and (fb >= 0).all()
    logmel = LogMel(audio_cfg)
    low, _ = logmel(tone(300, 0.4))
    high, _ = logmel(tone(3000, 0.4))
    assert low.mean(dim=2).argmax() < high.mean(dim=2).argmax()


def test_log_mel_is_frame_aligned_and_streams_exactly(audio_cfg: AudioConfig) -> None:
    logmel = LogMel(audio_cfg)
    x = torch.randn(2, 16000) * 0.1
    full, _ = logmel(x)
    assert full.shape == (2, audio_cfg.n_mels, 16000 // audio_cfg.hop_length)
    a, past = logmel(x[:, :6400])
    b, _ = logmel(x[:, 6400:], past)
    torch.testing.assert_close(torch.cat([a, b], dim=2), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="hop_length"):
        logmel(x[:, :100])


def test_audio_encoder_gives_one_token_per_video_frame(audio_cfg: AudioConfig) -> None:
    enc = AudioEncoder(audio_cfg).eval()
    with torch.no_grad():
        tokens, state = enc(torch.randn(2, 3 * audio_cfg.samples_per_frame))
    assert tokens.shape == (2, 3, audio_cfg.dim) and state.frames == 3
    with pytest.raises(ValueError, match="video frames"):
        enc(torch.randn(1, 1000))


def test_streaming_state_reproduces_offline_encoding(audio_cfg: AudioConfig) -> None:
    """Any chunking with carried state gives the one-call tokens (history > chunk)."""
    torch.manual_seed(0)
    enc = AudioEncoder(audio_cfg).eval()
    spf = audio_cfg.samples_per_frame
    x = torch.randn(1, 90 * spf) * 0.2  # 3.6 s: longer than history + internal chunk
    with torch.no_grad():
        offline, _ = enc(x)
        pieces, state = [], None
        for a, b in [(0, 7), (7, 40), (40, 41), (41, 90)]:
            out, state = enc(x[:, a * spf : b * spf], state)
            pieces.append(out)
    torch.testing.assert_close(torch.cat(pieces, dim=1), offline, atol=1e-4, rtol=1e-4)
    assert state is not None and all(k.shape[1] == audio_cfg.history_frames for k, _ in state.kv)


def test_audio_encoder_is_causal(audio_cfg: AudioConfig) -> None:
    torch.manual_seed(0)
    enc = AudioEncoder(audio_cfg).eval()
    spf = audio_cfg.samples_per_frame
    x = torch.randn(1, 20 * spf) * 0.2
    y = x.clone()
    y[:, 12 * spf :] = torch.randn(1, 8 * spf)
    with torch.no_grad():
        a, _ = enc(x)
        b, _ = enc(y)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert (a[:, 12:] - b[:, 12:]).abs().max() > 1e-4


@pytest.fixture(scope="module")
def text_encoder() -> TextEncoder:
    return TextEncoder(TextConfig(max_tokens=32, cache_size=3))


def test_text_encoder_shapes_mask_and_semantics(text_encoder: TextEncoder) -> None:
    prompts = ["a woman smiles and nods", "a lady grins and nods her head", "rain falls on a tin roof"]
    tokens, mask = text_encoder.encode(prompts)
    assert tokens.shape[0] == 3 and tokens.shape[2] == 384 and mask.shape == tokens.shape[:2]
    assert (tokens[~mask] == 0).all() and mask.sum(dim=1).min() >= 2
    pooled = torch.nn.functional.normalize((tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    sim = pooled @ pooled.T
    assert sim[0, 1] > sim[0, 2]
    long_tokens, _ = text_encoder.encode([" ".join(["word"] * 100)])
    assert long_tokens.shape[1] <= 32


def test_text_encoder_cache_hits_and_evicts(text_encoder: TextEncoder) -> None:
    text_encoder.clear_cache()
    first, _ = text_encoder.encode(["nods slowly"])
    misses = text_encoder.misses
    again, _ = text_encoder.encode(["nods slowly", "nods slowly"])
    assert text_encoder.misses == misses and torch.equal(again[0], first[0]) and torch.equal(again[1], first[0])
    text_encoder.encode(["a", "b", "c", "d"])
    assert len(text_encoder._cache) == 3
    with pytest.raises(TypeError):
        text_encoder.encode("not a list")  # type: ignore[arg-type]
