"""Rectified-flow (flow matching) utilities.

Convention: ``x_t = (1 - t) x0 + t noise`` with t = 0 clean and t = 1 pure noise; the
model predicts the velocity ``v = dx_t / dt = noise - x0``; sampling integrates from
t = 1 down to t = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lpm_models.configs import FlowConfig


def shift_time(t: Tensor, shift: float) -> Tensor:
    """Resolution/timestep shift ``s t / (1 + (s - 1) t)`` (s > 1 spends more time near noise)."""
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


def sample_time(batch: int, cfg: FlowConfig, generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> Tensor:
    """Training timesteps (B,) in (0, 1): logit-normal (a ``cfg.uniform`` share uniform), then shifted."""
    z = torch.randn(batch, generator=generator, device=device) * cfg.logit_std + cfg.logit_mean
    t = torch.sigmoid(z)
    if cfg.uniform > 0:
        u = torch.rand(batch, generator=generator, device=device)
        pick = torch.rand(batch, generator=generator, device=device) < cfg.uniform
        t = torch.where(pick, u, t)
    return shift_time(t, cfg.shift)


def interpolate(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """x_t for x0, noise: (B, T, C, h, w) and t: (B,) or (B, T)."""
    tt = t.view(*t.shape, *([1] * (x0.ndim - t.ndim))).to(x0.dtype)
    return (1 - tt) * x0 + tt * noise


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    return noise - x0


def flow_loss(pred: Tensor, target: Tensor, frame_weight: Tensor | None = None) -> Tensor:
    """Mean squared velocity error; frame_weight (B, T) selects frames (e.g. 0 for context)."""
    err = (pred.float() - target.float()).pow(2).flatten(2).mean(dim=2)  # (B, T)
    if frame_weight is None:
        return err.mean()
    w = frame_weight.to(err.dtype)
    return (err * w).sum() / w.sum().clamp_min(1.0)


def euler_timesteps(steps: int, shift: float, device: torch.device | str | None = None) -> Tensor:
    """(steps + 1,) decreasing times from 1 to 0 for the Euler ODE sampler."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    return shift_time(torch.linspace(1.0, 0.0, steps + 1, device=device), shift)
