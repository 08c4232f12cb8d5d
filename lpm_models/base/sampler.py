"""Euler ODE sampling with multi-condition guidance and chunk-wise continuation.

Guidance composes three batched passes (references always kept):

    v = v(none) + s_text * (v(text) - v(none)) + s_audio * (v(text, audio) - v(text))

so ``s_text = s_audio = 1`` is exactly the fully conditional velocity. Long videos are
generated chunk by chunk: each chunk after the first starts with ``overlap`` clean latents
of the previous chunk as context (t = 0, never updated) and generates the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from lpm_models.base.conditioning import ConditionKeep, LPMConditions, audio_frames_for_latents
from lpm_models.base.dit import LPMDiT
from lpm_models.base.flow import euler_timesteps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance scales (1.0 = no guidance for that condition)."""

    text: float = 1.0
    audio: float = 1.0


def guided_velocity(model: LPMDiT, x: Tensor, t: Tensor, cond: LPMConditions, guidance: Guidance,
                    latent_start: int = 0) -> Tensor:
    """Velocity with text/audio guidance from one batched forward of 3B samples.

    x: (B, T, C, h, w); t: (B, T). Returns (B, T, C, h, w).
    """
    b, dev = x.shape[0], x.device
    keep = ConditionKeep.cat([
        ConditionKeep.constant(b, dev),  # text + audio
        ConditionKeep.constant(b, dev, audio_self=False, audio_other=False),  # text only
        ConditionKeep.constant(b, dev, text=False, audio_self=False, audio_other=False),  # neither
    ])
    v = model(x.repeat(3, 1, 1, 1, 1), t.repeat(3, 1), cond.repeat(3), keep, latent_start=latent_start)
    v_full, v_text, v_none = v.chunk(3)
    return v_none + guidance.text * (v_text - v_none) + guidance.audio * (v_full - v_text)


@torch.no_grad()
def sample_chunk(
    model: LPMDiT,
    noise: Tensor,
    cond: LPMConditions,
    *,
    steps: int,
    shift: float,
    guidance: Guidance,
    context: Tensor | None = None,
    latent_start: int = 0,
) -> Tensor:
    """Integrate one chunk from noise to clean latents.

    noise: (B, T, C, h, w); context: (B, Tc, C, h, w) clean latents that occupy the first
    Tc frames (kept fixed, t = 0). Returns (B, T, C, h, w) with the context in front.
    """
    b, frames = noise.shape[:2]
    n_ctx = 0 if context is None else context.shape[1]
    if n_ctx >= frames:
        raise ValueError(f"context ({n_ctx}) must be shorter than the chunk ({frames})")
    x = noise.clone()
    if n_ctx:
        x[:, :n_ctx] = context.to(x.dtype)
    times = euler_timesteps(steps, shift, device=x.device)
    for i in range(steps):
        t = torch.full((b, frames), float(times[i]), device=x.device, dtype=x.dtype)
        t[:, :n_ctx] = 0.0
        v = guided_velocity(model, x, t, cond, guidance, latent_start)
        x[:, n_ctx:] = x[:, n_ctx:] + (times[i + 1] - times[i]).to(x.dtype) * v[:, n_ctx:]
    return x


@torch.no_grad()
def sample_video(
    model: LPMDiT,
    cond: LPMConditions,
    num_latents: int,
    latent_shape: tuple[int, int, int],
    *,
    chunk_latents: int,
    overlap: int,
    steps: int,
    shift: float,
    guidance: Guidance,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Generate ``num_latents`` latent frames by chunk-wise continuation.

    cond: conditions whose audio covers the whole video (audio_start 0); latent_shape:
    (C, h, w). Returns (B, num_latents, C, h, w).
    """
    if not 0 <= overlap < chunk_latents:
        raise ValueError(f"need 0 <= overlap ({overlap}) < chunk_latents ({chunk_latents})")
    b, dev = cond.batch_size, cond.audio_self.device
    tc = model.cfg.temporal_factor
    windows = [model.cfg.speak_window, model.cfg.listen_window]
    out: Tensor | None = None
    while out is None or out.shape[1] < num_latents:
        done = 0 if out is None else out.shape[1]
        ctx = None if out is None or overlap == 0 else out[:, done - overlap :]
        n_ctx = 0 if ctx is None else overlap
        frames = min(chunk_latents, n_ctx + num_latents - done)
        start = done - n_ctx
        first, last = audio_frames_for_latents(frames, tc, start, windows)
        noise = torch.randn((b, frames, *latent_shape), generator=generator, device=dev)
        chunk = sample_chunk(model, noise, cond.slice_audio(first, last), steps=steps, shift=shift,
                             guidance=guidance, context=ctx, latent_start=start)
        new = chunk[:, n_ctx:]
        out = new if out is None else torch.cat([out, new], dim=1)
        log.debug("sampled latents %d..%d of %d", start + n_ctx, out.shape[1] - 1, num_latents)
    return out
