"""Timestep embedding and AdaLN modulation.

Modulation follows the shared-projection design used by large video DiTs: one
``SiLU -> Linear(dim, n * dim)`` projection of the timestep embedding is computed once
per forward and every block adds its own learned ``(n, dim)`` offset. This keeps the
per-block parameter cost at ``n * dim`` instead of ``n * dim^2``.

Modulation is per *frame*: tensors are ``(B, S, n, D)`` where S counts frames (reference
images and latent video frames), so clean frames (references, continuation context) and
noisy frames in the same sequence get their own timestep.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def timestep_sinusoids(t: Tensor, dim: int, max_period: float = 10000.0, scale: float = 1000.0) -> Tensor:
    """Sinusoidal features of (continuous) timesteps.

    t: (...) in [0, 1] -> (..., dim) float32; ``t`` is multiplied by ``scale`` first.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * scale)[..., None] * freqs  # (..., half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[..., :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """Timesteps -> model-width conditioning vectors: sinusoids -> MLP.

    forward t: (B, S) -> (B, S, dim).
    """

    def __init__(self, dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        emb = timestep_sinusoids(t, self.freq_dim)  # (B, S, freq_dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class ModulationProjection(nn.Module):
    """Shared projection of the conditioning vector into ``n`` modulation vectors.

    forward c: (B, S, D) -> (B, S, n, D). Zero-initialised so blocks start as identity
    maps gated by their own offsets (adaLN-zero).
    """

    def __init__(self, dim: int, n: int) -> None:
        super().__init__()
        self.n = n
        self.act = nn.SiLU()
        self.proj = nn.Linear(dim, n * dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, c: Tensor) -> Tensor:
        return self.proj(self.act(c)).unflatten(-1, (self.n, -1))


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """Frame-wise affine modulation.

    x: (B, S * P, D) tokens of S frames with P tokens each; shift, scale: (B, S, D).
    Returns (B, S * P, D): ``x * (1 + scale) + shift`` broadcast over each frame's tokens.
    """
    b, n, d = x.shape
    s = shift.shape[1]
    xf = x.view(b, s, n // s, d)  # (B, S, P, D)
    out = xf * (1 + scale[:, :, None, :]) + shift[:, :, None, :]
    return out.view(b, n, d)


def gate(x: Tensor, g: Tensor) -> Tensor:
    """Frame-wise gate: x (B, S * P, D), g (B, S, D) -> (B, S * P, D)."""
    b, n, d = x.shape
    s = g.shape[1]
    return (x.view(b, s, n // s, d) * g[:, :, None, :]).view(b, n, d)
