"""Log-mel features with ``torch.stft`` and a Slaney mel filterbank (librosa's default).

Framing is causal and aligned to video: with ``n_fft - hop`` samples of left context
(zeros at the start of a stream, the previous samples when streaming), ``S`` samples
give exactly ``S / hop`` mel frames, and mel frame ``i`` ends at sample ``(i + 1) * hop``.
At 16 kHz, hop 160 and 25 fps, video frame ``f`` owns mel frames ``4f .. 4f + 3``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lpm_models.configs import AudioConfig

_F_SP = 200.0 / 3  # Slaney: linear part, Hz per mel
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(hz: Tensor) -> Tensor:
    """Slaney mel scale (linear below 1 kHz, logarithmic above)."""
    hz = hz.to(torch.float64)
    mel = hz / _F_SP
    log_part = _MIN_LOG_MEL + torch.log(hz.clamp_min(_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(hz >= _MIN_LOG_HZ, log_part, mel)


def mel_to_hz(mel: Tensor) -> Tensor:
    """Inverse of hz_to_mel."""
    mel = mel.to(torch.float64)
    hz = mel * _F_SP
    log_part = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log_part, hz)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None) -> Tensor:
    """Triangular, area-normalised (Slaney) filters: (n_mels, n_fft // 2 + 1) float32."""
    f_max = sample_rate / 2 if f_max is None else f_max
    cpu = torch.device("cpu")  # explicit: also correct under a meta-device context
    fft_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64, device=cpu)
    edges = hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64, device=cpu))
    mel_pts = torch.linspace(float(edges[0]), float(edges[1]), n_mels + 2, dtype=torch.float64, device=cpu)
    hz_pts = mel_to_hz(mel_pts)  # (n_mels + 2,)
    widths = hz_pts[1:] - hz_pts[:-1]  # (n_mels + 1,)
    ramps = hz_pts[:, None] - fft_freqs[None, :]  # (n_mels + 2, n_freqs)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    enorm = 2.0 / (hz_pts[2:] - hz_pts[:-2])
    return (weights * enorm[:, None]).float()


class LogMel(nn.Module):
    """Waveform -> normalised log-mel, streaming-capable.

    forward samples: (B, S) with S a multiple of hop; past: (B, n_fft - hop) samples
    preceding them or None (zeros). Returns (mel (B, n_mels, S / hop), new_past).
    """

    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        self.cfg = cfg
        fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)
        self.register_buffer("filterbank", fb, persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)

    @property
    def context(self) -> int:
        return self.cfg.n_fft - self.cfg.hop_length

    def forward(self, samples: Tensor, past: Tensor | None = None) -> tuple[Tensor, Tensor]:
        cfg = self.cfg
        b, s = samples.shape
        if s % cfg.hop_length:
            raise ValueError(f"{s} samples is not a multiple of hop_length {cfg.hop_length}")
        if past is None:
            past = samples.new_zeros(b, self.context)
        x = torch.cat([past.to(samples.dtype), samples], dim=1).float()  # (B, ctx + S)
        new_past = x[:, x.shape[1] - self.context :]
        if s == 0:
            return samples.new_zeros(b, cfg.n_mels, 0), new_past
        spec = torch.stft(
            x, cfg.n_fft, cfg.hop_length, window=self.window.to(x.device), center=False, return_complex=True
        )  # (B, n_fft/2 + 1, S / hop)
        power = spec.real.pow(2) + spec.imag.pow(2)
        mel = torch.matmul(self.filterbank.to(x.device), power)  # (B, n_mels, S / hop)
        logmel = torch.log(mel.clamp_min(cfg.log_floor))
        return ((logmel - cfg.mel_mean) / cfg.mel_std).to(samples.dtype), new_past
