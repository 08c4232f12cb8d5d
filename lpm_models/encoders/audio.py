"""Streaming audio encoder: 16 kHz waveform -> one token per video frame.

    samples -> causal log-mel -> 2 causal convs (mel rate) -> group the mel frames of each
    video frame -> Linear -> L x [pre-LN windowed causal self-attention (1D RoPE) + FFN] -> LN

Every stage is causal and the attention look-back is ``history_frames`` (2 s by
default), so the encoder's whole memory is an explicit ``AudioStreamState``: the last raw
samples (STFT context), the last conv inputs and, per layer, the last ``history_frames``
keys/values (cached before RoPE; positions are assigned at read time relative to the
current chunk). Encoding a long track in one call or chunk by chunk with the state gives
the same tokens; long inputs are processed internally in ``chunk_frames`` pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpm_models.configs import AudioConfig
from lpm_models.encoders.mel import LogMel
from lpm_models.nn.attention import KVContext, SelfAttention
from lpm_models.nn.blocks import FeedForward
from lpm_models.nn.rope import RotaryEmbedding, Rotation


@dataclass(frozen=True)
class AudioStreamState:
    """Carry-over between calls of one stream.

    samples: (B, n_fft - hop) last raw samples; conv: per stem conv (B, C_in, k - 1) last
    inputs; kv: per layer (k, v) each (B, <= history_frames, heads, head_dim), pre-RoPE;
    frames: video frames encoded so far.
    """

    samples: Tensor
    conv: tuple[Tensor, ...]
    kv: tuple[tuple[Tensor, Tensor], ...]
    frames: int = 0


class CausalConv1d(nn.Conv1d):
    """Conv1d padded with the previous inputs. forward x: (B, C_in, L), past: (B, C_in, k - 1)
    -> (y (B, C_out, L), new past)."""

    def forward(self, x: Tensor, past: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        xx = torch.cat([past.to(x.dtype), x], dim=2)
        ctx = self.kernel_size[0] - 1
        return super().forward(xx), xx[:, :, xx.shape[2] - ctx :]


class AudioLayer(nn.Module):
    """Pre-LN transformer layer over audio frames. forward x: (B, C, D) -> (x, (k, v))."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, qk_norm=True)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, hidden)

    def forward(
        self, x: Tensor, rotation: Rotation, mask: Tensor, context: KVContext
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h, kv = self.attn(self.norm1(x), rotation, attn_mask=mask, context=context)
        x = x + h
        return x + self.ffn(self.norm2(x)), kv


class AudioEncoder(nn.Module):
    """Causal, streaming waveform -> per-video-frame token encoder."""

    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mel = LogMel(cfg)
        self.conv1 = CausalConv1d(cfg.n_mels, cfg.dim, cfg.conv_kernel)
        self.conv2 = CausalConv1d(cfg.dim, cfg.dim, cfg.conv_kernel)
        self.frame_proj = nn.Linear(cfg.mels_per_frame * cfg.dim, cfg.dim)
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.layers = nn.ModuleList(AudioLayer(cfg.dim, cfg.heads, hidden) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.rope = RotaryEmbedding((cfg.dim // cfg.heads,))

    def init_state(self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> AudioStreamState:
        """State of a fresh stream (silence before the first sample)."""
        cfg, k = self.cfg, self.cfg.conv_kernel - 1
        hd = cfg.dim // cfg.heads
        empty = torch.zeros(batch, 0, cfg.heads, hd, device=device, dtype=dtype)
        return AudioStreamState(
            samples=torch.zeros(batch, self.mel.context, device=device, dtype=dtype),
            conv=(torch.zeros(batch, cfg.n_mels, k, device=device, dtype=dtype),
                  torch.zeros(batch, cfg.dim, k, device=device, dtype=dtype)),
            kv=tuple((empty, empty) for _ in self.layers),
            frames=0,
        )

    def forward(self, samples: Tensor, state: AudioStreamState | None = None) -> tuple[Tensor, AudioStreamState]:
        """samples: (B, S) at ``sample_rate`` with S a multiple of samples_per_frame.

        Returns (tokens (B, S / samples_per_frame, dim), state after the last sample).
        """
        cfg = self.cfg
        b, s = samples.shape
        if s % cfg.samples_per_frame:
            raise ValueError(f"{s} samples is not a whole number of {cfg.samples_per_frame}-sample video frames")
        if state is None:
            state = self.init_state(b, samples.device, samples.dtype)
        step = cfg.chunk_frames * cfg.samples_per_frame
        tokens = []
        for start in range(0, s, step):
            out, state = self._chunk(samples[:, start : start + step], state)
            tokens.append(out)
        if not tokens:
            return samples.new_zeros(b, 0, cfg.dim), state
        return torch.cat(tokens, dim=1), state

    def _window_mask(self, cached: int, frames: int, device: torch.device) -> Tensor:
        """(frames, cached + frames) bool: query i sees keys at positions i - H .. i."""
        q = torch.arange(frames, device=device)[:, None]
        k = torch.arange(-cached, frames, device=device)[None, :]
        return (k <= q) & (q - k <= self.cfg.history_frames)

    def _chunk(self, samples: Tensor, state: AudioStreamState) -> tuple[Tensor, AudioStreamState]:
        """Encode one chunk (B, C * samples_per_frame) -> ((B, C, D), new state)."""
        cfg = self.cfg
        b = samples.shape[0]
        mel, past = self.mel(samples, state.samples)  # (B, n_mels, C * r)
        h, c1 = self.conv1(mel, state.conv[0])
        h = F.gelu(h)
        h, c2 = self.conv2(h, state.conv[1])
        h = F.gelu(h)  # (B, D, C * r)
        frames = h.shape[2] // cfg.mels_per_frame
        x = self.frame_proj(h.transpose(1, 2).reshape(b, frames, cfg.mels_per_frame * cfg.dim))  # (B, C, D)
        cached = state.kv[0][0].shape[1] if state.kv else 0
        dev = samples.device
        rot = self.rope.rotation(torch.arange(frames, device=dev)[:, None])
        rot_cache = self.rope.rotation(torch.arange(-cached, 0, device=dev)[:, None])
        mask = self._window_mask(cached, frames, dev)
        new_kv = []
        for layer, (ck, cv) in zip(self.layers, state.kv):
            x, (k, v) = layer(x, rot, mask, KVContext(ck, cv, rot_cache))
            keep = cfg.history_frames
            new_kv.append((torch.cat([ck, k], dim=1)[:, -keep:], torch.cat([cv, v], dim=1)[:, -keep:]))
        new_state = AudioStreamState(samples=past, conv=(c1, c2), kv=tuple(new_kv), frames=state.frames + frames)
        return self.norm(x), new_state
