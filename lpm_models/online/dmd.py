"""Distillation losses and the measured effect: ODE regression, DMD, fake-score critic, latent FD.

Distribution matching distillation (DMD, as in DMD2 / CausVid, in flow-matching form):
re-noise a student sample ``x0`` to a random t, ask the teacher (guided, the "real" score)
and a critic trained on student samples (the "fake" score) for their clean estimates, and
move ``x0`` along ``x0_fake - x0_real`` (normalised per sample by ``|x0 - x0_real|``)::

    loss = 0.5 * || x0 - stopgrad(x0 - (x0_fake - x0_real) / w) ||^2

The critic is a bidirectional Base LPM DiT trained with the flow-matching loss on the
student's (detached) samples. ``latent_fd`` is a Frechet distance between per-frame latent
statistics of two sample sets (a cheap, data-free distribution measure for held-out checks).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lpm_models.base.conditioning import LPMConditions
from lpm_models.base.dit import LPMDiT
from lpm_models.base.flow import flow_loss, interpolate, sample_time, velocity_target
from lpm_models.base.sampler import Guidance, guided_velocity
from lpm_models.configs import FlowConfig


def _bcast(t: Tensor, like: Tensor) -> Tensor:
    """(B,) or (B, T) -> broadcastable to (B, T, C, h, w)."""
    return t.view(*t.shape, *([1] * (like.ndim - t.ndim))).to(like.dtype)


def x0_from_velocity(x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """Clean estimate ``x_t - t v`` (rectified flow); t: (B,) or (B, T)."""
    return x_t - _bcast(t, x_t) * v


def ode_regression_loss(x0_pred: Tensor, x0_teacher: Tensor) -> Tensor:
    """Mean squared error of the student's clean estimates to the teacher's ODE endpoint."""
    return (x0_pred.float() - x0_teacher.float()).pow(2).mean()


def dmd_loss(
    x0: Tensor, cond: LPMConditions, teacher: LPMDiT, critic: LPMDiT, guidance: Guidance, *,
    t_range: tuple[float, float] = (0.02, 0.98), generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """DMD generator loss on student samples x0 (B, T, C, h, w) (gradient flows into x0 only)."""
    b, frames = x0.shape[:2]
    dev = x0.device
    lo, hi = t_range
    t = (lo + (hi - lo) * torch.rand(b, generator=generator, device=dev))[:, None].expand(b, frames)
    noise = torch.randn(x0.shape, generator=generator, device=dev, dtype=x0.dtype)
    with torch.no_grad():
        x_t = interpolate(x0.detach(), noise, t)
        real = x0_from_velocity(x_t, t, guided_velocity(teacher, x_t, t, cond, guidance))
        fake = x0_from_velocity(x_t, t, critic(x_t, t, cond))
        w = (x0.detach() - real).abs().flatten(1).mean(dim=1).clamp_min(1e-4)  # (B,)
        grad = (fake - real) / _bcast(w, x0)
        target = x0.detach() - grad
    loss = 0.5 * (x0.float() - target.float()).pow(2).mean()
    stats = {"dmd_loss": loss.detach(), "dmd_grad_norm": grad.flatten(1).norm(dim=1).mean(), "dmd_t": t[:, 0].mean()}
    return loss, stats


def critic_loss(
    critic: LPMDiT, x0: Tensor, cond: LPMConditions, flow: FlowConfig, generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Flow-matching loss of the fake-score critic on detached student samples x0 (B, T, C, h, w)."""
    x0 = x0.detach()
    b, frames = x0.shape[:2]
    t = sample_time(b, flow, generator=generator, device=x0.device)[:, None].expand(b, frames)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    loss = flow_loss(critic(interpolate(x0, noise, t), t, cond), velocity_target(x0, noise))
    return loss, {"critic_loss": loss.detach()}


def latent_features(latents: Tensor) -> Tensor:
    """(B, T, C, h, w) -> (B * T, 2C) per-frame channel means and standard deviations."""
    flat = latents.float().flatten(3)  # (B, T, C, h w)
    return torch.cat([flat.mean(dim=3), flat.std(dim=3)], dim=2).flatten(0, 1)


def _sqrtm_psd(m: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh(m)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Frechet distance between Gaussian fits of feature sets a (N, D) and b (M, D)."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    s = _sqrtm_psd(cov_a)
    cross = torch.linalg.eigvalsh(s @ cov_b @ s).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross)


def latent_fd(student: Tensor, teacher: Tensor) -> float:
    """Frechet distance of per-frame latent statistics between two sample sets (B, T, C, h, w)."""
    return frechet_distance(latent_features(student), latent_features(teacher))
