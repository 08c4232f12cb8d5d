"""Base LPM: streaming audio encoder + DiT, trained with flow matching.

The VAE (latents) and the frozen text encoder (token embeddings) run outside this module;
a batch therefore carries clean latents, raw 16 kHz audio of both channels, text
embeddings and reference latents. ``training_loss`` samples per-sample condition dropout
and timesteps; ``context_frames`` > 0 trains continuation (those leading latents are
clean, t = 0, and excluded from the loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lpm_models.base.conditioning import ConditionKeep, LPMConditions
from lpm_models.base.dit import LPMDiT
from lpm_models.base.flow import flow_loss, interpolate, sample_time, velocity_target
from lpm_models.base.sampler import Guidance, sample_video
from lpm_models.configs import LPMConfig
from lpm_models.encoders.audio import AudioEncoder


@dataclass(frozen=True)
class LPMBatch:
    """One training batch.

    latents: (B, T, C, h, w) clean normalised VAE latents of 1 + tc (T - 1) video frames;
    audio_self / audio_other: (B, S) 16 kHz waveforms of those frames
    (S = frames * samples_per_frame); text: (B, L, text_dim); text_mask: (B, L) bool;
    refs: (B, R, C, h, w) reference latents; ref_mask: (B, R) bool.
    """

    latents: Tensor
    audio_self: Tensor
    audio_other: Tensor
    text: Tensor
    text_mask: Tensor | None = None
    refs: Tensor | None = None
    ref_mask: Tensor | None = None


class BaseLPM(nn.Module):
    """Audio encoder + diffusion transformer."""

    def __init__(self, cfg: LPMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.audio_encoder = AudioEncoder(cfg.audio)
        self.dit = LPMDiT(cfg.dit)

    def encode_audio(self, audio_self: Tensor, audio_other: Tensor) -> tuple[Tensor, Tensor]:
        """Both channels (B, S) -> tokens (B, S / samples_per_frame, audio_dim) each (one batched call)."""
        tokens, _ = self.audio_encoder(torch.cat([audio_self, audio_other], dim=0))
        return tokens.chunk(2, dim=0)

    def conditions(self, batch: LPMBatch) -> LPMConditions:
        """Encode the audio of a batch into DiT conditions."""
        frames = self.cfg.video_frames(batch.latents.shape[1])
        expected = frames * self.cfg.audio.samples_per_frame
        if batch.audio_self.shape[1] != expected or batch.audio_other.shape[1] != expected:
            raise ValueError(
                f"{batch.latents.shape[1]} latents = {frames} frames need {expected} audio samples, "
                f"got {batch.audio_self.shape[1]} / {batch.audio_other.shape[1]}"
            )
        a_self, a_other = self.encode_audio(batch.audio_self, batch.audio_other)
        return LPMConditions(text=batch.text, text_mask=batch.text_mask, audio_self=a_self, audio_other=a_other,
                             refs=batch.refs, ref_mask=batch.ref_mask)

    def forward(self, x: Tensor, t: Tensor, cond: LPMConditions, keep: ConditionKeep | None = None,
                latent_start: int = 0) -> Tensor:
        """Velocity for latents x (B, T, C, h, w) at t (B,) or (B, T); see LPMDiT.forward."""
        return self.dit(x, t, cond, keep, latent_start=latent_start)

    def training_loss(
        self,
        batch: LPMBatch,
        generator: torch.Generator | None = None,
        context_frames: int = 0,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Flow-matching loss with independent condition dropout.

        Returns (scalar loss, detached stats: loss, mean t, kept fractions).
        """
        x0 = batch.latents
        b, frames = x0.shape[:2]
        if not 0 <= context_frames < frames:
            raise ValueError(f"context_frames must be in [0, {frames}), got {context_frames}")
        dev = x0.device
        cond = self.conditions(batch)
        keep = ConditionKeep.sample(b, self.cfg.dropout, generator=generator, device=dev)
        t = sample_time(b, self.cfg.flow, generator=generator, device=dev)[:, None].expand(b, frames).clone()
        t[:, :context_frames] = 0.0  # clean continuation context
        noise = torch.randn(x0.shape, generator=generator, device=dev, dtype=x0.dtype)
        x_t = interpolate(x0, noise, t)
        pred = self.dit(x_t, t, cond, keep)
        weight = torch.ones(b, frames, device=dev)
        weight[:, :context_frames] = 0.0
        loss = flow_loss(pred, velocity_target(x0, noise), weight)
        stats = {
            "loss": loss.detach(),
            "t_mean": t[:, context_frames:].mean().detach(),
            "keep_text": keep.text.float().mean(),
            "keep_audio_self": keep.audio_self.float().mean(),
            "keep_audio_other": keep.audio_other.float().mean(),
            "keep_refs": keep.refs.float().mean(),
        }
        return loss, stats

    @torch.no_grad()
    def generate(
        self,
        audio_self: Tensor,
        audio_other: Tensor,
        text: Tensor,
        text_mask: Tensor | None = None,
        refs: Tensor | None = None,
        ref_mask: Tensor | None = None,
        guidance: Guidance | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Latents for a whole audio track by chunk-wise continuation.

        audio_*: (B, S) covering 1 + tc * k video frames; text: (B, L, text_dim);
        refs: (B, R, C, h, w). Returns latents (B, 1 + k, C, h, w) for the VAE decoder.
        """
        cfg = self.cfg
        a_self, a_other = self.encode_audio(audio_self, audio_other)
        num_latents = cfg.latent_frames(a_self.shape[1])
        cond = LPMConditions(text=text, text_mask=text_mask, audio_self=a_self, audio_other=a_other,
                             refs=refs, ref_mask=ref_mask)
        g = guidance or Guidance(cfg.sampler.text_scale, cfg.sampler.audio_scale)
        h, w = cfg.latent_size
        return sample_video(
            self.dit, cond, num_latents, (cfg.vae.latent_channels, h, w),
            chunk_latents=cfg.sampler.chunk_latents, overlap=cfg.sampler.overlap_latents,
            steps=steps or cfg.sampler.steps, shift=cfg.sampler.shift, guidance=g, generator=generator,
        )
